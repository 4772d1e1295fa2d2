"""The `attrgraph` command: trace a prompt, build the demo model, run the service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing problem: printed as one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handler(args)
    except CliError as exc:
        print(f"attrgraph: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("attrgraph: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attrgraph", description=__doc__)
    sub = parser.add_subparsers(metavar="COMMAND")
    _add_trace(sub)
    # Plain imports: a broken subcommand module must fail the command, not vanish from --help.
    # Both modules import only the standard library at the top; their handlers load the rest.
    from attrgraph.dashboards.cli import add_dashboards_subcommand
    from attrgraph.demo.cli import add_demo_subcommand
    from attrgraph.hub_cli import add_hub_subcommands
    from attrgraph.service_cli import add_service_subcommands

    add_demo_subcommand(sub)
    add_dashboards_subcommand(sub)
    add_service_subcommands(sub)
    add_hub_subcommands(sub)
    return parser


def _add_trace(sub: Any) -> None:
    p = sub.add_parser(
        "trace",
        help="compute the attribution graph of a prompt",
        description="Compute the attribution graph of PROMPT (or of a chat, --chat) and print a summary.",
    )
    p.add_argument("prompt", nargs="?", help="the prompt text")
    p.add_argument(
        "--chat",
        metavar="FILE",
        help="trace a chat instead of PROMPT: a JSON list of {role, content} messages in FILE ('-': stdin), "
        "rendered with the model's chat template",
    )
    p.add_argument("--model", help="hub id, model directory or .gguf file (default: the built-in demo model)")
    p.add_argument("--transcoders", help="hub id or directory of transcoders (default: the demo's)")
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--target",
        action="append",
        metavar="TOKEN",
        help="explain this output token, as its exact text (' Austin' with its space; repeatable); "
        "default: the top predictions",
    )
    target.add_argument(
        "--target-id", action="append", type=int, metavar="ID", help="explain this token id (repeatable)"
    )
    target.add_argument("--logit-diff", nargs=2, metavar=("A", "B"), help="explain logit(A) - logit(B)")
    p.add_argument("--max-feature-nodes", type=_positive_int, default=None)
    p.add_argument("--max-n-logits", type=_positive_int, default=10)
    p.add_argument("--desired-logit-prob", type=float, default=0.95)
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="targets per backward pass (default: from free memory)",
    )
    p.add_argument("--max-edges-per-target", type=_positive_int, default=4096)
    p.add_argument("--node-threshold", type=float, default=0.8)
    p.add_argument("--edge-threshold", type=float, default=0.98)
    p.add_argument("--max-tokens", type=_positive_int, default=1024, help="refuse longer prompts")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("-o", "--output", type=Path, help="write the pruned graph JSON (Neuronpedia format)")
    p.add_argument(
        "--qk",
        action="store_true",
        help="also explain the top heads' attention: QK attributions on nodes (qk_tracing_results) in -o",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--offline", action="store_true", help="no downloads: hub files must be cached")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print the predicted peak memory and time (and whether it fits) instead of tracing",
    )
    p.set_defaults(handler=_run_trace)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _run_trace(args: argparse.Namespace) -> int:
    from attrgraph.tracing import (
        TraceRequestError,
        check_prompt,
        default_sources,
        load_pair,
        qk_entries,
        summarize,
        trace_request,
    )

    if not 0 < args.desired_logit_prob <= 1:
        raise CliError("--desired-logit-prob must be in (0, 1]")
    for name in ("node_threshold", "edge_threshold"):
        if not 0 <= getattr(args, name) <= 1:
            raise CliError(f"--{name.replace('_', '-')} must be in [0, 1]")
    if args.output is not None and not args.output.parent.exists():
        raise CliError(f"cannot write {args.output}: directory {args.output.parent} does not exist")
    prompt = _prompt_of(args)
    from attrgraph.hub_cli import apply_hub_flags

    apply_hub_flags(args)  # --offline, --quiet, and a preset name in --model
    if args.quiet:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    progress = _ProgressBar(enabled=not args.quiet)
    try:
        check_prompt(prompt)  # before the model loads: an empty prompt needs no model to refuse
        model_source, transcoder_source = default_sources(args.model, args.transcoders)
        lm, transcoders = load_pair(
            model_source, transcoder_source, device=args.device, dtype=args.dtype, progress=progress
        )
        if args.estimate:
            progress.close()
            print(_estimate_of(lm, transcoders, prompt, args))
            return 0
        result = trace_request(
            lm,
            transcoders,
            prompt,
            targets=args.target or args.target_id,
            logit_diff=args.logit_diff,
            max_tokens=args.max_tokens,
            settings={
                "max_feature_nodes": args.max_feature_nodes,
                "max_n_logits": args.max_n_logits,
                "desired_logit_prob": args.desired_logit_prob,
                "batch_size": args.batch_size,
                "max_edges_per_target": args.max_edges_per_target,
            },
            node_threshold=args.node_threshold,
            edge_threshold=args.edge_threshold,
            progress=progress,
        )
        if args.qk:
            graph = result.graph
            graph.attention = qk_entries(lm, transcoders, graph, result.pruned, progress=progress)
    except TraceRequestError as exc:
        raise CliError(str(exc)) from None
    finally:
        progress.close()
    print(summarize(result))
    for entry in result.graph.attention:
        print(
            f"qk: head {entry['layer']}.{entry['head']} from {entry['query_pos']} to {entry['key_pos']}: "
            f"score {entry['score']:.3f} on {entry['node_id']}"
        )
    if args.output is not None:
        args.output.write_bytes(result.json_bytes())
        print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")
    return 0


def _estimate_of(lm: Any, transcoders: Any, prompt: str | list[Any], args: argparse.Namespace) -> str:
    """`trace --estimate`: the engine's prediction for this prompt and these settings (the feature
    density measured on the prompt's first 64 tokens), against the device's free memory."""
    from attrgraph.engine.attribution import tokenize
    from attrgraph.engine.estimate import device_budget, estimate, trace_shape
    from attrgraph.tracing import build_settings, check_length, prompt_text

    ids = tokenize(lm.tokenizer, prompt_text(lm, prompt))
    check_length(lm, len(ids), args.max_tokens)
    settings = build_settings(
        {
            "max_feature_nodes": args.max_feature_nodes,
            "max_n_logits": args.max_n_logits,
            "batch_size": args.batch_size,
            "max_edges_per_target": args.max_edges_per_target,
        }
    )
    found = estimate(
        trace_shape(lm.model, transcoders, ids[:64]),
        len(ids),
        settings,
        budget_bytes=device_budget(lm.device),
    )
    lines = [found.summary()]
    lines += [f"  {name}: {size / 2**20:.0f} MiB" for name, size in found.memory_terms.items()]
    if found.fits is False:
        lines.append(f"does not fit: {found.advice()}")
    return "\n".join(lines)


def _prompt_of(args: argparse.Namespace) -> str | list[Any]:
    """PROMPT, or the messages of --chat FILE (a JSON list of {role, content})."""
    if args.chat is None:
        if args.prompt is None:
            raise CliError("give a PROMPT to trace (or --chat FILE with chat messages)")
        return str(args.prompt)
    if args.prompt is not None:
        raise CliError("give either a PROMPT or --chat FILE, not both")
    import json

    where = "stdin" if args.chat == "-" else args.chat
    try:
        raw = sys.stdin.read() if args.chat == "-" else Path(args.chat).read_text(encoding="utf-8")
        chat = json.loads(raw)
    except OSError as exc:
        raise CliError(f"cannot read --chat {where}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"--chat {where} is not JSON: {exc}") from None
    if not isinstance(chat, list) or not all(isinstance(m, dict) for m in chat):
        raise CliError(
            f'--chat {where} must be a JSON list of messages: [{{"role": "user", "content": "..."}}]'
        )
    return chat


class _ProgressBar:
    """One tqdm bar per phase, on stderr, so stdout stays clean for the summary."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._phase = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if phase != self._phase:
            self.close()
            self._phase = phase
            self._bar = tqdm(total=max(total, 1), desc=phase, unit="", leave=False, file=sys.stderr)
        self._bar.total = max(total, 1)
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


if __name__ == "__main__":
    raise SystemExit(main())
