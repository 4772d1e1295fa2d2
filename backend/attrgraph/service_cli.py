"""`attrgraph serve` and `attrgraph worker`.

The main CLI (attrgraph/cli.py) calls `add_service_subcommands(subparsers)`; each subcommand sets
`handler`, a callable taking the parsed args and returning an exit code. This module also runs on
its own (`python -m attrgraph.service_cli worker`), which is how `serve` starts its worker.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from attrgraph.settings import DEFAULT_REDIS_URL, ModelSpec, Settings


def add_service_subcommands(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the API, a tracing worker and (without REDIS_URL) an embedded Redis"
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes to start (0: use external ones)"
    )
    serve.add_argument("--data-dir", type=Path, help="where the embedded Redis keeps its data")
    serve.add_argument("--model", metavar="PRESET", help="serve a preset (`attrgraph models`), not the demo")
    _common(serve)
    serve.set_defaults(handler=_serve)

    worker = subparsers.add_parser("worker", help="run a tracing worker against REDIS_URL")
    worker.add_argument("--model", metavar="NAME=PATH", help="the model to serve (default: the demo model)")
    worker.add_argument(
        "--transcoders",
        metavar="NAME=PATH",
        action="append",
        help="a transcoder set for --model (repeatable; the first is the default)",
    )
    # PID of the `serve` process that started this worker: stop when it is gone.
    worker.add_argument("--exit-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
    _common(worker)
    worker.set_defaults(handler=_worker)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis to use (default: $REDIS_URL)")
    parser.add_argument("--device", help="torch device for workers (default: cuda if available, else cpu)")
    parser.add_argument("--tracer", help=argparse.SUPPRESS)  # module:callable, for tests
    parser.add_argument("-v", "--verbose", action="store_true")


def settings_from_args(args: argparse.Namespace) -> Settings:
    updates: dict[str, Any] = {}
    for name in ("host", "port", "data_dir", "redis_url", "device", "tracer"):
        value = getattr(args, name, None)
        if value is not None:
            updates[name] = value
    if getattr(args, "model", None):
        name, _, path = args.model.partition("=")
        transcoders = dict(t.partition("=")[::2] for t in getattr(args, "transcoders", None) or [])
        if not path and not transcoders:  # a preset name: its model and transcoders
            from attrgraph.hub_cli import preset_model_spec

            updates["worker_models"] = [preset_model_spec(name)]
        elif not path or not transcoders:
            raise SystemExit("--model NAME=PATH needs at least one --transcoders NAME=PATH")
        else:
            updates["worker_models"] = [ModelSpec(name=name, path=path, transcoders=transcoders)]
    settings = Settings()
    return settings.model_copy(update=updates) if updates else settings


def _logging(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def _serve(args: argparse.Namespace) -> int:
    from attrgraph.serve import serve

    _logging(args)
    return serve(settings_from_args(args), workers=max(0, args.workers))


def _worker(args: argparse.Namespace) -> int:
    # Before torch loads OpenMP: spinning OpenMP threads collapse when a worker shares its cores
    # with the API, Redis or another worker (measured on 2 cores: 0.08 s traces took 4-7 s).
    # Passive waiting costs little on a dedicated machine. An explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import redis

    from attrgraph.worker.loop import Worker
    from attrgraph.worker.tracer import load_tracer

    _logging(args)
    settings = settings_from_args(args)
    client = redis.Redis.from_url(
        settings.redis_url or DEFAULT_REDIS_URL,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=30,
    )
    worker = Worker(settings, load_tracer(settings), client)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    if args.exit_with_parent is not None:
        _watch_parent(args.exit_with_parent, worker.stop)
    worker.run()
    return 0


def _watch_parent(parent: int, stop: Any) -> None:
    """Stop when `parent` (the `serve` that started us) is gone, killed without cleaning up.

    The pid comes from `serve` itself: a parent that died before this thread started would
    otherwise never be noticed (we would already be init's child, and wait for init)."""

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        stop()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attrgraph")
    add_service_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
