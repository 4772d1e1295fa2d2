"""Loading the language model to trace: a local HF directory, a .gguf file, or a hub id.

    lm = load_model("path/to/model-dir")                 # config.json + safetensors + tokenizer files
    lm = load_model("path/to/model.Q8_0.gguf")           # or a directory holding exactly one .gguf
    lm = load_model("google/gemma-2-2b", dtype="bfloat16")  # hub id ("org/name@revision" pins one)

A hub id is downloaded on first use (config, tokenizer and safetensors weights only: see
engine/downloads.py) and read from the Hugging Face cache after that; offline (`offline=True` or
$HF_HUB_OFFLINE=1) it must be cached, else a `ModelLoadError` names what is missing and the
`attrgraph pull` command that fetches it. GGUF files go through transformers' own GGUF support
(`from_pretrained(dir, gguf_file=name)`), which dequantizes the weights into an ordinary dense model
of the requested dtype.

The model comes back in eval mode, with eager attention (so attention patterns are explicit
tensors the engine can freeze) and with `requires_grad` off on every parameter: attribution takes
gradients with respect to activations, never weights.

One module (about 400 lines) on purpose: resolving a source (directory, .gguf, hub id) and loading it
are one path whose errors must name the same source; the hub's file listing and downloads already
live apart (hub.py, downloads.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

__all__ = [
    "SUPPORTED_FAMILIES",
    "LoadedModel",
    "ModelLoadError",
    "load_model",
    "parse_dtype",
    "resolve_device",
]

logger = logging.getLogger(__name__)


class ModelLoadError(ValueError):
    """The model could not be loaded; the message says why and what to do about it."""


# config.model_type -> family. The family names are the ones the adapter keys on.
_MODEL_TYPE_TO_FAMILY: Final[dict[str, str]] = {
    "gpt2": "gpt2",
    "llama": "llama",
    "gemma2": "gemma2",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",  # multimodal Gemma 3 checkpoints: only the text model is kept
    "qwen2": "qwen2",
    "qwen3": "qwen3",
}
SUPPORTED_FAMILIES: Final[tuple[str, ...]] = ("gpt2", "llama", "gemma2", "gemma3", "qwen2", "qwen3")

_DTYPES: Final[dict[str, torch.dtype]] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "f32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "f16": torch.float16,
    "half": torch.float16,
}
_SUPPORTED_DTYPES: Final[tuple[torch.dtype, ...]] = (torch.float32, torch.bfloat16, torch.float16)

_WEIGHT_SUFFIXES: Final[tuple[str, ...]] = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_REPO_ID_RE: Final[re.Pattern[str]] = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


@dataclass
class LoadedModel:
    """A language model ready to trace.

    `family` is one of `SUPPORTED_FAMILIES` (Gemma 3's `gemma3_text` is reported as "gemma3").
    `model_id` is the hub id for hub sources, else the absolute path loaded from. `revision` is the
    hub commit hash for hub sources, else "local-" + a short hash of config.json and the weight files'
    names, sizes and modification times. `path` is the local directory or .gguf file actually read.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str
    revision: str
    device: torch.device
    dtype: torch.dtype
    family: str
    path: Path | None = None


def parse_dtype(value: torch.dtype | str) -> torch.dtype:
    """`torch.float32` / "float32" / "fp32" / "bfloat16" / "bf16" / "float16" / "fp16" -> torch.dtype."""
    if isinstance(value, torch.dtype):
        dtype = value
    elif isinstance(value, str):
        key = value.strip().lower().removeprefix("torch.")
        if key not in _DTYPES:
            raise ModelLoadError(
                f"unknown dtype {value!r}: use one of float32, bfloat16, float16 (or fp32, bf16, fp16)"
            )
        dtype = _DTYPES[key]
    else:
        raise ModelLoadError(f"dtype must be a torch.dtype or a string, got {type(value).__name__}")
    if dtype not in _SUPPORTED_DTYPES:
        raise ModelLoadError(f"unsupported dtype {dtype}: use torch.float32, torch.bfloat16 or torch.float16")
    return dtype


def resolve_device(value: str | torch.device = "cpu") -> torch.device:
    """Turn "cpu", "cuda", "cuda:1", "mps" or "auto" (cuda, then mps, then cpu) into a usable torch.device.

    Raises `ModelLoadError` when the device is not available here, instead of failing later on the
    first tensor moved there.
    """
    text = str(value).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as err:
        raise ModelLoadError(
            f"unknown device {value!r}: use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {value!r} requested but CUDA is not available here "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); use device='cpu'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ModelLoadError(f"device {value!r} requested but only {count} CUDA device(s) are visible")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ModelLoadError(
                f"device {value!r} requested but MPS is not available here; use device='cpu'"
            )
    elif device.type != "cpu":
        raise ModelLoadError(f"unsupported device {value!r}: use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'")
    return device


# --------------------------------------------------------------------------------------- source resolution


@dataclass(frozen=True)
class _Source:
    directory: Path  # what from_pretrained reads
    gguf_file: str | None  # file name inside `directory`, for GGUF sources
    model_id: str
    revision: str

    @property
    def path(self) -> Path:
        return self.directory / self.gguf_file if self.gguf_file else self.directory


def _local_revision(files: list[Path]) -> str:
    """Short stable hash of config.json's bytes and the weight files' names, sizes and mtimes (no reading)."""
    digest = hashlib.sha256()
    for file in sorted(files):
        stat = file.stat()
        digest.update(file.name.encode())
        if file.name == "config.json":
            digest.update(file.read_bytes())
        else:
            digest.update(f":{stat.st_size}:{stat.st_mtime_ns}".encode())
        digest.update(b"\0")
    return "local-" + digest.hexdigest()[:12]


def _resolve_directory(directory: Path, *, model_id: str, revision: str | None) -> _Source:
    """A directory holding an HF model (config.json) or exactly one .gguf file."""
    if (directory / "config.json").is_file():
        weights = [p for p in directory.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)]
        if not weights:
            raise ModelLoadError(
                f"{directory} has a config.json but no weight files (*.safetensors or *.bin); "
                "is the download or checkpoint incomplete?"
            )
        rev = revision or _local_revision([directory / "config.json", *weights])
        return _Source(directory, None, model_id, rev)
    ggufs = sorted(p for p in directory.glob("*.gguf") if p.is_file())
    if len(ggufs) == 1:
        return _Source(directory, ggufs[0].name, model_id, revision or _local_revision(ggufs))
    if len(ggufs) > 1:
        names = ", ".join(p.name for p in ggufs)
        raise ModelLoadError(
            f"{directory} holds {len(ggufs)} .gguf files ({names}); pass the path of the one to load"
        )
    raise ModelLoadError(
        f"{directory} is not a model directory: it has neither a config.json (Hugging Face format) "
        "nor a .gguf file"
    )


def _looks_like_repo_id(text: str) -> bool:
    return bool(_REPO_ID_RE.match(text)) and not text.endswith(".gguf") and ".." not in text


def _resolve_hub_id(
    repo_id: str, *, revision: str | None, cache_dir: str | Path | None, offline: bool | None
) -> _Source:
    from .downloads import resolve_model
    from .hub import HubError, is_offline

    try:
        snapshot, commit = resolve_model(repo_id, revision, offline=is_offline(offline), cache=cache_dir)
    except HubError as err:
        raise ModelLoadError(str(err)) from err
    return _resolve_directory(snapshot, model_id=repo_id, revision=commit)


def _resolve_source(
    source: str | Path, *, revision: str | None, cache_dir: str | Path | None, offline: bool | None
) -> _Source:
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(
                f"{path} is a file but not a .gguf file; pass a model directory "
                "(config.json + weights + tokenizer), a .gguf file or a hub id"
            )
        path = path.resolve()
        if revision is not None:
            logger.warning("revision=%r ignored for local file %s", revision, path)
        return _Source(path.parent, path.name, str(path), _local_revision([path]))
    if path.is_dir():
        path = path.resolve()
        if revision is not None:
            logger.warning("revision=%r ignored for local directory %s", revision, path)
        return _resolve_directory(path, model_id=str(path), revision=None)
    text = str(source)
    repo_id, _, pinned = text.partition("@")
    if isinstance(source, str) and _looks_like_repo_id(repo_id) and "/" in repo_id:
        if pinned and revision and pinned != revision:
            raise ModelLoadError(f"{text}: revision {pinned!r} conflicts with revision={revision!r}")
        return _resolve_hub_id(repo_id, revision=pinned or revision, cache_dir=cache_dir, offline=offline)
    raise ModelLoadError(
        f"model source {text!r} does not exist: pass an existing model directory, a .gguf file, "
        "or a Hugging Face hub id ('org/name', optionally '@revision')"
    )


# --------------------------------------------------------------------------------------------- loading


def _missing_gguf_packages() -> list[str]:
    """Packages transformers needs to read GGUF files (it refuses without accelerate)."""
    return [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]


def _dequantizing_gguf_config(gguf_file: str) -> Any:
    """transformers >= 5.x can keep GGUF blocks packed; ask it not to. Older versions always unpack."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return None
    return GgufConfig(gguf_file=gguf_file, dequantize=True)


def _load_config(src: _Source) -> PretrainedConfig:
    kwargs: dict[str, Any] = {"local_files_only": True}
    if src.gguf_file:
        kwargs["gguf_file"] = src.gguf_file
    try:
        config = AutoConfig.from_pretrained(str(src.directory), **kwargs)
    except Exception as err:  # unknown model_type, unsupported GGUF architecture, malformed json, ...
        raise ModelLoadError(f"cannot read the model config from {src.path}: {err}") from err
    return cast(PretrainedConfig, config)


def _family(config: PretrainedConfig, src: _Source) -> str:
    model_type = str(getattr(config, "model_type", "") or "")
    family = _MODEL_TYPE_TO_FAMILY.get(model_type)
    if family is None:
        raise ModelLoadError(
            f"unsupported model family {model_type!r} ({src.path}): supported families are "
            f"{', '.join(SUPPORTED_FAMILIES)} (config.model_type gpt2, llama, gemma2, gemma3_text/gemma3, "
            "qwen2, qwen3)"
        )
    return family


def _text_only_gemma3(model: PreTrainedModel) -> PreTrainedModel:
    """A multimodal Gemma 3 (Gemma3ForConditionalGeneration) -> Gemma3ForCausalLM sharing its text weights."""
    from transformers import Gemma3ForCausalLM

    full = cast(Any, model)
    text_config = full.config.get_text_config()
    text_config._attn_implementation = "eager"
    text_config.tie_word_embeddings = bool(
        full.lm_head.weight is full.model.language_model.embed_tokens.weight
    )
    with torch.device("meta"):
        text = Gemma3ForCausalLM(text_config)
    text.model = full.model.language_model
    text.lm_head = full.lm_head
    text.config.name_or_path = full.config.name_or_path
    return cast(PreTrainedModel, text)


def load_model(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer from a local directory, a .gguf file or a hub id.

    `revision` selects a branch, tag or commit of a hub id (default "main"); it is ignored for local
    sources. `cache_dir` overrides the Hugging Face cache location for hub ids; `offline` (default:
    $HF_HUB_OFFLINE) forbids downloads. Raises `ModelLoadError` (a ValueError) with a readable message
    for a missing source, an unsupported family, a hub id that cannot be had (offline and not cached,
    gated, not found), an unavailable device or an unknown dtype.
    """
    torch_device = resolve_device(device)
    torch_dtype = parse_dtype(dtype)
    src = _resolve_source(source, revision=revision, cache_dir=cache_dir, offline=offline)
    if src.gguf_file and (missing := _missing_gguf_packages()):
        raise ModelLoadError(
            f"loading {src.path} needs the {' and '.join(missing)} package(s), which transformers uses "
            f"to read GGUF files: pip install {' '.join(missing)}"
        )
    started = time.perf_counter()
    config = _load_config(src)
    family = _family(config, src)

    common: dict[str, Any] = {"local_files_only": True}
    model_kwargs: dict[str, Any] = {}
    if src.gguf_file:
        common["gguf_file"] = src.gguf_file
        # Always unpack to plain nn.Linear / nn.Embedding weights: the engine hooks and differentiates
        # through ordinary modules, and packed GGUF kernels (with `kernels` installed) are not that.
        if (gguf_config := _dequantizing_gguf_config(src.gguf_file)) is not None:
            model_kwargs["quantization_config"] = gguf_config
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(src.directory), **common)
    except Exception as err:
        raise ModelLoadError(f"cannot load the tokenizer from {src.path}: {err}") from err
    try:
        raw = AutoModelForCausalLM.from_pretrained(
            str(src.directory),
            config=config,  # already parsed: for a GGUF that saves a second pass over its metadata
            dtype=torch_dtype,
            attn_implementation="eager",
            **common,
            **model_kwargs,
        )
    except Exception as err:
        raise ModelLoadError(f"cannot load the model weights from {src.path}: {err}") from err
    model = cast(PreTrainedModel, raw)
    if getattr(model.config, "model_type", None) == "gemma3":
        model = _text_only_gemma3(model)

    module = cast(torch.nn.Module, model)
    module.train(False)
    module.requires_grad_(False)
    module.to(torch_device)

    tok = cast(PreTrainedTokenizerBase, tokenizer)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    vocab = int(getattr(model.config.get_text_config(), "vocab_size", 0) or 0)
    if vocab and len(tok) > vocab:
        logger.warning(
            "tokenizer of %s has %d tokens but the model's vocabulary has %d: ids past %d will fail",
            src.model_id,
            len(tok),
            vocab,
            vocab - 1,
        )
    logger.info(
        "loaded %s (%s, revision %s) as %s on %s in %.1fs",
        src.model_id,
        family,
        src.revision,
        torch_dtype,
        torch_device,
        time.perf_counter() - started,
    )
    return LoadedModel(
        model=model,
        tokenizer=tok,
        model_id=src.model_id,
        revision=src.revision,
        device=torch_device,
        dtype=torch_dtype,
        family=family,
        path=src.path,
    )
