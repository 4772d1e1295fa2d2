"""`attrgraph pull`, `attrgraph models`, `trace --offline` and `serve --model PRESET`, against a fake hub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from attrgraph.cli import build_parser, main
from attrgraph.presets import PRESETS
from attrgraph.service_cli import settings_from_args
from tests.support.fake_hub import FakeHub, TinyHub, publish_tiny_hub


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    # set (not deleted) so that monkeypatch restores it after `trace --offline` sets it in-process
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def tiny(hub: FakeHub, tmp_path: Path) -> TinyHub:
    return publish_tiny_hub(hub, tmp_path / "src")


def _pull_args(tiny: TinyHub) -> list[str]:
    return ["pull", "--model", tiny.model, "--transcoders", tiny.transcoders, "--quiet"]


def test_pull_then_trace_offline(
    hub: FakeHub, tiny: TinyHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_pull_args(tiny)) == 0
    out = capsys.readouterr().out
    sizes = hub.repos[tiny.model].files
    model_bytes = sum(len(d) for n, d in sizes.items() if f"{tiny.model}/{n}" in tiny.needed)
    lines = out.splitlines()
    n_model = sum(1 for n in tiny.needed if n.startswith(f"{tiny.model}/"))
    assert lines[0].startswith(f"{tiny.model}@{hub.repos[tiny.model].commit[:12]}: {n_model} files")
    assert f"files, {model_bytes / 1e3:.1f} kB ({n_model} to download)" in lines[0]
    assert lines[1].startswith(f"{tiny.transcoders}@") and "3 files" in lines[1]
    assert lines[2].startswith("total ")
    assert set(hub.downloads()) == tiny.needed and len(hub.downloads()) == len(tiny.needed)

    # a second pull finds everything cached and fetches nothing
    before = len(hub.downloads())
    assert main(_pull_args(tiny)) == 0
    assert "0 B to download" in capsys.readouterr().out
    assert len(hub.downloads()) == before

    # the network gone: trace works from the cache alone
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    requests = len(hub.requests)
    args = ["trace", "The capital of Texas is", "--model", tiny.model, "--transcoders", tiny.transcoders]
    assert main([*args, "--offline", "--quiet", "--max-feature-nodes", "16"]) == 0
    assert "top predictions:" in capsys.readouterr().out
    assert len(hub.requests) == requests


def test_trace_offline_missing_is_one_line_and_exit_2(
    hub: FakeHub, tiny: TinyHub, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "trace",
        "Hello",
        "--model",
        tiny.model,
        "--transcoders",
        tiny.transcoders,
        "--offline",
        "--quiet",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("attrgraph: error: org/tiny-gpt2 is not in the local Hugging Face cache")
    assert err[0].endswith(f"fetch it with `attrgraph pull --model {tiny.model}` while online")
    assert hub.requests == []


def test_pull_dry_run_lists_and_fetches_nothing(
    hub: FakeHub, tiny: TinyHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_pull_args(tiny), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for name in tiny.needed - {f"{tiny.transcoders}/config.yaml"}:  # read to plan, so no longer missing
        assert f"  {name}  " in out
    assert "onnx" not in out and "features/" not in out and "width_32" not in out
    assert hub.downloads() == ["ct/tiny-transcoders/config.yaml"]  # only the config, to read its list


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pull"], "nothing to pull"),
        (["pull", "no-such-preset"], "unknown preset 'no-such-preset'"),
        (["pull", "gemma-2-2b", "--model", "a/b"], "not both"),
        (["pull", "--model", "org/absent"], "org/absent not found on"),
    ],
)
def test_pull_errors_exit_2_with_one_line(
    hub: FakeHub, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("attrgraph: error: ") and message in err[0]


def test_models_lists_presets_and_the_cache(
    hub: FakeHub, tiny: TinyHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull", "--model", tiny.model, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert f"\n{name} " in out
    assert tiny.model in out.split("model repositories")[1]


def test_serve_and_trace_accept_a_preset_name() -> None:
    preset = PRESETS["gemma-2-2b"]
    settings = settings_from_args(build_parser().parse_args(["serve", "--model", "gemma-2-2b"]))
    assert settings.worker_models is not None
    (spec,) = settings.worker_models
    assert (spec.name, spec.path) == ("gemma-2-2b", "google/gemma-2-2b@" + preset.model_revision)
    assert spec.transcoders == {"plt": preset.transcoders_ref}

    from attrgraph.hub_cli import apply_hub_flags

    args = build_parser().parse_args(["trace", "x", "--model", "llama-3.2-1b"])
    apply_hub_flags(args)
    assert (args.model, args.transcoders) == (
        PRESETS["llama-3.2-1b"].model_ref,
        PRESETS["llama-3.2-1b"].transcoders_ref,
    )
