"""A local HTTP server that answers the few hub API calls huggingface_hub makes to download files.

    with FakeHub() as hub:                                   # serves on 127.0.0.1, a free port
        hub.add_repo("org/model", tmp_path / "model-dir")    # every file under the directory
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hf_hub_download("org/model", "config.json")          # HEAD + GET /org/model/resolve/main/...

Endpoints (as huggingface_hub 0.2x-2.x calls them):
- HEAD/GET `/{org}/{name}/resolve/{revision}/{path}`: the file, with `X-Repo-Commit`, `ETag`
  (its sha256, as the hub gives for LFS files), `X-Linked-Size` and `Content-Length`;
- GET `/api/models/{org}/{name}[/revision/{revision}]`: `id`, `sha` and `siblings` (with `size`).
A revision is "main", a tag given to `add_repo`, or the commit hash. Unknown repositories,
revisions and files get the hub's 404s with its `X-Error-Code`, a `gated` repository 401 GatedRepo.
Every request is recorded in `requests` ("HEAD /org/model/resolve/main/config.json"), so a test can
check exactly what was fetched; `downloads()` lists the GETs of file contents.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit


@dataclass
class _Repo:
    commit: str
    refs: set[str]
    files: dict[str, bytes]
    gated: bool = False


@dataclass
class FakeHub:
    repos: dict[str, _Repo] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeHub is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_repo(
        self, repo_id: str, source: Path, *, tag: str | None = None, gated: bool = False, prefix: str = ""
    ) -> str:
        """Serve every file under `source` (under `prefix/` in the repo); returns the commit hash."""
        files = {
            (prefix + "/" if prefix else "") + p.relative_to(source).as_posix(): p.read_bytes()
            for p in sorted(source.rglob("*"))
            if p.is_file()
        }
        digest = hashlib.sha1(repo_id.encode())
        for name, data in sorted(files.items()):
            digest.update(name.encode() + b"\0" + hashlib.sha1(data).digest())
        commit = digest.hexdigest()
        self.repos[repo_id] = _Repo(commit, {"main", *([tag] if tag else [])}, files, gated)
        return commit

    def downloads(self) -> list[str]:
        """The files whose contents were fetched, as "org/name/path"."""
        fetched = []
        for request in self.requests:
            method, path = request.split(" ", 1)
            parts = path.strip("/").split("/")
            if method == "GET" and len(parts) >= 5 and parts[2] == "resolve":
                fetched.append("/".join([parts[0], parts[1], *parts[4:]]))
        return fetched

    def __enter__(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet: tests read hub.requests
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(f"{self.command} {path}")
            parts = path.strip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                self._info(f"{parts[2]}/{parts[3]}", parts[5] if parts[4:5] == ["revision"] else "main")
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._file(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), body)
            else:
                self._send(404, {"X-Error-Code": "RepoNotFound"}, b'{"error": "not found"}', body)

        def _repo(self, repo_id: str, revision: str, body: bool) -> _Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._send(404, {"X-Error-Code": "RepoNotFound"}, b'{"error": "Repository not found"}', body)
                return None
            if repo.gated and not self.headers.get("authorization"):
                self._send(401, {"X-Error-Code": "GatedRepo"}, b'{"error": "gated"}', body)
                return None
            if revision not in repo.refs and revision != repo.commit:
                self._send(404, {"X-Error-Code": "RevisionNotFound"}, b'{"error": "Invalid rev id"}', body)
                return None
            return repo

        def _info(self, repo_id: str, revision: str) -> None:
            repo = self._repo(repo_id, revision, True)
            if repo is not None:
                siblings = [{"rfilename": n, "size": len(d)} for n, d in sorted(repo.files.items())]
                payload = {"id": repo_id, "sha": repo.commit, "siblings": siblings, "private": False}
                self._send(200, {"Content-Type": "application/json"}, json.dumps(payload).encode(), True)

        def _file(self, repo_id: str, revision: str, name: str, body: bool) -> None:
            repo = self._repo(repo_id, revision, body)
            if repo is None:
                return
            data = repo.files.get(name)
            if data is None:
                headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit}
                self._send(404, headers, b'{"error": "Entry not found"}', body)
                return
            headers = {
                "X-Repo-Commit": repo.commit,
                "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                "X-Linked-Size": str(len(data)),
                "Content-Type": "application/octet-stream",
            }
            self._send(200, headers, data, body)

        def _send(self, status: int, headers: dict[str, str], data: bytes, body: bool) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler


@dataclass(frozen=True)
class TinyHub:
    """What `publish_tiny_hub` served: a model repo, a config-only transcoder repo, a weights repo."""

    model: str
    transcoders: str
    weights: str
    needed: frozenset[str]  # every "org/name/path" that a trace needs, and nothing else


def publish_tiny_hub(hub: FakeHub, root: Path) -> TinyHub:
    """A tiny GPT-2 and GemmaScope-style transcoders for it, laid out like the real hub repositories.

    `org/tiny-gpt2` holds the model plus duplicates a loader must skip (pytorch_model.bin, onnx/,
    README.md); `scope/tiny-scope-transcoders` holds .npz files for two widths, one of which the
    set uses; `ct/tiny-transcoders` holds only a circuit-tracer config.yaml whose `transcoders:` list
    points at the chosen files with hf:// URIs (one pinned with ?revision=), plus feature dashboards.
    """
    from attrgraph.engine.transcoders import save_gemmascope_npz
    from tests.support.models import make_tiny_model
    from tests.support.transcoders import tiny_plt_transcoders

    model_dir = make_tiny_model("gpt2", root / "model")
    (model_dir / "pytorch_model.bin").write_bytes(b"a duplicate of the weights in another format")
    (model_dir / "onnx").mkdir()
    (model_dir / "onnx" / "model.onnx").write_bytes(b"onnx export")
    (model_dir / "README.md").write_text("# tiny gpt2\n")
    hub.add_repo("org/tiny-gpt2", model_dir)

    transcoders = tiny_plt_transcoders()
    save_gemmascope_npz(transcoders, root / "weights" / "w48", nested=True)
    save_gemmascope_npz(tiny_plt_transcoders(d_transcoder=32), root / "weights" / "w32", nested=True)
    weights_dir = root / "weights-repo"
    for width in ("w48", "w32"):
        for layer_dir in (root / "weights" / width).iterdir():
            for npz in layer_dir.rglob("*.npz"):
                target = weights_dir / layer_dir.name / npz.relative_to(layer_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(npz.read_bytes())
    weights_commit = hub.add_repo("scope/tiny-scope-transcoders", weights_dir)

    listed = [
        f"hf://scope/tiny-scope-transcoders/layer_{i}/width_48/average_l0_0/params.npz"
        for i in range(transcoders.n_layers)
    ]
    listed[-1] += f"?revision={weights_commit}"
    config_dir = root / "config-repo"
    (config_dir / "features").mkdir(parents=True)
    (config_dir / "features" / "layer_0.bin").write_bytes(b"dashboards, not weights")
    config = {
        "model_kind": "transcoder_set",
        "model_name": "org/tiny-gpt2",
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out",
        "transcoders": listed,
    }
    (config_dir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    hub.add_repo("ct/tiny-transcoders", config_dir)

    model_files = {"config.json", "generation_config.json", "model.safetensors"}
    model_files |= {p.name for p in model_dir.iterdir() if p.name.startswith(("tokenizer", "special_tokens"))}
    needed = {f"org/tiny-gpt2/{name}" for name in model_files if (model_dir / name).is_file()}
    needed |= {"ct/tiny-transcoders/config.yaml"}
    needed |= {u.removeprefix("hf://").split("?")[0] for u in listed}
    return TinyHub("org/tiny-gpt2", "ct/tiny-transcoders", "scope/tiny-scope-transcoders", frozenset(needed))
