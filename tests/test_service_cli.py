"""The CLI hooks the main `attrgraph` command uses, and the API's promise not to load torch."""

from __future__ import annotations

import argparse
import subprocess
import sys

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
