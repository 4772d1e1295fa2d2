"""Hugging Face hub access through `huggingface_hub`: download on first use, the cache when offline.

    ref = parse_hub_ref("hf://google/gemma-scope-2b-pt-transcoders/layer_0/params.npz@main")
    commit, sizes = list_files("google/gemma-2-2b", "main")           # one API call, no download
    path = download("google/gemma-2-2b", "config.json", commit)        # cached after the first call

Offline (`offline=True`, else $HF_HUB_OFFLINE or $TRANSFORMERS_OFFLINE) nothing touches the network
and a file that is not cached raises `MissingOffline`, whose one-line message names the file and the
`attrgraph pull ...` command that fetches it. $HF_ENDPOINT, $HF_HOME and $HF_HUB_CACHE are read at
each call, not when huggingface_hub is imported, so a process (or a test) may set them late. Gated
repositories use the token huggingface_hub finds ($HF_TOKEN or `hf auth login`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

__all__ = [
    "HubError",
    "HubRef",
    "MissingOffline",
    "cache_dir",
    "download",
    "endpoint",
    "is_offline",
    "list_files",
    "local_snapshot",
    "parse_hub_ref",
]

_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_TRUE = {"1", "true", "yes", "on"}


class HubError(ValueError):
    """A hub repository, revision or file that cannot be had; the message is one line."""


class MissingOffline(HubError):
    """Something needed is not in the local cache, and the hub may not be asked for it."""

    def __init__(self, what: str, pull: str, why: str = "downloads are off (offline mode)") -> None:
        super().__init__(
            f"{what} is not in the local Hugging Face cache ({cache_dir()}) and {why}; "
            f"fetch it with `{pull}` while online"
        )
        self.what = what
        self.pull = pull


@dataclass(frozen=True)
class HubRef:
    repo_id: str  # "org/name"
    path: str  # inside the repository; "" for its root
    revision: str | None  # branch, tag or commit; None means the caller's default


def parse_hub_ref(ref: str) -> HubRef | None:
    """`org/name[/path][@rev]`, `org/name@rev/path`, with or without `hf://`, or circuit-tracer's
    `hf://org/name/path?revision=rev`; None if `ref` does not look like a hub reference."""
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


def is_offline(offline: bool | None = None) -> bool:
    """`offline` if given, else whether $HF_HUB_OFFLINE (or $TRANSFORMERS_OFFLINE) is set."""
    if offline is not None:
        return offline
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def cache_dir(override: str | Path | None = None) -> Path:
    """The hub cache: `override`, else $HF_HUB_CACHE, else $HF_HOME/hub, else the XDG default."""
    if override is not None:
        return Path(override).expanduser()
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")).expanduser() / "hub"


def list_files(repo_id: str, revision: str | None = None) -> tuple[str, dict[str, int | None]]:
    """(commit hash, path -> size in bytes) of a repository at `revision`, asking the hub."""
    from huggingface_hub import HfApi

    try:
        with _explained(repo_id, revision):
            info = HfApi(endpoint=endpoint()).model_info(repo_id, revision=revision, files_metadata=True)
    except _Unreachable as e:
        raise HubError(f"cannot list {_describe(repo_id, revision)}: {e}") from e
    if not info.sha:
        raise HubError(f"{endpoint()} gave no commit for {repo_id}@{revision or 'main'}")
    return info.sha, {s.rfilename: s.size for s in info.siblings or []}


def download(
    repo_id: str,
    filename: str,
    revision: str | None = None,
    *,
    pull: str,
    offline: bool | None = None,
    cache: str | Path | None = None,
) -> Path:
    """The local path of `filename` in `repo_id` at `revision`, downloaded first unless cached.

    `pull` is the command a user runs to fetch it ahead of time, named when offline and missing.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    local_only = is_offline(offline)
    try:
        with _explained(repo_id, revision, filename):
            path = hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir(cache),
                local_files_only=local_only,
                endpoint=endpoint(),
            )
    except (_Unreachable, LocalEntryNotFoundError) as e:
        why = "downloads are off (offline mode)" if local_only else f"{endpoint()} cannot be reached"
        raise MissingOffline(_describe(repo_id, revision, filename), pull, why) from e
    return Path(path)


def local_snapshot(
    repo_id: str, revision: str | None, *, pull: str, cache: str | Path | None = None
) -> tuple[Path, str]:
    """(snapshot directory, commit) of a cached repository, without asking the hub."""
    from huggingface_hub import snapshot_download

    try:
        # allow_patterns=[]: only resolve the revision; which files must be there is the caller's call
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache_dir(cache),
                local_files_only=True,
                allow_patterns=[],
            )
        )
    except Exception as e:  # LocalEntryNotFoundError and its kin: not cached at that revision
        raise MissingOffline(_describe(repo_id, revision), pull) from e
    return folder, folder.name


def _describe(repo_id: str, revision: str | None, filename: str = "") -> str:
    at = f"@{revision}" if revision else ""
    return f"{repo_id}{at}" + (f" file {filename}" if filename else "")


class _Unreachable(Exception):
    """The hub could not be reached (connection refused, timeout, DNS)."""


@contextmanager
def _explained(repo_id: str, revision: str | None, filename: str = "") -> Iterator[None]:
    """Turn huggingface_hub's errors into one-line `HubError`s that say what to do."""
    from huggingface_hub import errors

    what = _describe(repo_id, revision, filename)
    try:
        yield
    except errors.GatedRepoError as e:
        raise HubError(
            f"{repo_id} is gated: accept its terms at {endpoint()}/{repo_id} and log in "
            "(`hf auth login`, or set HF_TOKEN)"
        ) from e
    except errors.RepositoryNotFoundError as e:
        raise HubError(
            f"{repo_id} not found on {endpoint()} (or it is private: log in with `hf auth login` "
            "or set HF_TOKEN)"
        ) from e
    except errors.RevisionNotFoundError as e:
        raise HubError(f"{repo_id} has no revision {revision!r} on {endpoint()}") from e
    except errors.LocalEntryNotFoundError:
        raise
    except errors.EntryNotFoundError as e:
        raise HubError(f"{what}: no such file in the repository") from e
    except errors.HfHubHTTPError as e:
        raise HubError(f"{what}: {' '.join(str(e).split())}") from e
    except Exception as e:
        # httpx / requests connection errors, whichever HTTP client this huggingface_hub uses
        if isinstance(e, (ConnectionError, TimeoutError)) or type(e).__module__.startswith(
            ("httpx", "requests", "urllib3")
        ):
            raise _Unreachable(f"{endpoint()} cannot be reached ({type(e).__name__})") from e
        raise
