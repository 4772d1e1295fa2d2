"""Direct logit effects: what each feature's decoder row does to the logits through the final
norm's gain and the unembedding, with the mean over the vocabulary removed (a shift of every logit
changes no probability)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attrgraph.engine.adapter import ModelAdapter
from attrgraph.engine.transcoders.base import TranscoderSet

N_LOGITS = 10


def norm_gain(norm: nn.Module) -> Tensor | None:
    """The final norm's elementwise gain, or None for a norm without one."""
    weight = getattr(norm, "weight", None)
    if not isinstance(weight, Tensor):
        return None
    gain = weight.detach().float()
    # Gemma's RMSNorm multiplies by (1 + weight): its stored weight is an offset from 1.
    return gain + 1.0 if "gemma" in type(norm).__name__.lower() else gain


@torch.no_grad()
def logit_effects(adapter: ModelAdapter, tc: TranscoderSet, layer: int) -> Tensor:
    """Demeaned direct logit effect of each feature's decoder row: (d_transcoder, vocab).

    A cross-layer feature's effect is that of its write into the last layer (the one the
    unembedding reads without any MLP in between).
    """
    w_dec = tc.layer(layer).W_dec[:, -1].float()  # (d_tc, d_model)
    gain = norm_gain(adapter.final_norm)
    if gain is not None:
        w_dec = w_dec * gain.to(w_dec.device)
    w_u = adapter.unembed_weight.detach().float().to(w_dec.device)  # (vocab, d_model)
    effects = w_dec @ w_u.T  # (d_tc, vocab)
    return effects - effects.mean(-1, keepdim=True)


def top_effects(effect: Tensor, n: int = N_LOGITS) -> tuple[list[int], list[float], list[int], list[float]]:
    """(top ids, top values, bottom ids, bottom values) of one feature's effects (vocab,)."""
    top_v, top_i = effect.topk(min(n, effect.numel()))
    bot_v, bot_i = (-effect).topk(min(n, effect.numel()))
    return top_i.tolist(), top_v.tolist(), bot_i.tolist(), (-bot_v).tolist()
