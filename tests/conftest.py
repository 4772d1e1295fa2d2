"""Shared pytest setup: one CPU thread and fixed seeds (fast, deterministic), and tiny-model fixtures."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from tests import factories

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> Iterator[None]:
    random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`tiny_model_dir("gemma2")` -> a saved tiny model of that family (built once per session, default
    sizes and seed). Treat the directory as read-only; call `factories.make_tiny_model` for variants."""
    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = factories.make_tiny_model(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_gguf_path(tiny_model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An F32 .gguf (alone in its directory) holding the weights of `tiny_model_dir("llama")`."""
    return factories.make_tiny_gguf(tmp_path_factory.mktemp("tiny-gguf"), source=tiny_model_dir("llama"))
