"""`attrgraph dashboards build --model M --transcoders T --corpus FILE [--out DIR]`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


def add_command_group(subparsers: Any, name: str, *, help: str, description: str) -> Any:
    """`attrgraph NAME ACTION ...` (dashboards, demo): register NAME on the main parser's subparsers
    and return its subparsers, one per action; without an action it prints its help (exit 2)."""
    group = subparsers.add_parser(name, help=help, description=description)
    group.set_defaults(handler=lambda _args: (group.print_help(), EXIT_USAGE)[1])
    return group.add_subparsers(metavar="ACTION")


def add_dashboards_subcommand(subparsers: Any) -> None:
    """Register `dashboards` (with its `build` action) on the main parser's subparsers."""
    actions = add_command_group(
        subparsers,
        "dashboards",
        help="feature dashboards for a transcoder set",
        description="Compute feature dashboards (examples, histograms, logit effects, labels).",
    )
    build = actions.add_parser(
        "build",
        help="compute every feature's dashboard on a text corpus (resumable)",
        description=(
            "Stream CORPUS through the model and its transcoders and write one dashboard per feature "
            "(top examples, quantile samples, histogram, density, logit effects, an automatic label) "
            "as layer_{i}.jsonl.gz. Memory does not grow with the corpus. Interrupted builds resume "
            "from the last checkpoint when run again with the same arguments."
        ),
    )
    build.add_argument("--model", required=True, help="hub id, model directory or .gguf file")
    build.add_argument("--transcoders", required=True, help="hub id or directory of transcoders")
    build.add_argument(
        "--corpus",
        required=True,
        type=Path,
        help='text (one document per line, or blank-line separated) or .jsonl with a "text" field',
    )
    build.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: TRANSCODERS/dashboards for a transcoder directory, where "
        "`attrgraph serve` finds them)",
    )
    build.add_argument("--label-hints", type=Path, help="JSON: word groups and function words for labels")
    build.add_argument(
        "--context",
        type=_positive_int,
        default=None,
        help="tokens per window (default: the model's, at most 1024)",
    )
    build.add_argument("--batch-size", type=_positive_int, default=64, help="windows per forward pass")
    build.add_argument(
        "--checkpoint-every", type=_positive_int, default=2000, help="documents between checkpoints"
    )
    build.add_argument("--seed", type=int, default=0, help="picks the lower-quantile examples")
    build.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    build.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(handler=run_build)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _fail(message: str) -> int:
    print(f"attrgraph: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_build(args: argparse.Namespace) -> int:
    from attrgraph.dashboards.corpus import CorpusError, CorpusFile, document_windows
    from attrgraph.dashboards.labels import LabelHints

    out = args.out
    if out is None:
        if not Path(args.transcoders).is_dir():
            return _fail("--out is required when --transcoders is not a local directory")
        out = Path(args.transcoders) / "dashboards"
    try:
        corpus = CorpusFile(args.corpus)
        hints = LabelHints.read(args.label_hints) if args.label_hints else None
        total = corpus.count()
    except (CorpusError, ValueError) as exc:
        return _fail(str(exc))
    if total == 0:
        return _fail(f"corpus {args.corpus} holds no documents")

    from attrgraph.dashboards.build import BuildSettings, CheckpointMismatch, build_dashboards
    from attrgraph.engine.models import ModelLoadError, load_model
    from attrgraph.engine.transcoders import load_transcoders

    try:
        lm = load_model(args.model, device=args.device, dtype=args.dtype)
        tc = load_transcoders(args.transcoders, device=lm.device, dtype=lm.dtype)
    except (ModelLoadError, OSError, ValueError) as exc:
        return _fail(str(exc))
    # Tracing needs eager attention; a forward pass does not, and SDPA is faster and leaner (and
    # what the demo build ran, so the demo's dashboards come out the same).
    with contextlib.suppress(AttributeError, ValueError, ImportError):
        lm.model.set_attn_implementation("sdpa")
    config = lm.model.config
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or 1024
    context = min(args.context or min(int(limit), 1024), int(limit))
    stat = args.corpus.stat()
    fingerprint = f"{lm.model_id}@{lm.revision}|{args.corpus.resolve()}:{stat.st_size}|context={context}"
    settings = BuildSettings(
        batch_size=args.batch_size, checkpoint_every=args.checkpoint_every, seed=args.seed
    )
    documents = (document_windows(text, lm.tokenizer, context) for text in corpus.documents())
    try:
        summaries = build_dashboards(
            lm.model,
            lm.tokenizer,
            tc,
            documents,
            out,
            hints=hints,
            settings=settings,
            fingerprint=fingerprint,
            total=total,
            show_progress=not args.quiet,
        )
    except (CheckpointMismatch, CorpusError) as exc:
        return _fail(str(exc))
    alive = sum(s["with_examples"] for s in summaries)
    tokens = summaries[0]["tokens"]
    print(f"wrote {len(summaries)} layer files to {out}: {alive} features fire on {tokens} tokens")
    return 0
