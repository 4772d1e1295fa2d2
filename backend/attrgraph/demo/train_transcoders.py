"""Train per-layer transcoders on the demo model's MLPs.

A layer-l transcoder reads the normalised MLP input (the output of `transformer.h[l].ln_2`) and
reconstructs the MLP output (the output of `transformer.h[l].mlp`) through a sparse, wide layer of
features. Training uses BatchTopK (the k * batch largest activations of a batch survive, so the mean
L0 is exactly k) with an auxiliary loss that gives dead features gradient (AuxK), resampling of
features that stay dead, and unit-norm decoder rows. For inference the batch-level top-k becomes a
JumpReLU with one threshold per layer, the running mean of the smallest activation that survived
(Bussmann et al., 2024): L0 stays close to k, and the set saves in the circuit-tracer layout as
JumpReLU (`activation_function.threshold`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from attrgraph.engine.transcoders.base import Activation, InputSite, TranscoderLayer, TranscoderSet


@dataclass(frozen=True)
class TranscoderConfig:
    expansion: int = 8  # d_transcoder = expansion * d_model
    k: int = 16  # target L0
    steps: int = 3000
    batch_size: int = 1024
    lr: float = 2e-3
    aux_k: int = 256  # dead features used by the auxiliary loss
    aux_coef: float = 1 / 32
    dead_after: int = 500  # steps without firing before a feature counts as dead
    resample_every: int = 250  # dead features are re-initialised this often, in the first 60% of steps
    n_tokens: int = 200_000  # activations collected for training
    seed: int = 0


@torch.no_grad()
def collect_mlp_activations(
    model: Any,
    ids: Tensor,
    keep: Tensor,
    batch_size: int = 64,
    show_progress: bool = True,
) -> tuple[list[Tensor], list[Tensor]]:
    """MLP inputs (after ln_2) and outputs of every layer at the `keep` positions.

    ids: (N, T) token windows; keep: (N, T) bool. Returns per layer (n_kept, d_model) tensors.
    """
    blocks: Any = model.transformer.h  # nn.ModuleList of GPT2Block
    ins: list[list[Tensor]] = [[] for _ in blocks]
    outs: list[list[Tensor]] = [[] for _ in blocks]
    current_keep: list[Tensor] = []

    def save_to(store: list[list[Tensor]], layer: int) -> Callable[[nn.Module, object, Tensor], None]:
        def hook(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            store[layer].append(output[current_keep[0]].float().clone())  # (n_kept_in_batch, d_model)

        return hook

    handles = []
    for layer, block in enumerate(blocks):
        handles.append(block.ln_2.register_forward_hook(save_to(ins, layer)))
        handles.append(block.mlp.register_forward_hook(save_to(outs, layer)))
    try:
        starts = range(0, ids.shape[0], batch_size)
        for start in tqdm(starts, desc="collect activations", disable=not show_progress, leave=False):
            current_keep[:] = [keep[start : start + batch_size]]
            model(input_ids=ids[start : start + batch_size])
    finally:
        for h in handles:
            h.remove()
    return [torch.cat(x) for x in ins], [torch.cat(y) for y in outs]


class BatchTopKTranscoder(nn.Module):
    """x (B, d_model) -> features (B, d_tc) -> y_hat (B, d_model)."""

    def __init__(self, d_model: int, d_tc: int, k: int, out_mean: Tensor) -> None:
        super().__init__()
        self.k = k
        w = torch.randn(d_tc, d_model)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_enc = nn.Parameter(w.clone() * 0.5)  # (d_tc, d_model)
        self.b_enc = nn.Parameter(torch.zeros(d_tc))
        self.W_dec = nn.Parameter(w.clone())  # (d_tc, d_model), unit rows
        self.b_dec = nn.Parameter(out_mean.clone())  # (d_model,)
        self.register_buffer("threshold", torch.zeros(()))

    def pre(self, x: Tensor) -> Tensor:
        return torch.relu(x @ self.W_enc.T + self.b_enc)  # (B, d_tc)

    def batch_topk(self, pre: Tensor) -> Tensor:
        flat = pre.flatten()  # (B * d_tc,)
        values, idx = flat.topk(self.k * pre.shape[0])
        return torch.zeros_like(flat).scatter(0, idx, values).view_as(pre)

    def decode(self, acts: Tensor) -> Tensor:
        return acts @ self.W_dec + self.b_dec  # (B, d_model)

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        norms = self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
        self.W_dec.div_(norms)
        self.W_enc.mul_(norms)  # keep the function unchanged
        self.b_enc.mul_(norms.squeeze(1))


def train_transcoder(
    x: Tensor, y: Tensor, cfg: TranscoderConfig, layer: int, show_progress: bool = True
) -> tuple[TranscoderLayer, dict[str, float]]:
    """Train one layer's transcoder on inputs x (n, d_model) and MLP outputs y (n, d_model)."""
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + layer)
    torch.manual_seed(cfg.seed * 1000 + layer)
    n, d_model = x.shape
    d_tc = cfg.expansion * d_model
    tc = BatchTopKTranscoder(d_model, d_tc, cfg.k, y.mean(0))
    opt = torch.optim.Adam(tc.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    var = (y - y.mean(0)).pow(2).sum(-1).mean()  # total variance per token
    steps_since_fired = torch.zeros(d_tc)
    threshold_sum, threshold_n = 0.0, 0
    bar = tqdm(range(cfg.steps), desc=f"transcoder {layer}", disable=not show_progress, leave=False)
    fvu = 1.0
    for step in bar:
        lr = cfg.lr * min(1.0, (cfg.steps - step) / (0.2 * cfg.steps))  # linear decay over the last 20%
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        xb, yb = x[idx], y[idx]  # (B, d_model) each
        pre = tc.pre(xb)  # (B, d_tc)
        acts = tc.batch_topk(pre)  # (B, d_tc)
        y_hat = tc.decode(acts)  # (B, d_model)
        err = yb - y_hat
        mse = err.pow(2).sum(-1).mean()
        loss = mse / var
        # AuxK: the top dead features reconstruct the remaining error, so they get gradient again.
        dead = steps_since_fired >= cfg.dead_after  # (d_tc,)
        if dead.any():
            k_aux = min(cfg.aux_k, int(dead.sum()))
            dead_pre = pre * dead  # (B, d_tc)
            values, indices = dead_pre.topk(k_aux, dim=-1)
            aux_acts = torch.zeros_like(pre).scatter(-1, indices, values)
            aux_hat = aux_acts @ tc.W_dec  # (B, d_model)
            aux = (err.detach() - aux_hat).pow(2).sum(-1).mean() / var
            loss = loss + cfg.aux_coef * aux
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        opt.step()
        tc.normalise_decoder()
        if step % cfg.resample_every == 0 and 0 < step <= 0.6 * cfg.steps and dead.any():
            _resample(tc, opt, dead, xb, err.detach(), gen)
            steps_since_fired[dead] = 0
        with torch.no_grad():
            fired = (acts > 0).any(0)
            steps_since_fired = torch.where(fired, torch.zeros_like(steps_since_fired), steps_since_fired + 1)
            if step >= cfg.steps // 2:  # threshold estimate: mean smallest surviving activation
                positive = acts[acts > 0]
                if positive.numel():
                    threshold_sum += float(positive.min())
                    threshold_n += 1
            fvu = 0.98 * fvu + 0.02 * float(mse / var) if step else float(mse / var)
        if step % 50 == 0:
            bar.set_postfix(fvu=f"{fvu:.3f}", dead=int(dead.sum()))
    threshold = threshold_sum / max(1, threshold_n)
    params = TranscoderLayer(
        W_enc=tc.W_enc.detach().clone(),
        b_enc=tc.b_enc.detach().clone(),
        W_dec=tc.W_dec.detach().clone().unsqueeze(1),  # (d_tc, 1, d_model)
        b_dec=tc.b_dec.detach().clone(),
        threshold=torch.full((d_tc,), threshold),
    )
    return params, {"train_fvu": round(fvu, 4), "threshold": round(threshold, 5)}


@torch.no_grad()
def _resample(
    tc: BatchTopKTranscoder,
    opt: torch.optim.Optimizer,
    dead: Tensor,
    x: Tensor,
    err: Tensor,
    gen: torch.Generator,
) -> None:
    """Point dead features at inputs the transcoder reconstructs badly (Anthropic's resampling):
    decoder row = the example's error direction, encoder row = its input direction at the alive
    features' mean encoder norm, bias 0, optimiser state cleared."""
    dead_idx = dead.nonzero().squeeze(1)  # (n_dead,)
    weights = err.pow(2).sum(-1)  # (B,)
    pick = torch.multinomial(weights, dead_idx.numel(), replacement=True, generator=gen)  # (n_dead,)
    enc_norm = tc.W_enc[~dead].norm(dim=1).mean() if (~dead).any() else torch.tensor(1.0)
    x_dir = x[pick] - x.mean(0)
    tc.W_dec[dead_idx] = err[pick] / err[pick].norm(dim=1, keepdim=True).clamp_min(1e-8)
    tc.W_enc[dead_idx] = x_dir / x_dir.norm(dim=1, keepdim=True).clamp_min(1e-8) * enc_norm
    tc.b_enc[dead_idx] = 0.0
    for param in (tc.W_enc, tc.W_dec, tc.b_enc):
        state = opt.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][dead_idx] = 0.0


def make_transcoder_set(layers: list[TranscoderLayer], name: str) -> TranscoderSet:
    return TranscoderSet(
        layers,
        n_layers=len(layers),
        cross_layer=False,
        activation=Activation.JUMPRELU,
        input_site=InputSite.MLP_IN,
        name=name,
    )


def train_transcoders(
    x: list[Tensor], y: list[Tensor], cfg: TranscoderConfig, name: str, show_progress: bool = True
) -> tuple[TranscoderSet, list[dict[str, float]]]:
    """One transcoder per layer; returns the set and per-layer training notes."""
    layers, notes = [], []
    for layer, (xl, yl) in enumerate(zip(x, y, strict=True)):
        params, note = train_transcoder(xl, yl, cfg, layer, show_progress)
        layers.append(params)
        notes.append({"layer": layer, **note})
    return make_transcoder_set(layers, name), notes
