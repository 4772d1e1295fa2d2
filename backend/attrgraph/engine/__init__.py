"""The attribution engine: pure compute (torch + transformers), no web or storage code.

lm = load_model("dir-or-hub-id")
tc = load_transcoders("dir-or-hub-id")
graph = trace(lm, tc, "The capital of Texas is")
"""

from attrgraph.engine.attention import AttentionTracer, HeadLoadings, QKAttribution, qk_for_top_heads
from attrgraph.engine.attribution import PromptError, TraceSettings, trace
from attrgraph.engine.graph import Graph, LogitTarget, NodeKind
from attrgraph.engine.interop import GraphFormatError, dumps, from_json, to_json
from attrgraph.engine.models import LoadedModel, ModelLoadError, load_model
from attrgraph.engine.pruning import (
    GraphScores,
    PruneResult,
    graph_scores,
    node_influence,
    prune,
    pruned_graph,
    subgraph_scores,
)
from attrgraph.engine.targets import TargetError, TargetSpec
from attrgraph.engine.transcoders import TranscoderLoadError, TranscoderSet, load_transcoders

__all__ = [
    "AttentionTracer",
    "Graph",
    "GraphFormatError",
    "GraphScores",
    "HeadLoadings",
    "LoadedModel",
    "LogitTarget",
    "ModelLoadError",
    "NodeKind",
    "PromptError",
    "PruneResult",
    "QKAttribution",
    "TargetError",
    "TargetSpec",
    "TraceSettings",
    "TranscoderLoadError",
    "TranscoderSet",
    "dumps",
    "from_json",
    "graph_scores",
    "load_model",
    "load_transcoders",
    "node_influence",
    "prune",
    "pruned_graph",
    "qk_for_top_heads",
    "subgraph_scores",
    "to_json",
    "trace",
]
