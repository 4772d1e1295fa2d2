"""`attrgraph demo build [--size full|ci] [--out DIR] [--seed N]`."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from attrgraph.dashboards.cli import add_command_group


def add_demo_subcommand(subparsers: Any) -> None:
    """Register `demo` (with its `build` action) on the main parser's subparsers."""
    actions = add_command_group(
        subparsers,
        "demo",
        help="the embedded demo model",
        description="Rebuild the embedded toy-world demo model, its transcoders and dashboards.",
    )
    build = actions.add_parser(
        "build",
        help="rebuild the demo model, transcoders, dashboards and metrics from scratch",
        description=(
            "Generate the corpus, train the model and its transcoders, precompute the feature "
            "dashboards and measure the model. Deterministic for a seed."
        ),
    )
    build.add_argument(
        "--size",
        choices=["full", "ci"],
        default="full",
        help="full: the shipped model (about 20-30 min on 2 CPU cores); ci: a tiny smoke build",
    )
    build.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: a new temporary directory; the committed files "
        "are replaced only when --out points at them)",
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(handler=run_build)
    finish = actions.add_parser(
        "evaluate",
        help="recompute dashboards and metrics.json from the model and transcoders in a build directory",
        description=(
            "Re-run the last build stage (dashboards, behaviour and transcoder metrics, the Dallas "
            "analysis) on the files in --out. Deterministic: on the files of a build it reproduces that "
            "build's dashboards and metrics."
        ),
    )
    finish.add_argument("--out", type=Path, required=True, help="a directory written by `demo build`")
    finish.add_argument(
        "--size", choices=["full", "ci"], default=None, help="default: the size in metrics.json"
    )
    finish.add_argument("--seed", type=int, default=None, help="default: the seed in metrics.json")
    finish.add_argument("--quiet", action="store_true", help="no progress bars")
    finish.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from attrgraph.demo.build import finish

    old = json.loads((args.out / "metrics.json").read_text()) if (args.out / "metrics.json").exists() else {}
    size = args.size or old.get("size", "full")
    seed = args.seed if args.seed is not None else old.get("seed", 0)
    metrics = finish(args.out, size, seed, show_progress=not args.quiet)
    _summarise(args.out, metrics)
    return 0


def run_build(args: argparse.Namespace) -> int:
    from attrgraph.demo.build import build

    out: Path = args.out or Path(tempfile.mkdtemp(prefix=f"attrgraph-demo-{args.size}-"))
    metrics = build(out, size=args.size, seed=args.seed, show_progress=not args.quiet)
    _summarise(out, metrics)
    return 0


def _summarise(out: Path, metrics: dict[str, Any]) -> None:
    beh = metrics["behaviour"]
    print(f"wrote {out}")
    for name in ("two_hop_trained", "two_hop_held_out", "antonyms_trained", "addition_trained", "induction"):
        print(f"  {name}: accuracy {beh[name]['accuracy']:.2f}")
    for row in metrics["transcoders"]:
        print(
            f"  transcoder layer {row['layer']}: variance explained {row['variance_explained']:.3f}, "
            f"L0 {row['l0']:.1f}, dead {row['dead_fraction']:.1%}"
        )
