"""load_transcoders on local directories: layouts, lazy loading, hooks, revision, errors."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from attrgraph.engine.transcoders import (
    Activation,
    InputSite,
    TranscoderLoadError,
    TranscoderSet,
    layer_files,
    load_transcoders,
    loading,
    save_gemmascope_npz,
    save_transcoders,
)

MakeSet = Callable[..., TranscoderSet]
AssertSame = Callable[[TranscoderSet, TranscoderSet], None]


def _edit_config(directory: Path, **changes: object) -> None:
    path = directory / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    config = {k: v for k, v in config.items() if v is not None}
    path.write_text(yaml.safe_dump(config))


@pytest.mark.parametrize("cross_layer", [False, True])
def test_lazy_set_reads_layers_on_demand(
    cross_layer: bool, make_set: MakeSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = make_set(n_layers=5, cross_layer=cross_layer, activation=Activation.JUMPRELU)
    save_transcoders(original, tmp_path / "tc")
    reads: list[str] = []
    real_read = layer_files.read_tensors

    def counting_read(path: Path, layer: int | None = None) -> dict[str, torch.Tensor]:
        reads.append(path.name)
        return real_read(path, layer)

    monkeypatch.setattr(layer_files, "read_tensors", counting_read)
    lazy = load_transcoders(tmp_path / "tc", lazy=True, max_cached_layers=1)
    first = "W_enc_0.safetensors" if cross_layer else "layer_0.safetensors"
    assert first in reads and not any("_3." in name for name in reads)  # only layer 0 so far
    for order in (range(5), reversed(range(5)), [2, 0, 4, 2, 1]):
        for layer in order:
            expected, got = original.layer(layer), lazy.layer(layer)
            assert torch.equal(expected.W_enc, got.W_enc)
            assert torch.equal(expected.W_dec, got.W_dec)
            assert torch.equal(expected.b_dec, got.b_dec)
            assert expected.threshold is not None and got.threshold is not None
            assert torch.equal(expected.threshold, got.threshold)
            assert len(lazy._cache) == 1
    assert any("_3." in name for name in reads)


def test_lazy_default_follows_total_size(
    make_set: MakeSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_transcoders(make_set(), tmp_path / "tc")
    assert not load_transcoders(tmp_path / "tc")._lazy
    monkeypatch.setattr(loading, "LAZY_ABOVE_BYTES", 0)
    assert load_transcoders(tmp_path / "tc")._lazy
    assert not load_transcoders(tmp_path / "tc", lazy=False)._lazy


@pytest.mark.parametrize(
    ("hook", "site"),
    [
        ("ln2.hook_normalized", InputSite.NORMALIZED),
        ("blocks.3.ln2.hook_normalized", InputSite.NORMALIZED),
        ("mlp.hook_in", InputSite.MLP_IN),
        ("hook_mlp_in", InputSite.MLP_IN),
        ("hook_resid_mid", InputSite.RESID_MID),
        ("blocks.{layer}.hook_resid_mid", InputSite.RESID_MID),
    ],
)
def test_input_hooks(hook: str, site: InputSite, make_set: MakeSet, tmp_path: Path) -> None:
    save_transcoders(make_set(), tmp_path / "tc")
    _edit_config(tmp_path / "tc", feature_input_hook=hook, feature_output_hook="blocks.0.mlp.hook_out")
    assert load_transcoders(tmp_path / "tc").input_site is site


@pytest.mark.parametrize(
    ("key", "hook"),
    [("feature_input_hook", "hook_resid_pre"), ("feature_output_hook", "blocks.2.hook_resid_post")],
)
def test_unsupported_hooks_are_named(key: str, hook: str, make_set: MakeSet, tmp_path: Path) -> None:
    save_transcoders(make_set(), tmp_path / "tc")
    _edit_config(tmp_path / "tc", **{key: hook})
    with pytest.raises(TranscoderLoadError, match=re.escape(hook)):
        load_transcoders(tmp_path / "tc")


def test_transcoders_list_sets_layer_order(
    make_set: MakeSet, assert_same: AssertSame, tmp_path: Path
) -> None:
    original = make_set()
    out = save_transcoders(original, tmp_path / "tc")
    (out / "weights").mkdir()
    for i, name in enumerate(["c", "b", "a"]):
        (out / f"layer_{i}.safetensors").rename(out / "weights" / f"{name}.safetensors")
    _edit_config(
        out,
        transcoders=["weights/c.safetensors", "weights/b.safetensors", str(out / "weights/a.safetensors")],
    )
    assert_same(original, load_transcoders(out))


def test_transcoders_list_can_pick_gemmascope_files(
    make_set: MakeSet, assert_same: AssertSame, tmp_path: Path
) -> None:
    original = make_set(activation=Activation.JUMPRELU)
    original.input_site = InputSite.NORMALIZED  # GemmaScope's input
    out = save_gemmascope_npz(original, tmp_path / "gs", nested=True)
    for i in range(original.n_layers):  # a second L0 per layer makes the tree ambiguous
        extra = out / f"layer_{i}/width_10/average_l0_99"
        extra.mkdir()
        shutil.copyfile(out / f"layer_{i}/width_10/average_l0_0/params.npz", extra / "params.npz")
    with pytest.raises(TranscoderLoadError, match=r"found 2 \.npz files"):
        load_transcoders(out)
    files = [f"layer_{i}/width_10/average_l0_0/params.npz" for i in range(original.n_layers)]
    (out / "config.yaml").write_text(yaml.safe_dump({"model_kind": "transcoder_set", "transcoders": files}))
    assert_same(original, load_transcoders(out))


def test_config_activation_overrides_inference(make_set: MakeSet, tmp_path: Path) -> None:
    save_transcoders(make_set(activation=Activation.JUMPRELU), tmp_path / "tc")
    _edit_config(tmp_path / "tc", activation="relu")
    loaded = load_transcoders(tmp_path / "tc")
    assert loaded.activation is Activation.RELU and loaded.layer(0).threshold is None


def test_name_and_revision(make_set: MakeSet, tmp_path: Path) -> None:
    tc = make_set(name="my-set")
    a = load_transcoders(save_transcoders(tc, tmp_path / "a"))
    b = load_transcoders(save_transcoders(tc, tmp_path / "b"))
    assert a.name == b.name == "my-set"
    assert len(a.revision) == 16 and a.revision == b.revision  # content, not location or mtime
    _edit_config(tmp_path / "b", name=None, model_name="gpt2")
    assert load_transcoders(tmp_path / "b").name == "gpt2"
    c = load_transcoders(save_transcoders(make_set(name="my-set", seed=1), tmp_path / "c"))
    assert c.revision != a.revision
    assert load_transcoders(tmp_path / "a" / "config.yaml").revision == a.revision


# -- errors -----------------------------------------------------------------------------------


def _error(source: str | Path) -> str:
    with pytest.raises(TranscoderLoadError) as info:
        load_transcoders(source)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ValueError)
    return message


def test_missing_sources(tmp_path: Path) -> None:
    assert "no such directory" in _error(tmp_path / "nope")
    assert "no such directory" in _error("./relative/nope")
    (tmp_path / "empty").mkdir()
    assert "no transcoders found" in _error(tmp_path / "empty")
    (tmp_path / "file.bin").write_bytes(b"x")
    assert "expected a transcoder directory" in _error(tmp_path / "file.bin")


def test_missing_layer_file(make_set: MakeSet, tmp_path: Path) -> None:
    out = save_transcoders(make_set(), tmp_path / "tc")
    (out / "layer_1.safetensors").unlink()
    assert "missing layer_1.safetensors" in _error(out)


def test_missing_cross_layer_decoder(make_set: MakeSet, tmp_path: Path) -> None:
    out = save_transcoders(make_set(cross_layer=True), tmp_path / "tc")
    (out / "W_dec_2.safetensors").unlink()
    assert "missing W_dec_2.safetensors" in _error(out)


def test_missing_tensor(make_set: MakeSet, tmp_path: Path) -> None:
    out = save_transcoders(make_set(), tmp_path / "tc")
    tensors = load_file(out / "layer_2.safetensors")
    del tensors["b_dec"]
    save_file(tensors, out / "layer_2.safetensors")
    assert "layer 2 (layer_2.safetensors): missing tensor b_dec" in _error(out)


def test_shape_mismatch(make_set: MakeSet, tmp_path: Path) -> None:
    out = save_transcoders(make_set(), tmp_path / "tc")
    wider = save_transcoders(make_set(d_transcoder=12), tmp_path / "wider")
    shutil.copyfile(wider / "layer_1.safetensors", out / "layer_1.safetensors")
    assert "W_enc has shape (12, 6), but layer 0 has (10, 6)" in _error(out)
    tensors = load_file(wider / "layer_0.safetensors")
    tensors["b_enc"] = tensors["b_enc"][:5].clone()
    save_file(tensors, wider / "layer_0.safetensors")
    assert "b_enc has shape (5,), expected (12,)" in _error(wider)


def test_bad_config_values(make_set: MakeSet, tmp_path: Path) -> None:
    out = save_transcoders(make_set(), tmp_path / "tc")
    _edit_config(out, model_kind="sparse_autoencoder")
    assert "unknown model_kind 'sparse_autoencoder'" in _error(out)
    _edit_config(out, model_kind="transcoder_set", activation="gelu")
    assert "unknown activation 'gelu'" in _error(out)
    _edit_config(out, activation="topk")
    assert "positive integer k" in _error(out)
    _edit_config(out, activation="jump_relu")
    assert "without a threshold" in _error(out)
    (out / "config.yaml").write_text("model_kind: [unclosed")
    assert "invalid YAML" in _error(out)


def test_listed_file_missing(make_set: MakeSet, tmp_path: Path) -> None:
    out = save_transcoders(make_set(), tmp_path / "tc")
    _edit_config(out, transcoders=["layer_0.safetensors", "gone.safetensors"])
    assert "layer 1: transcoder file gone.safetensors not found" in _error(out)


def test_corrupt_file(make_set: MakeSet, tmp_path: Path) -> None:
    out = save_transcoders(make_set(), tmp_path / "tc")
    (out / "layer_1.safetensors").write_bytes(b"\x00garbage" * 8)
    assert "layer_1.safetensors: cannot read" in _error(out)
