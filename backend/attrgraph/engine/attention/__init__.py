"""Attention explained: head loadings on graph edges and QK attributions of head scores.

tracer = AttentionTracer.for_graph(lm.model, transcoders, graph, bos_token_id=lm.tokenizer.bos_token_id)
tracer.head_loadings(graph, target_node, source_node)   # HeadLoadings: sums to the edge weight
tracer.qk(layer, head, query_pos, key_pos)               # QKAttribution: sums to the pre-softmax score
qk_for_top_heads(tracer, graph)                          # the top heads of the strongest crossing edges
"""

from attrgraph.engine.attention.results import HeadLoadings, QKAttribution
from attrgraph.engine.attention.top import qk_for_top_heads
from attrgraph.engine.attention.tracer import AttentionTracer, Target

__all__ = ["AttentionTracer", "HeadLoadings", "QKAttribution", "Target", "qk_for_top_heads"]
