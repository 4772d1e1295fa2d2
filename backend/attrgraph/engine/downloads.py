"""Which hub files a model or a transcoder set needs, and getting exactly those (engine/hub.py does I/O).

A model needs its config, tokenizer files and one copy of its weights (safetensors when the repo has
them; never the .bin / .h5 / onnx / `original/` duplicates). A transcoder set needs its config.yaml
and the weight files it lists (`hf://` references into other repositories followed, with their
`?revision=`), else what the loader reads of each published layout (transcoders/published.py):
`layer_{i}` / `W_enc_{i}` + `W_dec_{i}` files, Gemma Scope 2's `params_layer_{i}.safetensors` or its
`layer_{i}_.../params.safetensors` tree, GemmaScope's `layer_{i}/.../*.npz` tree (one file per layer:
a tree holding several widths or L0s is refused rather than fetched whole), and a global-TopK set's
`W_dec_norm.safetensors` and `config.json`. Never the `features/` dashboards that circuit-tracer's
repositories also hold, nor files the loader does not read (a global-TopK set's factors.safetensors).

    plan = plan_model("google/gemma-2-2b")       # lists the repo (one API call), downloads nothing
    plan.total_bytes, plan.missing()               # what `attrgraph pull` reports before fetching
    fetch(plan)                                    # hf_hub_download per file, with progress bars
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .hub import (
    HubError,
    HubRef,
    MissingOffline,
    cache_dir,
    download,
    list_files,
    local_snapshot,
    parse_hub_ref,
)

__all__ = ["HubFile", "Plan", "fetch", "model_pull", "plan_model", "plan_transcoders", "transcoders_pull"]

_TOKENIZER_FILES = frozenset(
    {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}
    | {"vocab.json", "merges.txt", "tokenizer.model", "generation_config.json"}
)
# Names as transcoders/published.py and loading.py read them (not imported: the loader imports this).
_TRANSCODER_FILE = re.compile(
    r"^(layer_\d+\.(safetensors|npz)|W_(enc|dec)_\d+\.safetensors|params_layer_\d+\.safetensors"
    r"|W_dec_norm\.safetensors)$"
)
_JSON_CONFIG = "config.json"  # read in place of config.yaml when a set has none (global TopK)
_LAYER_TREES = (  # one file per layer under `layer_{i}[_...]/`: Gemma Scope 2, then GemmaScope (1)
    re.compile(r"^layer_(\d+)(_[^/]*)?/(.+/)?params\.safetensors$"),
    re.compile(r"^layer_(\d+)/(.+/)?[^/]+\.npz$"),
)


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    path: str
    revision: str | None  # as asked (a branch keeps its name, so the cache records the ref)
    size: int | None


@dataclass(frozen=True)
class Plan:
    """The files one model or transcoder set needs; `directory` is where it lives inside `repo_id`."""

    pull: str  # the command that fetches it ahead of time
    repo_id: str
    commit: str
    directory: str
    files: tuple[HubFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)

    def missing(self, cache: str | Path | None = None) -> list[HubFile]:
        """The files not yet in the local cache."""
        from huggingface_hub import try_to_load_from_cache

        return [
            f
            for f in self.files
            if not isinstance(
                try_to_load_from_cache(f.repo_id, f.path, cache_dir=cache_dir(cache), revision=f.revision),
                str,
            )
        ]


def model_pull(repo_id: str, revision: str | None) -> str:
    return f"attrgraph pull --model {repo_id}" + (f"@{revision}" if revision else "")


def transcoders_pull(source: str) -> str:
    return f"attrgraph pull --transcoders {source}"


def select_model_files(paths: list[str], repo_id: str) -> list[str]:
    """The files of a repository listing that loading its model reads."""
    top = [p for p in paths if "/" not in p]
    for pattern in (r"\.safetensors$", r"^pytorch_model.*\.bin$"):
        weights = [p for p in top if re.search(pattern, p)]
        if weights:
            break
    index = [p for p in top if p.endswith((".safetensors.index.json", ".bin.index.json"))]
    if "config.json" in top:
        if not weights:
            raise HubError(f"{repo_id} has a config.json but no safetensors or pytorch_model*.bin weights")
        return sorted({"config.json", *weights, *index, *(p for p in top if p in _TOKENIZER_FILES)})
    ggufs = [p for p in top if p.endswith(".gguf")]
    if len(ggufs) == 1:
        return ggufs
    if ggufs:
        raise HubError(
            f"{repo_id} holds {len(ggufs)} .gguf files; download the one you want and pass its path"
        )
    raise HubError(f"{repo_id} has neither a config.json nor a .gguf file: not a model repository")


def plan_model(repo_id: str, revision: str | None = None) -> Plan:
    commit, sizes = list_files(repo_id, revision)
    files = tuple(HubFile(repo_id, p, revision, sizes[p]) for p in select_model_files(sorted(sizes), repo_id))
    return Plan(model_pull(repo_id, revision), repo_id, commit, "", files)


def resolve_model(
    repo_id: str, revision: str | None, *, offline: bool, cache: str | Path | None = None
) -> tuple[Path, str]:
    """(snapshot directory, commit) of a model, downloading what is missing unless offline."""
    pull = model_pull(repo_id, revision)
    if not offline:
        fetched = fetch(plan_model(repo_id, revision), cache=cache)
        snapshot = next(iter(fetched.values())).parent  # model files sit at the repository's root
        return snapshot, snapshot.name
    snapshot, commit = local_snapshot(repo_id, revision, pull=pull, cache=cache)
    names = sorted(p.name for p in snapshot.iterdir())
    try:
        needed = select_model_files(names, repo_id)
    except HubError as e:
        raise MissingOffline(f"{repo_id}@{revision or 'main'} (cached partly: {e})", pull) from e
    for index in (n for n in needed if n.endswith(".index.json")):
        needed += _shards(snapshot / index)
    for name in needed:
        if not (snapshot / name).is_file():
            raise MissingOffline(f"{repo_id}@{revision or 'main'} file {name}", pull)
    return snapshot, commit


def _shards(index: Path) -> list[str]:
    weight_map = json.loads(index.read_text()).get("weight_map", {})
    return sorted(set(weight_map.values()))


def plan_transcoders(source: str | Path, revision: str | None = None) -> Plan:
    """The files of a transcoder set: a hub reference, or a local directory whose config lists hf:// files."""
    text = str(source)
    local = Path(source).expanduser()
    pull = transcoders_pull(text)
    if not text.startswith("hf://") and local.exists():
        directory = local.parent if local.name == "config.yaml" else local
        listed = _read_yaml(directory / "config.yaml").get("transcoders") or []
        files = _external(pull, [str(e) for e in listed if str(e).startswith("hf://")])
        return Plan(pull, "", "", str(directory), tuple(files))
    ref = _hub_ref(text, revision)
    commit, sizes = list_files(ref.repo_id, ref.revision)
    sub = ref.path.removesuffix("config.yaml").strip("/")
    prefix = f"{sub}/" if sub else ""
    mine = [p for p in sizes if p.startswith(prefix)]
    if not mine:
        raise HubError(f"{ref.repo_id}@{ref.revision or 'main'} has no folder {sub!r}")
    config_path = f"{prefix}config.yaml"
    config: dict[str, Any] = {}
    if config_path in sizes:
        config = _read_yaml(download(ref.repo_id, config_path, ref.revision, pull=pull, offline=False))
    listed = config.get("transcoders")
    files = [HubFile(ref.repo_id, config_path, ref.revision, sizes[config_path])] if config else []
    if isinstance(listed, list):  # per-layer and cross-layer alike, as the loader follows the list
        entries = [str(e) for e in listed]
        files += _external(pull, [e for e in entries if e.startswith("hf://")])
        for entry in (e for e in entries if not e.startswith("hf://")):
            path = prefix + entry.removeprefix("./")
            if path not in sizes:
                raise HubError(f"{ref.repo_id}: config.yaml lists {entry}, which the repository lacks")
            files.append(HubFile(ref.repo_id, path, ref.revision, sizes[path]))
    else:
        rests = sorted(path[len(prefix) :] for path in mine)
        chosen = [r for r in rests if _TRANSCODER_FILE.match(r)]
        if chosen and not config and _JSON_CONFIG in rests:
            chosen.append(_JSON_CONFIG)
        if not chosen:
            chosen = _layer_tree(rests, f"{ref.repo_id}/{sub}".rstrip("/"))
        files += [HubFile(ref.repo_id, prefix + r, ref.revision, sizes[prefix + r]) for r in chosen]
    if len(files) <= (1 if config else 0):
        raise HubError(f"{text}: no transcoder files (config.yaml, layer_{{i}}.*, W_enc_{{i}}.*) found")
    return Plan(pull, ref.repo_id, commit, sub, tuple(dict.fromkeys(files)))  # a file listed twice is one


def _layer_tree(rests: list[str], where: str) -> list[str]:
    """The one weight file under each `layer_{i}[_...]/` folder of a published tree, or [] if none.
    A tree holding several per layer (a release's every width and L0) is refused before gigabytes of
    variants the loader would reject are downloaded."""
    for tree in _LAYER_TREES:
        per_layer: dict[int, list[str]] = {}
        for rest in rests:
            if match := tree.match(rest):
                per_layer.setdefault(int(match.group(1)), []).append(rest)
        for layer, found in sorted(per_layer.items()):
            if len(found) > 1:
                raise HubError(
                    f"{where} holds {len(found)} weight files for layer {layer} ({', '.join(found[:3])}"
                    f"{', ...' if len(found) > 3 else ''}); the loader needs one per layer: list the"
                    " chosen files as hf:// URIs under `transcoders:` in a config.yaml"
                )
        if per_layer:
            return [found[0] for _, found in sorted(per_layer.items())]
    return []


def resolve_transcoders(
    ref: HubRef, *, offline: bool, cache: str | Path | None = None, source: str = ""
) -> tuple[Path, str]:
    """(directory, commit) of a hub transcoder set, downloading what is missing unless offline."""
    source = source or f"{ref.repo_id}/{ref.path}".rstrip("/")
    sub = ref.path.removesuffix("config.yaml").strip("/")
    if offline:
        snapshot, commit = local_snapshot(
            ref.repo_id, ref.revision, pull=transcoders_pull(source), cache=cache
        )
    else:
        plan = plan_transcoders(source, ref.revision)
        fetched = fetch(plan, cache=cache)
        # a hub set always has a file of its own (its config.yaml or its weights) to locate it by
        own = next(f for f in plan.files if f.repo_id == ref.repo_id)
        snapshot = fetched[own].parents[len(PurePosixPath(own.path).parts) - 1]
        commit = plan.commit
    directory = snapshot / sub
    if not directory.is_dir():
        raise MissingOffline(
            f"{ref.repo_id}@{ref.revision or 'main'} folder {sub!r}", transcoders_pull(source)
        )
    return directory, commit


def resolve_uri(uri: str, *, pull: str, offline: bool, cache: str | Path | None = None) -> Path:
    """The local file behind `hf://org/name/path[?revision=r]`, downloaded unless cached or offline."""
    ref = parse_hub_ref(uri)
    if ref is None or not ref.path:
        raise HubError(f"{uri}: not a hub file reference (hf://org/name/path/to/file)")
    return download(ref.repo_id, ref.path, ref.revision, pull=pull, offline=offline, cache=cache)


def fetch(plan: Plan, *, cache: str | Path | None = None) -> dict[HubFile, Path]:
    """Download every file of `plan` that is not cached yet (huggingface_hub shows a bar per file)."""
    return {
        f: download(f.repo_id, f.path, f.revision, pull=plan.pull, offline=False, cache=cache)
        for f in plan.files
    }


def _hub_ref(text: str, revision: str | None) -> HubRef:
    ref = parse_hub_ref(text)
    if ref is None:
        raise HubError(f"{text}: no such directory, and not a hub id (org/name)")
    if revision and ref.revision and revision != ref.revision:
        raise HubError(f"{text}: revision {ref.revision!r} conflicts with revision={revision!r}")
    return HubRef(ref.repo_id, ref.path, ref.revision or revision)


def _external(pull: str, uris: list[str]) -> list[HubFile]:
    """HubFiles for hf:// URIs, with sizes from one listing per (repository, revision)."""
    listings: dict[tuple[str, str | None], dict[str, int | None]] = {}
    files = []
    for uri in uris:
        ref = parse_hub_ref(uri)
        if ref is None or not ref.path:
            raise HubError(f"{uri}: not a hub file reference (hf://org/name/path/to/file)")
        key = (ref.repo_id, ref.revision)
        if key not in listings:
            listings[key] = list_files(*key)[1]
        if ref.path not in listings[key]:
            raise HubError(f"{uri}: no such file in {ref.repo_id}@{ref.revision or 'main'}")
        files.append(HubFile(ref.repo_id, ref.path, ref.revision, listings[key][ref.path]))
    return files


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise HubError(f"{path}: invalid YAML ({' '.join(str(e).split())})") from e
    return data if isinstance(data, dict) else {}
