"""The attribution engine: pure compute (torch + transformers), no web or storage code.

lm = load_model("dir-or-hub-id")
tc = load_transcoders("dir-or-hub-id")
graph = trace(lm, tc, "The capital of Texas is")
"""

from attrgraph.engine.attribution import PromptError, TraceSettings, trace
from attrgraph.engine.graph import Graph, LogitTarget, NodeKind
from attrgraph.engine.targets import TargetError, TargetSpec

__all__ = [
    "Graph",
    "LogitTarget",
    "NodeKind",
    "PromptError",
    "TargetError",
    "TargetSpec",
    "TraceSettings",
    "trace",
]

# Loading, pruning and interop live in modules that import optional pieces lazily.
try:  # pragma: no cover - present once those modules land
    from attrgraph.engine.models import LoadedModel, ModelLoadError, load_model
    from attrgraph.engine.transcoders import TranscoderLoadError, load_transcoders

    __all__ += ["LoadedModel", "ModelLoadError", "TranscoderLoadError", "load_model", "load_transcoders"]
except ImportError:
    pass
