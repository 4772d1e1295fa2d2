"""engine/hub.py and engine/downloads.py against a local server that answers like the hub (HF_ENDPOINT)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from attrgraph.engine.downloads import fetch, plan_model, plan_transcoders
from attrgraph.engine.hub import HubError, HubRef, MissingOffline, cache_dir, download, parse_hub_ref
from attrgraph.engine.models import ModelLoadError, load_model
from attrgraph.engine.transcoders import TranscoderLoadError, TranscoderSet, load_transcoders
from tests.support.fake_hub import FakeHub, TinyHub, publish_tiny_hub
from tests.support.layouts import write_gemma_scope2, write_global_topk

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A running fake hub as $HF_ENDPOINT, with an empty $HF_HOME and downloads allowed."""
    for var in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def tiny(hub: FakeHub, tmp_path: Path) -> TinyHub:
    return publish_tiny_hub(hub, tmp_path / "src")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("org/name", HubRef("org/name", "", None)),
        ("hf://org/name@v1.0", HubRef("org/name", "", "v1.0")),
        ("org/name/sub/dir", HubRef("org/name", "sub/dir", None)),
        ("org/name@main/sub", HubRef("org/name", "sub", "main")),
        ("org/name/sub@" + COMMIT, HubRef("org/name", "sub", COMMIT)),
        ("hf://org/name/layer_0/params.npz?revision=abc", HubRef("org/name", "layer_0/params.npz", "abc")),
        ("name", None),
        ("org/../x", None),
        ("-bad/name", None),
    ],
)
def test_parse_hub_ref(ref: str, expected: HubRef | None) -> None:
    assert parse_hub_ref(ref) == expected


def test_cache_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_first_use_downloads_exactly_what_is_needed(
    hub: FakeHub, tiny: TinyHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = load_model(tiny.model)
    tc = load_transcoders(tiny.transcoders)
    assert set(hub.downloads()) == tiny.needed  # no .bin/onnx/README, no dashboards, no other width
    assert len(hub.downloads()) == len(tiny.needed)
    assert lm.family == "gpt2" and lm.revision == hub.repos[tiny.model].commit
    assert lm.path is not None and lm.path.is_relative_to(cache_dir())
    assert (tc.n_layers, tc.d_transcoder, tc.d_model) == (2, 48, 64)
    assert tc.revision == hub.repos[tiny.transcoders].commit

    reference = load_model(tmp_path / "src" / "model")
    ids = torch.tensor([[1, 40, 41, 42]])
    torch.testing.assert_close(lm.model(ids).logits, reference.model(ids).logits, rtol=0, atol=0)

    # offline, with the server gone: the same files come from the cache, and nothing is asked
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: any request would fail
    before = len(hub.requests)
    assert load_model(tiny.model).revision == lm.revision
    assert load_transcoders(tiny.transcoders).revision == tc.revision
    assert len(hub.requests) == before


def test_offline_and_missing_names_the_pull_command(
    hub: FakeHub, tiny: TinyHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_model(tiny.model)  # cached; the transcoders are not
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"`attrgraph pull --model org/absent`") as info:
        load_model("org/absent")
    assert "\n" not in str(info.value) and "offline" in str(info.value)
    with pytest.raises(TranscoderLoadError, match=rf"`attrgraph pull --transcoders {tiny.transcoders}`"):
        load_transcoders(tiny.transcoders)
    assert not any("absent" in r for r in hub.requests)
    # the set's config is cached but one hf:// weight file is not: that file is named
    monkeypatch.delenv("HF_HUB_OFFLINE")
    plan = plan_transcoders(tiny.transcoders)
    config = next(f for f in plan.files if f.path == "config.yaml")
    download(config.repo_id, config.path, config.revision, pull=plan.pull)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TranscoderLoadError, match=r"layer_0/width_48/average_l0_0/params\.npz is not in"):
        load_transcoders(tiny.transcoders)


def test_missing_model_shard_offline(hub: FakeHub, tiny: TinyHub, monkeypatch: pytest.MonkeyPatch) -> None:
    lm = load_model(tiny.model)
    assert lm.path is not None
    (lm.path / "model.safetensors").unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"org/tiny-gpt2@main \(cached partly.*attrgraph pull --model"):
        load_model(tiny.model)


def test_plans_list_sizes_without_downloading(hub: FakeHub, tiny: TinyHub) -> None:
    model = plan_model(tiny.model)
    assert {f"{f.repo_id}/{f.path}" for f in model.files} == {n for n in tiny.needed if n.startswith("org/")}
    expected = sum(
        len(d) for n, d in hub.repos[tiny.model].files.items() if f"org/tiny-gpt2/{n}" in tiny.needed
    )
    assert model.total_bytes == expected > 0
    assert len(model.missing()) == len(model.files)
    transcoders = plan_transcoders(tiny.transcoders)
    assert {f"{f.repo_id}/{f.path}" for f in transcoders.files} == {
        n for n in tiny.needed if not n.startswith("org/")
    }
    assert hub.downloads() == ["ct/tiny-transcoders/config.yaml"]  # planning reads only the config


def test_pinned_revisions_and_hub_errors(hub: FakeHub, tiny: TinyHub, tmp_path: Path) -> None:
    commit = hub.repos[tiny.model].commit
    assert load_model(f"{tiny.model}@{commit}").revision == commit
    with pytest.raises(ModelLoadError, match="has no revision 'v9'"):
        load_model(tiny.model, revision="v9")
    with pytest.raises(ModelLoadError, match=r"org/nope not found on http://127\.0\.0\.1"):
        load_model("org/nope")
    hub.add_repo("org/gated", tmp_path / "src" / "model", gated=True)
    with pytest.raises(ModelLoadError, match=r"org/gated is gated: accept its terms .* HF_TOKEN"):
        load_model("org/gated")
    with pytest.raises(HubError, match="has no folder 'missing'"):
        plan_transcoders(f"{tiny.transcoders}/missing")


def test_unreachable_hub_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(MissingOffline, match="cannot be reached; fetch it with `attrgraph pull x`"):
        download("org/name", "config.json", pull="attrgraph pull x")
    with pytest.raises(ModelLoadError, match="cannot list org/name") as info:
        load_model("org/name")
    assert "\n" not in str(info.value)


def test_subfolder_and_tag_sets(hub: FakeHub, tmp_path: Path) -> None:
    from attrgraph.engine.transcoders import save_transcoders
    from tests.support.transcoders import tiny_plt_transcoders

    plt = tiny_plt_transcoders()
    save_transcoders(plt, tmp_path / "repo" / "per-layer")
    (tmp_path / "repo" / "features").mkdir()
    (tmp_path / "repo" / "features" / "index.json.gz").write_bytes(b"dashboards")
    commit = hub.add_repo("org/multi", tmp_path / "repo", tag="v2")
    for ref, revision in (
        ("org/multi/per-layer", "v2"),
        (f"hf://org/multi@{commit}/per-layer/config.yaml", None),
    ):
        loaded = load_transcoders(ref, revision=revision)
        assert (loaded.revision, loaded.n_layers, loaded.d_transcoder) == (
            commit,
            plt.n_layers,
            plt.d_transcoder,
        )
        torch.testing.assert_close(loaded.layer(1).W_enc, plt.layer(1).W_enc)
    assert not any("features" in d for d in hub.downloads())
    with pytest.raises(TranscoderLoadError, match="conflicts with revision='v3'"):
        load_transcoders("org/multi@v2/per-layer", revision="v3")


# -- the published transcoder layouts (tests/support/layouts.py) through the hub ----------------------

N_LAYERS, D_MODEL = 3, 16


def _gemma_scope2_tree(root: Path) -> tuple[str, Path, set[str]]:
    """Google's per-layer tree for one width and L0, with a per-folder config.json the loader skips."""
    write_gemma_scope2(root / "transcoder_all", n_layers=N_LAYERS, d_model=D_MODEL)
    folders = sorted(p.name for p in (root / "transcoder_all").iterdir())
    (root / "transcoder_all" / folders[0] / "config.json").write_text("{}")
    needed = {f"transcoder_all/{f}/params.safetensors" for f in folders}
    return "transcoder_all", root / "transcoder_all", needed


def _gemma_scope2_clt(root: Path) -> tuple[str, Path, set[str]]:
    """`clt/width_.../params_layer_{i}.safetensors`, beside a second width that must stay behind."""
    chosen = root / "clt" / "width_262k_l0_medium_affine"
    write_gemma_scope2(chosen, n_layers=N_LAYERS, d_model=D_MODEL, cross_layer=True)
    write_gemma_scope2(
        root / "clt" / "width_16k_l0_small", n_layers=N_LAYERS, d_model=D_MODEL, cross_layer=True
    )
    sub = "clt/width_262k_l0_medium_affine"
    return sub, chosen, {f"{sub}/params_layer_{i}.safetensors" for i in range(N_LAYERS)}


def _global_topk(root: Path) -> tuple[str, Path, set[str]]:
    """ByteDance-Seed's CLT at the repository root: factors.safetensors is not read, so not fetched."""
    write_global_topk(root, n_layers=N_LAYERS, d_model=D_MODEL, k=4)
    (root / "README.md").write_text("# global TopK CLT\n")
    needed = {f"W_{kind}_{i}.safetensors" for kind in ("enc", "dec") for i in range(N_LAYERS)}
    return "", root, needed | {"W_dec_norm.safetensors", "config.json"}


def _same_weights(expected: TranscoderSet, actual: TranscoderSet) -> None:
    assert (actual.n_layers, actual.cross_layer, actual.activation, actual.topk, actual.input_site) == (
        expected.n_layers,
        expected.cross_layer,
        expected.activation,
        expected.topk,
        expected.input_site,
    )
    for layer in range(expected.n_layers):
        a, b = expected.layer(layer), actual.layer(layer)
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip", "score_scale"):
            ta, tb = getattr(a, name), getattr(b, name)
            assert (ta is None) == (tb is None), f"layer {layer} {name}"
            if ta is not None:
                assert torch.equal(ta, tb), f"layer {layer} {name} differs"


@pytest.mark.parametrize("layout", [_gemma_scope2_tree, _gemma_scope2_clt, _global_topk])
def test_published_layouts_pull_exactly_their_files_and_load_offline(
    layout: Callable[[Path], tuple[str, Path, set[str]]],
    hub: FakeHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sub, local, needed = layout(tmp_path / "repo")
    hub.add_repo("org/published", tmp_path / "repo")
    source = f"org/published/{sub}".rstrip("/")
    plan = plan_transcoders(source)
    assert {f.path for f in plan.files} == needed and len(plan.files) == len(needed)
    fetch(plan)  # what `attrgraph pull --transcoders` does
    assert sorted(hub.downloads()) == sorted(f"org/published/{p}" for p in needed)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: any request would fail
    before = len(hub.requests)
    loaded = load_transcoders(source)
    assert len(hub.requests) == before
    assert loaded.revision == hub.repos["org/published"].commit
    _same_weights(load_transcoders(local), loaded)


def test_gemma_scope2_clt_listed_by_a_cross_layer_config(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """circuit-tracer's Gemma Scope 2 CLT configs: `model_kind: cross_layer_transcoder` with hf:// files
    (one listed twice, as its configs list one more than the model has layers)."""
    sub, local, needed = _gemma_scope2_clt(tmp_path / "weights")
    hub.add_repo("google/weights", tmp_path / "weights")
    listed = [
        f"hf://google/weights/{sub}/params_layer_{i}.safetensors" for i in [*range(N_LAYERS), N_LAYERS - 1]
    ]
    config = {
        "model_kind": "cross_layer_transcoder",
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "hook_mlp_out",
        "transcoders": listed,
    }
    (tmp_path / "config-repo").mkdir()
    (tmp_path / "config-repo" / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    hub.add_repo("ct/gs2-clt", tmp_path / "config-repo")
    plan = plan_transcoders("ct/gs2-clt")
    assert {f"{f.repo_id}/{f.path}" for f in plan.files} == {"ct/gs2-clt/config.yaml"} | {
        f"google/weights/{p}" for p in needed
    }
    assert len(plan.files) == 1 + N_LAYERS  # the repeated entry is one file
    fetch(plan)
    assert len(hub.downloads()) == len(set(hub.downloads())) == 1 + N_LAYERS
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _same_weights(load_transcoders(local), load_transcoders("ct/gs2-clt"))


def test_a_tree_of_several_variants_per_layer_is_refused_before_downloading(
    hub: FakeHub, tmp_path: Path
) -> None:
    root = tmp_path / "repo" / "transcoder_all"
    write_gemma_scope2(root, n_layers=N_LAYERS, d_model=D_MODEL)
    for layer_dir in list(root.iterdir()):  # a second L0 of every layer, as Google's tree holds
        twin = root / layer_dir.name.replace("l0_small", "l0_big")
        twin.mkdir()
        (twin / "params.safetensors").write_bytes((layer_dir / "params.safetensors").read_bytes())
    hub.add_repo("google/all", tmp_path / "repo")
    with pytest.raises(HubError, match=r"holds 2 weight files for layer 0 .*under `transcoders:`"):
        plan_transcoders("google/all/transcoder_all")
    assert hub.downloads() == []
