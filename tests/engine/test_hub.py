"""engine/hub.py and engine/downloads.py against a local server that answers like the hub (HF_ENDPOINT)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from attrgraph.engine.downloads import plan_model, plan_transcoders
from attrgraph.engine.hub import HubError, HubRef, MissingOffline, cache_dir, download, parse_hub_ref
from attrgraph.engine.models import ModelLoadError, load_model
from attrgraph.engine.transcoders import TranscoderLoadError, load_transcoders
from tests.support.fake_hub import FakeHub, TinyHub, publish_tiny_hub

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
