"""The CLI hooks the main `attrgraph` command uses, and the API's promise not to load torch."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from attrgraph.service_cli import add_service_subcommands, settings_from_args


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="attrgraph")
    add_service_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_subcommands_parse_into_settings() -> None:
    args = _parse("serve", "--port", "9000", "--workers", "2", "--device", "cpu")
    assert args.command == "serve" and callable(args.handler) and args.workers == 2
    settings = settings_from_args(args)
    assert settings.port == 9000 and settings.device == "cpu"

    args = _parse(
        "worker", "--model", "gemma=/m/gemma", "--transcoders", "plt=/m/plt", "--transcoders", "clt=/m/clt"
    )
    (spec,) = settings_from_args(args).worker_models or []
    assert spec.name == "gemma" and spec.path == "/m/gemma"
    assert spec.transcoders == {"plt": "/m/plt", "clt": "/m/clt"}


def test_api_process_never_imports_torch() -> None:
    code = (
        "import sys; from attrgraph.api.app import create_app; create_app(); "
        "import attrgraph.client, attrgraph.serve; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_worker_outlives_no_serve_that_died_before_it_looked(tmp_path: Path) -> None:
    """`serve` killed while its worker is still starting: the worker must still stop.

    A middle process stands in for `serve`: it starts a worker that watches it, then exits at once,
    long before the worker has imported anything. The worker's Redis is unreachable, as the embedded
    one is once `serve` is gone, so without the watch it would wait for Redis forever."""
    env = dict(os.environ)
    env.update(
        REDIS_URL="redis://127.0.0.1:1/0",
        ATTRGRAPH_TRACER="attrgraph.worker.fake_tracer:FakeTracer",
        ATTRGRAPH_FAKE_LOG=str(tmp_path / "fake.log"),
    )
    pid_file, log_file = tmp_path / "worker.pid", tmp_path / "worker.log"
    starter = (
        "import os, subprocess, sys; "
        "p = subprocess.Popen([sys.executable, '-m', 'attrgraph.service_cli', 'worker', "
        "'--exit-with-parent', str(os.getpid())], stdout=subprocess.DEVNULL, "
        f"stderr=open({str(log_file)!r}, 'w'), start_new_session=True); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))"
    )
    subprocess.run([sys.executable, "-c", starter], env=env, check=True, timeout=60)
    worker_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _alive(worker_pid):
        time.sleep(0.2)
    alive = _alive(worker_pid)
    if alive:
        os.kill(worker_pid, signal.SIGKILL)
    assert not alive, "the worker kept running after the process that started it was gone"
    log = log_file.read_text()
    # It ran and stopped in order (not a start-up error such as an unknown option).
    assert "stopped after" in log, log


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # An exited child of init is reaped at once; a zombie would still answer kill(pid, 0).
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return bool(stat) and stat.split(") ")[-1][:1] != "Z"
