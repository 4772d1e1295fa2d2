"""Global TopK: one budget of active features per position, shared by every layer.

A global-TopK cross-layer transcoder (ByteDance-Seed/Cross-Layer-TopK-CLT, for Qwen3-8B-Base) encodes
each layer as a = relu(W_enc x) and then keeps, at each position, the n_layers * k latents with the
largest score a * W_dec_norm across all layers jointly: a layer's activations depend on the other
layers' pre-activations. The selected latents keep their value a; the decoder norm only ranks.

In the replacement model every layer reads the original model's MLP input (error nodes make it
exact), so all layers' pre-activations exist before anything is selected, and the selection is then
a fixed mask like any other activation pattern.
"""

from __future__ import annotations

import torch
from torch import Tensor


def global_topk(pres: list[Tensor], scales: list[Tensor], kept: int) -> list[Tensor]:
    """Activations of every layer under one joint TopK per position.

    pres[l]: (pos, d_transcoder) pre-activations of layer l; scales[l]: (d_transcoder,) its ranking
    weights; kept: latents kept per position over all layers. Returns relu(pre) on the kept latents.
    """
    acts = torch.stack([torch.relu(p) for p in pres], dim=1)  # (pos, n_layers, d_transcoder)
    scores = acts * torch.stack(scales).to(acts.dtype)  # (pos, n_layers, d_transcoder)
    flat = scores.flatten(1)  # (pos, n_layers * d_transcoder)
    indices = flat.topk(min(kept, flat.shape[1]), dim=1).indices  # (pos, kept)
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, indices, True).view_as(acts)
    selected = acts * mask  # (pos, n_layers, d_transcoder)
    return list(selected.unbind(dim=1))
