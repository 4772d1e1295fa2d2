"""save_transcoders / save_gemmascope_npz -> load_transcoders round trips."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open

from attrgraph.engine.transcoders import (
    Activation,
    InputSite,
    TranscoderSet,
    load_transcoders,
    save_gemmascope_npz,
    save_transcoders,
)

MakeSet = Callable[..., TranscoderSet]
AssertSame = Callable[[TranscoderSet, TranscoderSet], None]

VARIANTS: dict[str, dict[str, Any]] = {
    "relu": {},
    "jumprelu": {"activation": Activation.JUMPRELU},
    "topk": {"activation": Activation.TOPK, "topk": 3},
    "skip": {"skip": True, "input_site": InputSite.RESID_MID},
    "clt": {"cross_layer": True},
    "clt-jumprelu-skip": {"cross_layer": True, "activation": Activation.JUMPRELU, "skip": True},
    "clt-topk": {"cross_layer": True, "activation": Activation.TOPK, "topk": 2},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_round_trip(variant: str, make_set: MakeSet, assert_same: AssertSame, tmp_path: Path) -> None:
    original = make_set(**VARIANTS[variant])
    save_transcoders(original, tmp_path / "tc", model_name="toy-model")
    loaded = load_transcoders(tmp_path / "tc")
    assert_same(original, loaded)
    assert loaded.name == "toy"
    x = torch.randn(4, original.d_model)
    for layer in range(original.n_layers):
        assert torch.equal(original.encode(layer, x), loaded.encode(layer, x))


def test_per_layer_files_follow_circuit_tracer(make_set: MakeSet, tmp_path: Path) -> None:
    tc = make_set(activation=Activation.JUMPRELU, skip=True)
    out = save_transcoders(tc, tmp_path / "tc", model_name="gpt2")
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model_kind"] == "transcoder_set"
    assert config["model_name"] == "gpt2"
    assert config["feature_input_hook"] == "mlp.hook_in"  # the norm's output (gain applied)
    assert config["feature_output_hook"] == "hook_mlp_out"
    with safe_open(str(out / "layer_1.safetensors"), framework="pt") as f:
        assert set(f.keys()) == {
            "W_enc",
            "W_dec",
            "b_enc",
            "b_dec",
            "activation_function.threshold",
            "W_skip",
        }
        assert tuple(f.get_slice("W_dec").get_shape()) == (tc.d_transcoder, tc.d_model)


def test_cross_layer_files_follow_circuit_tracer(make_set: MakeSet, tmp_path: Path) -> None:
    tc = make_set(cross_layer=True, activation=Activation.JUMPRELU, input_site=InputSite.RESID_MID)
    out = save_transcoders(tc, tmp_path / "clt")
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model_kind"] == "cross_layer_transcoder"
    assert config["feature_input_hook"] == "hook_resid_mid"
    with safe_open(str(out / "W_enc_1.safetensors"), framework="pt") as f:
        assert set(f.keys()) == {"W_enc_1", "b_enc_1", "b_dec_1", "threshold_1"}
    with safe_open(str(out / "W_dec_1.safetensors"), framework="pt") as f:
        assert tuple(f.get_slice("W_dec_1").get_shape()) == (tc.d_transcoder, tc.n_layers - 1, tc.d_model)


def test_topk_stores_k_in_files_and_config(make_set: MakeSet, tmp_path: Path) -> None:
    out = save_transcoders(make_set(activation=Activation.TOPK, topk=4), tmp_path / "tc")
    assert yaml.safe_load((out / "config.yaml").read_text())["k"] == 4
    with safe_open(str(out / "layer_0.safetensors"), framework="pt") as f:
        assert int(f.get_tensor("k")) == 4
    (out / "config.yaml").unlink()  # k in the weights alone is enough
    loaded = load_transcoders(out)
    assert loaded.activation is Activation.TOPK and loaded.topk == 4


def test_refuses_to_mix_with_existing_files(
    make_set: MakeSet, assert_same: AssertSame, tmp_path: Path
) -> None:
    save_transcoders(make_set(n_layers=4), tmp_path / "tc")
    smaller = make_set(n_layers=2, seed=1)
    with pytest.raises(FileExistsError):
        save_transcoders(smaller, tmp_path / "tc")
    save_transcoders(smaller, tmp_path / "tc", overwrite=True)
    assert_same(smaller, load_transcoders(tmp_path / "tc"))  # no stale layer_2, layer_3


def test_saves_a_lazy_set(make_set: MakeSet, assert_same: AssertSame, tmp_path: Path) -> None:
    original = make_set(n_layers=4, activation=Activation.JUMPRELU)
    save_transcoders(original, tmp_path / "a")
    lazy = load_transcoders(tmp_path / "a", lazy=True, max_cached_layers=1)
    save_transcoders(lazy, tmp_path / "b")
    assert_same(original, load_transcoders(tmp_path / "b"))


@pytest.mark.parametrize("nested", [False, True])
def test_gemmascope_npz_round_trip(
    nested: bool, make_set: MakeSet, assert_same: AssertSame, tmp_path: Path
) -> None:
    original = make_set(activation=Activation.JUMPRELU)
    original.input_site = InputSite.NORMALIZED  # what GemmaScope reads, and the default without a config
    out = save_gemmascope_npz(original, tmp_path / "gemmascope", nested=nested)
    first = out / ("layer_0/width_10/average_l0_0/params.npz" if nested else "layer_0.npz")
    with np.load(first) as data:
        assert data["W_enc"].shape == (original.d_model, original.d_transcoder)  # stored transposed
        assert set(data.files) == {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"}
    loaded = load_transcoders(out)
    assert_same(original, loaded)
    assert loaded.name == "gemmascope"  # no config: the directory's name


def test_gemmascope_rejects_cross_layer(make_set: MakeSet, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="per-layer"):
        save_gemmascope_npz(make_set(cross_layer=True), tmp_path / "x")


def test_bfloat16_set_saves_and_loads_in_requested_dtype(make_set: MakeSet, tmp_path: Path) -> None:
    tc = make_set().to("cpu", torch.bfloat16)
    save_transcoders(tc, tmp_path / "tc")
    loaded = load_transcoders(tmp_path / "tc", dtype=torch.float64)
    assert loaded.layer(1).W_enc.dtype == torch.float64
    assert torch.equal(loaded.layer(1).W_enc, tc.layer(1).W_enc.double())


@pytest.mark.parametrize("site", list(InputSite))
def test_every_input_site_round_trips(site: InputSite, make_set: MakeSet, tmp_path: Path) -> None:
    tc = make_set()
    tc.input_site = site
    assert load_transcoders(save_transcoders(tc, tmp_path / "tc")).input_site is site
