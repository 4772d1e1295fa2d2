"""Fixtures for transcoder loading/saving tests: small random sets and a fake local hub cache."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tests.support.transcoders import random_transcoders

from attrgraph.engine.transcoders import Activation, InputSite, TranscoderSet

MakeSet = Callable[..., TranscoderSet]
FakeHub = Callable[..., str]


def assert_same_set(expected: TranscoderSet, actual: TranscoderSet) -> None:
    assert actual.n_layers == expected.n_layers
    assert actual.cross_layer == expected.cross_layer
    assert actual.activation is expected.activation
    assert actual.topk == expected.topk
    assert actual.input_site is expected.input_site
    assert (actual.d_transcoder, actual.d_model) == (expected.d_transcoder, expected.d_model)
    for layer in range(expected.n_layers):
        a, b = expected.layer(layer), actual.layer(layer)
        for field in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip"):
            ta, tb = getattr(a, field), getattr(b, field)
            assert (ta is None) == (tb is None), f"layer {layer} {field}"
            if ta is not None:
                assert torch.equal(ta, tb), f"layer {layer} {field} differs"


@pytest.fixture
def make_set() -> MakeSet:
    """Small random sets: per-layer ReLU read at the MLP input unless the test says otherwise."""
    return functools.partial(
        random_transcoders,
        n_layers=3,
        d_model=6,
        d_transcoder=10,
        activation=Activation.RELU,
        input_site=InputSite.MLP_IN,
        name="toy",
    )


@pytest.fixture
def assert_same() -> Callable[[TranscoderSet, TranscoderSet], None]:
    return assert_same_set


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to open a network connection, and set the hub's offline switch."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> Path:
    """An empty HF_HOME (its hub cache is HF_HOME/hub), with the other cache variables unset."""
    home = tmp_path / "hf_home"
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def fake_hub() -> FakeHub:
    return add_to_fake_hub


def add_to_fake_hub(
    cache: Path,
    repo_id: str,
    source: Path,
    *,
    prefix: str = "",
    commit: str = "0123456789abcdef0123456789abcdef01234567",
    ref: str = "main",
) -> str:
    """Put every file under `source` into `cache` as huggingface_hub would lay out a download.

    Files become content-addressed blobs, and the snapshot holds relative symlinks to them;
    `refs/{ref}` names the commit. Returns the commit.
    """
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = snapshot / prefix / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return commit
