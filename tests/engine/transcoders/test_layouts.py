"""Each published layout loads, and computes what its own definition says (checked from the raw files)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from tests.support.layouts import Raw, write_gemma_scope2, write_global_topk, write_topk_plt
from torch import Tensor

from attrgraph.engine.transcoders import (
    Activation,
    InputSite,
    TranscoderLoadError,
    TranscoderSet,
    load_transcoders,
    published,
    save_transcoders,
)

N_LAYERS, D_MODEL, D_SAE = 3, 8, 64


def _inputs(seed: int = 5, n_pos: int = 7) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n_pos, D_MODEL, generator=g) * 2 for _ in range(N_LAYERS)]


def _check(tc: TranscoderSet, acts: list[Tensor], recon: list[Tensor], inputs: list[Tensor]) -> None:
    got = tc.encode_all(inputs)
    for layer in range(N_LAYERS):
        torch.testing.assert_close(got[layer], acts[layer], rtol=1e-5, atol=1e-6)
        assert bool(acts[layer].any())  # the check is not vacuous
    for layer, out in enumerate(tc.reconstruct(got, inputs)):
        torch.testing.assert_close(out, recon[layer], rtol=1e-5, atol=1e-5)


def _gemma_scope2_reference(
    raw: Raw, inputs: list[Tensor], cross_layer: bool
) -> tuple[list[Tensor], list[Tensor]]:
    acts = []
    for t, x in zip(raw, inputs, strict=True):
        pre = x @ t["w_enc"] + t["b_enc"]
        acts.append(pre * (pre > t["threshold"]))
    recon = []
    for m, (t, x) in enumerate(zip(raw, inputs, strict=True)):
        out = t["b_dec"] + x @ t["affine_skip_connection"]
        if cross_layer:  # w_dec indexed by absolute output layer
            out = out + sum(acts[src] @ raw[src]["w_dec"][:, m] for src in range(m + 1))
        else:
            out = out + acts[m] @ t["w_dec"]
        recon.append(out)
    return acts, recon


def test_gemma_scope2_per_layer_tree(tmp_path: Path) -> None:
    raw = write_gemma_scope2(tmp_path / "transcoder_all", n_layers=N_LAYERS, d_model=D_MODEL, d_sae=D_SAE)
    tc = load_transcoders(tmp_path / "transcoder_all")
    assert (tc.cross_layer, tc.activation, tc.input_site) == (False, Activation.JUMPRELU, InputSite.MLP_IN)
    inputs = _inputs()
    _check(tc, *_gemma_scope2_reference(raw, inputs, cross_layer=False), inputs)


def test_gemma_scope2_tree_with_two_variants_is_ambiguous(tmp_path: Path) -> None:
    root = tmp_path / "transcoder_all"
    write_gemma_scope2(root, n_layers=N_LAYERS, d_model=D_MODEL, d_sae=D_SAE)
    other = root / "layer_1_width_16k_l0_big_affine"
    shutil.copytree(root / "layer_1_width_16k_l0_small_affine", other)
    with pytest.raises(TranscoderLoadError, match=r"found 2 params\.safetensors for layer 1"):
        load_transcoders(root)


def test_gemma_scope2_cross_layer(tmp_path: Path) -> None:
    clt = tmp_path / "clt" / "width_262k_l0_medium_affine"
    raw = write_gemma_scope2(clt, n_layers=N_LAYERS, d_model=D_MODEL, d_sae=D_SAE, cross_layer=True)
    for layer in range(N_LAYERS):  # outputs before a feature's own layer are unused: make them loud
        raw[layer]["w_dec"][:, :layer] = 1e6
    inputs = _inputs()
    reference = _gemma_scope2_reference(raw, inputs, cross_layer=True)
    for layer, t in enumerate(raw):
        save_file(t, str(clt / f"params_layer_{layer}.safetensors"))
    tc = load_transcoders(clt)
    assert (tc.cross_layer, tc.activation, tc.input_site) == (True, Activation.JUMPRELU, InputSite.MLP_IN)
    _check(tc, *reference, inputs)
    # circuit-tracer's configs list one file more than the model has layers; w_dec says how many.
    listed = [str(clt / f"params_layer_{i}.safetensors") for i in [*range(N_LAYERS), N_LAYERS - 1]]
    config = {
        "model_kind": "cross_layer_transcoder",
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "hook_mlp_out",
        "transcoders": listed,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    via_list = load_transcoders(tmp_path)
    assert via_list.n_layers == N_LAYERS
    _check(via_list, *reference, inputs)
    config["transcoders"] = listed[:2]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(TranscoderLoadError, match="covers 3 layers but only 2 files"):
        load_transcoders(tmp_path)


def _global_topk_reference(raw: Raw, inputs: list[Tensor], k: int) -> tuple[list[Tensor], list[Tensor]]:
    acts = torch.stack([torch.relu(x @ t["W_enc"].T) for t, x in zip(raw, inputs, strict=True)], 1)
    scores = acts * torch.stack([t["W_dec_norm"] for t in raw])  # (pos, n_layers, d_sae)
    kept = torch.zeros_like(scores, dtype=torch.bool)
    for pos in range(scores.shape[0]):  # the n_layers * k best over all layers of this position
        order = scores[pos].flatten().argsort(descending=True)[: N_LAYERS * k]
        kept[pos].view(-1)[order] = True
    chosen = list((acts * kept).unbind(1))
    recon = [sum(chosen[s] @ raw[s]["W_dec"][:, m - s] for s in range(m + 1)) for m in range(N_LAYERS)]
    return chosen, [torch.as_tensor(r) for r in recon]


def test_global_topk_cross_layer(tmp_path: Path) -> None:
    raw = write_global_topk(tmp_path / "clt", n_layers=N_LAYERS, d_model=D_MODEL, d_sae=D_SAE, k=5)
    tc = load_transcoders(tmp_path / "clt")
    assert (tc.cross_layer, tc.activation, tc.topk) == (True, Activation.GLOBAL_TOPK, 5)
    assert tc.input_site is InputSite.RESID_MID
    inputs = _inputs()
    acts, recon = _global_topk_reference(raw, inputs, k=5)
    _check(tc, acts, recon, inputs)
    per_layer = torch.stack([(a != 0).sum(1) for a in acts])  # (n_layers, pos)
    assert bool((per_layer.sum(0) == N_LAYERS * 5).all())  # one budget per position ...
    assert len(set(per_layer.flatten().tolist())) > 1  # ... shared unevenly between layers
    with pytest.raises(ValueError, match="encode_all"):
        tc.encode(0, inputs[0])


def test_global_topk_needs_decoder_norms(tmp_path: Path) -> None:
    write_global_topk(tmp_path / "clt", n_layers=N_LAYERS, d_model=D_MODEL, d_sae=D_SAE)
    (tmp_path / "clt" / "W_dec_norm.safetensors").unlink()
    assert load_transcoders(tmp_path / "clt").activation is Activation.GLOBAL_TOPK  # W_dec_norm_{l}
    (tmp_path / "clt" / "config.json").write_text('{"d_feature": 64}')
    with pytest.raises(TranscoderLoadError, match="positive integer k"):
        load_transcoders(tmp_path / "clt")


def test_global_topk_saves_and_reloads(tmp_path: Path) -> None:
    write_global_topk(tmp_path / "clt", n_layers=N_LAYERS, d_model=D_MODEL, d_sae=D_SAE, k=4)
    original = load_transcoders(tmp_path / "clt")
    again = load_transcoders(save_transcoders(original, tmp_path / "saved"))
    assert (again.activation, again.topk, again.input_site) == (
        Activation.GLOBAL_TOPK,
        4,
        InputSite.RESID_MID,
    )
    inputs = _inputs()
    for a, b in zip(original.encode_all(inputs), again.encode_all(inputs), strict=True):
        assert torch.equal(a, b)


def test_topk_per_layer_set(tmp_path: Path) -> None:
    raw = write_topk_plt(tmp_path / "crv", n_layers=N_LAYERS, d_model=D_MODEL, d_sae=D_SAE)
    with pytest.raises(TranscoderLoadError, match="positive integer k"):
        load_transcoders(tmp_path / "crv")  # a local copy does not say which set it is
    assert published.known_topk("facebook/crv-8b-instruct-transcoders") == 128
    config = yaml.safe_load((tmp_path / "crv" / "config.yaml").read_text())
    (tmp_path / "crv" / "config.yaml").write_text(yaml.safe_dump({**config, "k": 6}))
    tc = load_transcoders(tmp_path / "crv")
    assert (tc.activation, tc.topk, tc.input_site) == (Activation.TOPK, 6, InputSite.MLP_IN)
    inputs = _inputs()
    acts, recon = [], []
    for t, x in zip(raw, inputs, strict=True):
        pre = x @ t["W_enc"].T + t["b_enc"]
        keep = pre.topk(6, dim=-1).indices  # circuit-tracer's TopK: no ReLU
        acts.append(torch.zeros_like(pre).scatter(-1, keep, pre.gather(-1, keep)))
        recon.append(acts[-1] @ t["W_dec"] + t["b_dec"])
    _check(tc, acts, recon, inputs)
