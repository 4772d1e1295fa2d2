"""Resolve Hugging Face hub references from the local hub cache only.

The service must never reach the network at trace time, so hub ids are looked up in the standard
cache layout that `huggingface_hub` writes (`{cache}/models--org--name/refs/{revision}` holds a
commit hash; `snapshots/{commit}/...` holds the files) without calling any hub API. The cache
directory is read from the environment at call time (not at import, as `huggingface_hub` does), so
`HF_HOME` / `HF_HUB_CACHE` set after import are respected.

Accepted references: `org/name`, `org/name/sub/folder`, `org/name@rev/sub`, `org/name/sub@rev`,
any of those behind `hf://`, and circuit-tracer's `hf://org/name/file?revision=rev`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs


class HubCacheMiss(LookupError):
    """A repository, revision or file that is not in the local hub cache."""


_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class HubRef:
    repo_id: str  # "org/name"
    path: str  # inside the repository; "" for its root
    revision: str | None  # branch, tag or commit; None means the caller's default


def parse_hub_ref(ref: str) -> HubRef | None:
    """Parse a hub reference, or None if `ref` does not look like one."""
    text = ref.removeprefix("hf://")
    revision: str | None = None
    if "?" in text:
        text, query = text.split("?", 1)
        values = parse_qs(query).get("revision")
        revision = values[0] if values else None
    parts = text.strip("/").split("/")
    if len(parts) < 2:
        return None
    org, name, rest = parts[0], parts[1], parts[2:]
    if "@" in name:
        name, revision = name.split("@", 1)
    elif rest and "@" in rest[-1]:
        rest[-1], revision = rest[-1].split("@", 1)
    if not (_NAME.match(org) and _NAME.match(name)) or any(p in ("", ".", "..") for p in rest):
        return None
    return HubRef(f"{org}/{name}", "/".join(rest), revision or None)


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The hub cache: `cache_dir`, else $HF_HUB_CACHE, else $HF_HOME/hub, else the XDG default."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    home = os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(home).expanduser() / "hub"


def resolve_snapshot(
    repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None
) -> tuple[Path, str]:
    """(snapshot directory, commit hash) of `repo_id` at `revision` (default "main")."""
    cache = hub_cache_dir(cache_dir)
    revision = revision or "main"
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    if not repo_dir.is_dir():
        raise HubCacheMiss(f"{repo_id} is not in the local Hugging Face cache {cache} (never downloaded)")
    if ".." in revision.split("/"):
        raise HubCacheMiss(f"{repo_id}: invalid revision {revision!r}")
    ref_file = repo_dir / "refs" / revision
    if ref_file.is_file():
        commit = ref_file.read_text().strip()
    elif _COMMIT.match(revision):
        commit = revision
    else:
        raise HubCacheMiss(f"{repo_id}: revision {revision!r} is not in the local Hugging Face cache {cache}")
    snapshot = repo_dir / "snapshots" / commit
    if not snapshot.is_dir():
        raise HubCacheMiss(f"{repo_id}: snapshot {commit} is not in the local Hugging Face cache {cache}")
    return snapshot, commit


def resolve_file(uri: str, cache_dir: str | Path | None = None) -> Path:
    """The cached file behind an `hf://org/name/path/to/file` URI."""
    ref = parse_hub_ref(uri)
    if ref is None or not ref.path:
        raise HubCacheMiss(f"{uri}: not a hub file reference (hf://org/name/path/to/file)")
    snapshot, commit = resolve_snapshot(ref.repo_id, ref.revision, cache_dir)
    path = snapshot / ref.path
    if not path.is_file():
        raise HubCacheMiss(f"{uri}: file {ref.path} is not in the cached snapshot {commit}")
    return path
