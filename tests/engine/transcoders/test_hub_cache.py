"""Hub references resolved from a fake local Hugging Face cache, with the network refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from attrgraph.engine.transcoders.hub_cache import (
    HubRef,
    hub_cache_dir,
    parse_hub_ref,
    resolve_file,
    resolve_snapshot,
)
from tests.support.environment import require_module

from attrgraph.engine.transcoders import (
    Activation,
    TranscoderLoadError,
    TranscoderSet,
    load_transcoders,
    save_gemmascope_npz,
    save_transcoders,
)

MakeSet = Callable[..., TranscoderSet]
AssertSame = Callable[[TranscoderSet, TranscoderSet], None]
FakeHub = Callable[..., str]

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


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
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub_cache_dir() == tmp_path / "cache"
    assert hub_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_hub_id_loads_from_cache(
    make_set: MakeSet, assert_same: AssertSame, fake_hub: FakeHub, hf_home: Path, tmp_path: Path
) -> None:
    original = make_set(activation=Activation.JUMPRELU, name="")
    save_transcoders(original, tmp_path / "src")
    fake_hub(hf_home / "hub", "org/toy-transcoders", tmp_path / "src")
    for ref in ("org/toy-transcoders", "hf://org/toy-transcoders", f"hf://org/toy-transcoders@{COMMIT}"):
        loaded = load_transcoders(ref)
        assert_same(original, loaded)
        assert loaded.revision == COMMIT
        assert loaded.name == "org/toy-transcoders"  # empty config name: the repo id
    assert load_transcoders("org/toy-transcoders", revision="main", lazy=True).revision == COMMIT


def test_subfolder_revision_and_cache_dir(
    make_set: MakeSet, assert_same: AssertSame, fake_hub: FakeHub, hf_home: Path, tmp_path: Path
) -> None:
    plt, clt = make_set(), make_set(cross_layer=True, seed=1)
    save_transcoders(plt, tmp_path / "plt")
    save_transcoders(clt, tmp_path / "clt")
    cache = tmp_path / "elsewhere"  # not under HF_HOME: only reachable through cache_dir
    fake_hub(cache, "org/multi", tmp_path / "plt", prefix="per-layer")
    fake_hub(cache, "org/multi", tmp_path / "clt", prefix="clt", commit=OTHER, ref="v2")
    assert_same(plt, load_transcoders("org/multi/per-layer", cache_dir=cache))
    loaded = load_transcoders("org/multi/clt", revision="v2", cache_dir=cache)
    assert_same(clt, loaded)
    assert loaded.revision == OTHER
    assert_same(clt, load_transcoders(f"hf://org/multi@{OTHER}/clt", cache_dir=cache))
    with pytest.raises(TranscoderLoadError, match="not in the local Hugging Face cache"):
        load_transcoders("org/multi/per-layer")


def test_config_with_hf_uris(
    make_set: MakeSet, assert_same: AssertSame, fake_hub: FakeHub, hf_home: Path, tmp_path: Path
) -> None:
    """circuit-tracer's GemmaScope setup: a config repo listing .npz files of another repo."""
    original = make_set(activation=Activation.JUMPRELU)
    save_gemmascope_npz(original, tmp_path / "gemmascope", nested=True)
    fake_hub(hf_home / "hub", "google/scope", tmp_path / "gemmascope", commit=OTHER)
    files = [
        f"hf://google/scope/layer_{i}/width_10/average_l0_0/params.npz" for i in range(original.n_layers)
    ]
    files[1] = files[1] + f"?revision={OTHER}"
    config = {
        "model_kind": "transcoder_set",
        "model_name": "google/gemma-2-2b",
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out",
        "transcoders": files,
    }
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.yaml").write_text(yaml.safe_dump(config))
    fake_hub(hf_home / "hub", "someone/scope-config", tmp_path / "cfg")
    loaded = load_transcoders("someone/scope-config")
    assert_same(original, loaded)
    assert loaded.revision == COMMIT and loaded.name == "google/gemma-2-2b"
    # the same config used from a local directory resolves the URIs from the cache too
    assert_same(original, load_transcoders(tmp_path / "cfg"))


def test_cache_misses(make_set: MakeSet, fake_hub: FakeHub, hf_home: Path, tmp_path: Path) -> None:
    save_transcoders(make_set(), tmp_path / "src")
    fake_hub(hf_home / "hub", "org/toy", tmp_path / "src")
    cases = {
        "org/absent": "org/absent is not in the local Hugging Face cache",
        "org/toy@v9": "revision 'v9' is not in the local Hugging Face cache",
        f"org/toy@{OTHER}": f"snapshot {OTHER} is not in the local Hugging Face cache",
        "org/toy/missing-folder": "folder 'missing-folder' is not in the cached snapshot",
    }
    for ref, message in cases.items():
        with pytest.raises(TranscoderLoadError, match=message) as info:
            load_transcoders(ref)
        assert "\n" not in str(info.value)
    with pytest.raises(TranscoderLoadError, match="conflicts with revision='v2'"):
        load_transcoders("org/toy@main", revision="v2")
    config = tmp_path / "src" / "config.yaml"
    config.write_text(
        config.read_text()
        + "transcoders: ['hf://org/toy/layer_0.safetensors', 'hf://org/toy/nope.safetensors']\n"
    )
    with pytest.raises(TranscoderLoadError, match=r"file nope\.safetensors is not in the cached snapshot"):
        load_transcoders(tmp_path / "src")


def test_resolution_agrees_with_huggingface_hub(
    make_set: MakeSet, fake_hub: FakeHub, hf_home: Path, tmp_path: Path
) -> None:
    """The fake cache is the standard layout: huggingface_hub's offline lookups find the same files."""
    hub = require_module("huggingface_hub")
    save_transcoders(make_set(), tmp_path / "src")
    cache = tmp_path / "cache"
    fake_hub(cache, "org/toy", tmp_path / "src", prefix="sub")
    theirs = hub.snapshot_download("org/toy", cache_dir=cache, local_files_only=True)
    assert resolve_snapshot("org/toy", None, cache) == (Path(theirs), COMMIT)
    theirs = hub.hf_hub_download("org/toy", "sub/layer_1.safetensors", cache_dir=cache, local_files_only=True)
    assert resolve_file("hf://org/toy/sub/layer_1.safetensors", cache) == Path(theirs)
    assert load_transcoders("org/toy/sub/config.yaml", cache_dir=cache).revision == COMMIT
