"""The pre-softmax score of one head, recomputed from the model alone (no engine code).

A forward pre-hook on the layer's attention module takes its inputs (the normalised hidden states and
the rotary cos/sin) from an ordinary forward pass of the original model; q and k come from the
module's own projection weights, QK-norm modules and a rotate-half written here; the scale comes
from the config (Gemma: query_pre_attn_scalar).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def reference_score(model: Any, token_ids: list[int], layer: int, head: int, q_pos: int, k_pos: int) -> float:
    config = model.config.get_text_config()
    decoder = model.get_decoder()
    block = decoder.layers[layer] if hasattr(decoder, "layers") else decoder.h[layer]
    attn = getattr(block, "self_attn", None) or block.attn
    seen: dict[str, Any] = {}

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen["hidden"] = (args[0] if args else kwargs["hidden_states"]).detach()[0].double()  # (pos, d)
        seen["rope"] = kwargs.get("position_embeddings")

    handle = attn.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([token_ids]))
    finally:
        handle.remove()
    hidden = seen["hidden"]
    n_heads = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_heads
    d_head = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    if hasattr(attn, "c_attn"):  # GPT-2: one Conv1D (weight (in, out)) makes q, k, v
        qkv = hidden @ attn.c_attn.weight.double() + attn.c_attn.bias.double()
        q_all, k_all = qkv[:, : config.hidden_size], qkv[:, config.hidden_size : 2 * config.hidden_size]
    else:

        def project(linear: Any) -> Tensor:
            out: Tensor = hidden @ linear.weight.double().T
            bias = linear.bias
            return out if bias is None else out + bias.double()

        q_all, k_all = project(attn.q_proj), project(attn.k_proj)
    q = q_all.reshape(-1, n_heads, d_head)[q_pos, head]
    k = k_all.reshape(-1, n_kv, d_head)[k_pos, head // (n_heads // n_kv)]
    with torch.no_grad():
        if hasattr(attn, "q_norm"):
            q = attn.q_norm(q.float()[None]).double()[0]
            k = attn.k_norm(k.float()[None]).double()[0]
    if seen["rope"] is not None:
        cos, sin = (t[0].double() for t in seen["rope"])  # (pos, d_head)
        q = q * cos[q_pos] + _rotate_half(q) * sin[q_pos]
        k = k * cos[k_pos] + _rotate_half(k) * sin[k_pos]
    scalar = getattr(config, "query_pre_attn_scalar", None) or d_head
    score: float = float(q @ k) * float(scalar) ** -0.5
    return score
