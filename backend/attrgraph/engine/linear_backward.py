"""Gradients of the frozen replacement model, written out as matrix products instead of autograd.

With attention patterns and norm denominators frozen and every MLP output a leaf, the backward pass
from a target to the write sites is linear, and per layer it is only:

    g_mid  = g_out  (+ the transcoder's skip path, if it has one)
    g_in   = g_mid + input_norm^T( V^T( pattern^T( O^T( post_norm^T(g_mid) ))))

Autograd through the Hugging Face module tree (batched with `is_grads_batched`, i.e. vmap) spends
most of its time moving memory: the fused qkv projection's zero q/k gradients, vmap's transposes,
each norm's elementwise backward. Here each norm's gain and centring are folded into the value and
output matrices once per trace, and each per-position denominator into the attention pattern, so a
layer is three matrix products per head and one accumulation, nothing elementwise in between.

The maps come from the modules' weights (`_attention_weights` knows GPT-2's fused Conv1D and the
q/k/v/o projections of Llama, Gemma and Qwen); `LinearBackward.build` returns None for any layout it
does not know, and `RowBuilder` checks one target against autograd before trusting it, falling back
to autograd if they disagree. Gradients are position-major, (pos, batch, d_model): the edge products
group sources by position, so they read these without a transpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attrgraph.engine.adapter import ModelAdapter
from attrgraph.engine.linearize import FrozenState, NormSpec, norm_spec
from attrgraph.engine.transcoders.base import InputSite, TranscoderSet


@dataclass(frozen=True)
class _Layer:
    """One layer's backward maps (the compute dtype); the per-position scales are separate."""

    out_maps: list[Tensor]  # per query head (d_model, head_dim): O^T with the post-attention norm's gain
    in_maps: list[Tensor]  # per key/value head (head_dim, d_model): V^T, input norm gain and centring
    kv_of_head: list[int]  # the key/value head each query head reads (GQA)
    pattern: Tensor  # (heads, q, k) the frozen attention pattern
    in_scale: Tensor  # (pos,) the input norm's frozen 1/denominator
    post_scale: Tensor | None  # (pos,) the post-attention norm's (Gemma), or None
    skip: Tensor | None  # (d_model, d_model): g @ skip is the skip path's gradient, before mlp_scale
    mlp_scale: Tensor  # (pos,) the pre-MLP norm's frozen 1/denominator (transcoder input site)


class LinearBackward:
    """Exact gradients at resid0 and at every MLP write site, for targets that read one vector at
    one (layer, position) each: the transcoder input of a layer, or the final norm's output."""

    def __init__(
        self, layers: list[_Layer], site_maps: list[Tensor], final_map: Tensor, final_scale: Tensor
    ) -> None:
        self.layers = layers
        self.site_maps = site_maps  # per layer (d_model, d_model): target vector -> resid_mid gradient
        self.final_map = final_map  # (d_model, d_model): final-norm output -> residual gradient
        self.final_scale = final_scale  # (pos,)
        self.dtype = final_map.dtype

    @classmethod
    @torch.no_grad()
    def build(
        cls, adapter: ModelAdapter, transcoders: TranscoderSet, frozen: FrozenState, dtype: torch.dtype
    ) -> LinearBackward | None:
        """The maps for this model and forward pass, or None when the layout is not one this module
        knows (the caller then differentiates with autograd)."""
        if not frozen.recording:
            return None
        layers: list[_Layer] = []
        site_maps: list[Tensor] = []
        site = transcoders.input_site
        for index, block in enumerate(adapter.layers):
            attention = _attention_module(block)
            if attention is None or id(attention) not in frozen.patterns:
                return None
            weights = _attention_weights(attention, adapter.model)
            input_norm = _first_child(block, ("ln_1", "input_layernorm"))
            post_norm = (
                getattr(block, "post_attention_layernorm", None)
                if hasattr(block, "pre_feedforward_layernorm")
                else None
            )
            mlp_norm = adapter.pre_mlp_norms[index]
            if weights is None or input_norm is None or id(input_norm) not in frozen.norm_scales:
                return None
            if id(mlp_norm) not in frozen.norm_scales:
                return None
            if post_norm is not None and id(post_norm) not in frozen.norm_scales:
                return None
            value_t, output_t, n_heads, n_kv, head_dim = weights  # (kv*hd, d), (d, H*hd)
            in_spec, mlp_spec = norm_spec(input_norm), norm_spec(mlp_norm)
            # g_x = scale * (g_v @ V^T) diag(gain) C: the gain and centring are one matrix.
            in_full = (value_t.double() @ _gain_and_centring(in_spec, value_t.shape[1])).to(dtype)
            out_full = output_t.double()
            if post_norm is not None:
                post_spec = norm_spec(post_norm)
                if post_spec.centred or post_spec.bias is not None:
                    return None  # a centred post-attention norm is not a layout any supported family has
                out_full = _gain_and_centring(post_spec, out_full.shape[0]) @ out_full
            out_full = out_full.to(dtype)
            site_map = _site_map(site, mlp_spec, int(value_t.shape[1])).to(dtype)
            w_skip = transcoders.layer(index).W_skip
            skip = (
                None
                if w_skip is None
                else (w_skip.double().to(site_map.device) @ site_map.double()).to(dtype)
            )
            layers.append(
                _Layer(
                    out_maps=[
                        out_full[:, h * head_dim : (h + 1) * head_dim].contiguous() for h in range(n_heads)
                    ],
                    in_maps=[in_full[j * head_dim : (j + 1) * head_dim].contiguous() for j in range(n_kv)],
                    kv_of_head=[h * n_kv // n_heads for h in range(n_heads)],
                    pattern=frozen.patterns[id(attention)][0],
                    in_scale=_scale(frozen, input_norm),
                    post_scale=None if post_norm is None else _scale(frozen, post_norm),
                    skip=skip,
                    # A transcoder reading resid_mid sees it unnormalised: no scale on that path.
                    mlp_scale=_scale(frozen, mlp_norm)
                    if site is not InputSite.RESID_MID
                    else torch.ones_like(_scale(frozen, mlp_norm)),
                )
            )
            site_maps.append(site_map)
        final = adapter.final_norm
        if id(final) not in frozen.norm_scales:
            return None
        final_map = _gain_and_centring(norm_spec(final), adapter.d_model).to(dtype)
        return cls(layers, site_maps, final_map, _scale(frozen, final))

    @torch.no_grad()
    def gradients(self, layer: int, positions: Tensor, vectors: Tensor, last: int) -> list[Tensor]:
        """Gradients of targets reading `vectors` (B, d_model) at (`layer`, `positions`); layer
        n_layers means the final norm's output (logits). Only positions < `last` (past every
        target's position) can reach a target, so only those are computed.

        Returns [resid0, write site 0, ..., write site layer-1], each (last, B, d_model).
        """
        batch = int(vectors.shape[0])
        rows = torch.arange(batch, device=vectors.device)
        vectors = vectors.to(self.dtype)
        pos = positions.to(vectors.device)
        g = vectors.new_zeros((last, batch, vectors.shape[-1]))  # (pos, B, d_model)
        if layer == len(self.layers):
            # The final norm: g_resid = scale * v diag(gain) C, at the target's position.
            g[pos, rows] = (vectors @ self.final_map) * self.final_scale[pos, None]
        else:
            g[pos, rows] = (vectors @ self.site_maps[layer]) * self.layers[layer].mlp_scale[pos, None]
            g = self._attention(layer, g, last)
        # g: the gradient after layer `layer` - 1, which is that layer's write site's.
        grads = []
        for index in range(layer - 1, -1, -1):
            grads.append(g)
            g = self._attention(index, self._skip(index, g, last), last)
        grads.append(g)  # resid0
        grads.reverse()
        return grads

    def _skip(self, index: int, g_after: Tensor, last: int) -> Tensor:
        """resid_mid gradient from the gradient after layer `index` (g_after is kept unchanged)."""
        spec = self.layers[index]
        if spec.skip is None:
            return g_after
        through = (g_after.reshape(-1, g_after.shape[-1]) @ spec.skip).view_as(g_after)
        return torch.addcmul(g_after, through, spec.mlp_scale[:last, None, None])

    def _attention(self, index: int, g_mid: Tensor, last: int) -> Tensor:
        """The gradient entering layer `index` from its resid_mid gradient: g_mid plus every head's
        path (a new tensor; g_mid may be another layer's write-site gradient, so it stays)."""
        spec = self.layers[index]
        batch, d_model = int(g_mid.shape[1]), int(g_mid.shape[2])
        # Per head: mix[k, q] = in_scale[k] * pattern[q, k] * post_scale[q], for q, k < last.
        pattern = spec.pattern[:, :last, :last]
        if spec.post_scale is not None:
            pattern = pattern * spec.post_scale[:last, None]
        mix = (pattern.transpose(1, 2) * spec.in_scale[:last, None]).to(self.dtype)  # (heads, k, q)
        flat_in = g_mid.view(last * batch, d_model)
        flat_out: Tensor | None = None  # g_mid + every head's contribution: the first addmm copies g_mid
        for head, out_map in enumerate(spec.out_maps):
            head_dim = int(out_map.shape[1])
            g_z = (flat_in @ out_map).view(last, batch * head_dim)  # (q, B*hd)
            g_v = (mix[head] @ g_z).view(last * batch, head_dim)  # (k*B, hd), scaled
            in_map = spec.in_maps[spec.kv_of_head[head]]
            if flat_out is None:
                flat_out = torch.addmm(flat_in, g_v, in_map)
            else:
                flat_out.addmm_(g_v, in_map)
        assert flat_out is not None
        return flat_out.view(last, batch, d_model)


def _attention_module(block: nn.Module) -> nn.Module | None:
    for name in ("attn", "self_attn"):
        module = getattr(block, name, None)
        if isinstance(module, nn.Module):
            return module
    return None


def _attention_weights(attention: nn.Module, model: nn.Module) -> tuple[Tensor, Tensor, int, int, int] | None:
    """(V^T (kv*hd, d_model), O^T (d_model, H*hd), heads, kv heads, head_dim) as the backward reads
    them: g_x = g_v @ V^T and g_z = g_out @ O^T."""
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    if hasattr(attention, "c_attn") and hasattr(attention, "c_proj"):  # GPT-2: fused Conv1D, x @ W
        if getattr(attention, "is_cross_attention", False):
            return None
        n_heads, head_dim = int(getattr(attention, "num_heads", 0)), int(getattr(attention, "head_dim", 0))
        fused, projection = (
            getattr(attention.c_attn, "weight", None),
            getattr(attention.c_proj, "weight", None),
        )
        width = n_heads * head_dim
        if not isinstance(fused, Tensor) or not isinstance(projection, Tensor) or not width:
            return None
        if fused.shape[1] != 3 * width or projection.shape[0] != width:
            return None
        value_t = fused[:, 2 * width : 3 * width].T  # fused: (d_model, 3 * width), q | k | v
        return value_t.detach(), projection.detach().T, n_heads, n_heads, head_dim
    v_proj, o_proj = getattr(attention, "v_proj", None), getattr(attention, "o_proj", None)
    if not isinstance(v_proj, nn.Linear) or not isinstance(o_proj, nn.Linear) or config is None:
        return None
    if getattr(attention, "v_norm", None) is not None:
        return None  # a norm on the values is not linear in them
    head_dim = int(getattr(attention, "head_dim", 0))
    n_heads = int(getattr(config, "num_attention_heads", 0))
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_heads)
    if not head_dim or not n_heads or v_proj.weight.shape[0] != n_kv * head_dim:
        return None
    if o_proj.weight.shape[1] != n_heads * head_dim:
        return None
    # nn.Linear: y = x @ W^T, so its backward reads W itself.
    return v_proj.weight.detach(), o_proj.weight.detach(), n_heads, n_kv, head_dim


def _first_child(block: nn.Module, names: tuple[str, ...]) -> nn.Module | None:
    for name in names:
        module = getattr(block, name, None)
        if isinstance(module, nn.Module):
            return module
    return None


def _gain_and_centring(spec: NormSpec, width: int) -> Tensor:
    """diag(gain) C as a (width, width) float64 matrix: a frozen norm's backward before its scale."""
    device = spec.weight.device if spec.weight is not None else torch.device("cpu")
    gain = (
        spec.weight.double() + spec.weight_offset
        if spec.weight is not None
        else torch.ones(width, dtype=torch.float64, device=device)
    )
    matrix = torch.diag(gain)
    if spec.centred:
        matrix = matrix - gain[:, None] / width
    return matrix


def _site_map(site: InputSite, spec: NormSpec, width: int) -> Tensor:
    """(width, width): a gradient at the transcoder input -> at resid_mid, before the frozen scale."""
    if site is InputSite.RESID_MID:
        device = spec.weight.device if spec.weight is not None else torch.device("cpu")
        return torch.eye(width, dtype=torch.float64, device=device)
    if site is InputSite.NORMALIZED:  # normalised before the gain: centring only
        centring = torch.eye(width, dtype=torch.float64)
        if spec.centred:
            centring = centring - 1.0 / width
        device = spec.weight.device if spec.weight is not None else torch.device("cpu")
        return centring.to(device)
    return _gain_and_centring(spec, width)


def _scale(frozen: FrozenState, module: nn.Module) -> Tensor:
    return frozen.norm_scales[id(module)].reshape(-1)  # (pos,)
