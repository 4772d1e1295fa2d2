"""`attrgraph pull` (fetch a model and its transcoders ahead of time) and `attrgraph models`.

    attrgraph pull gemma-2-2b                         # a preset: its model and its transcoder set
    attrgraph pull --model org/name[@rev] --transcoders org/set[/sub][@rev]
    attrgraph models                                  # the presets, and what the cache holds

`pull` lists what it will fetch and its total size first, then downloads only the missing files
(huggingface_hub's progress bars; `--quiet` hides them). cli.py registers these subcommands and
calls `apply_hub_flags` for `trace`'s `--offline` and `--quiet`. Bad input is one line on stderr and
exit status 2, as cli.py's CliError gives (raised here as `_Usage`: cli.py imports this module).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from attrgraph.presets import PRESETS, UnknownPreset, get_preset

EXIT_USAGE = 2


class _Usage(Exception):
    """A user's mistake: one line, exit status 2."""


def _one_line_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except _Usage as e:
            print(f"attrgraph: error: {e}", file=sys.stderr)
            return EXIT_USAGE

    return run


def add_hub_subcommands(sub: Any) -> None:
    pull = sub.add_parser(
        "pull",
        help="download a preset's (or a hub model's) model and transcoders ahead of time",
        description="Download what tracing NAME needs into the Hugging Face cache, so that "
        "later runs work offline (HF_HUB_OFFLINE=1 or --offline).",
    )
    pull.add_argument("name", nargs="?", metavar="NAME", help="a preset (see `attrgraph models`)")
    pull.add_argument("--model", metavar="REPO[@REV]", help="a hub model, e.g. google/gemma-2-2b")
    pull.add_argument("--transcoders", metavar="REF", help="a hub transcoder set (org/name[/sub][@rev])")
    pull.add_argument("--dry-run", action="store_true", help="list the files and sizes, download nothing")
    pull.add_argument("--quiet", action="store_true", help="no progress bars")
    pull.set_defaults(handler=_one_line_errors(_pull))
    models = sub.add_parser("models", help="list the presets and what the local hub cache holds")
    models.set_defaults(handler=_models)


def apply_hub_flags(args: argparse.Namespace) -> None:
    """`--offline`: no download at all in this process; `--quiet`: no download progress bars;
    `--model PRESET` without `--transcoders`: the preset's pinned model and transcoders."""
    model = getattr(args, "model", None)
    if model in PRESETS and getattr(args, "transcoders", None) is None:
        args.model, args.transcoders = PRESETS[model].model_ref, PRESETS[model].transcoders_ref
    if getattr(args, "offline", False):
        os.environ["HF_HUB_OFFLINE"] = "1"
    if getattr(args, "quiet", False):
        from huggingface_hub.utils.tqdm import disable_progress_bars

        disable_progress_bars()


def preset_model_spec(name: str) -> Any:
    """The service's ModelSpec for a preset (`attrgraph serve --model gemma-2-2b`)."""
    from attrgraph.settings import ModelSpec

    try:
        preset = get_preset(name)
    except UnknownPreset as e:  # called while parsing settings, outside any handler
        print(
            f"attrgraph: error: {e}; or give --model NAME=PATH with --transcoders NAME=PATH", file=sys.stderr
        )
        raise SystemExit(EXIT_USAGE) from None
    transcoders = {preset.transcoder_set_name: preset.transcoders_ref}
    return ModelSpec(name=preset.name, path=preset.model_ref, transcoders=transcoders)


def _pull(args: argparse.Namespace) -> int:
    from attrgraph.engine.downloads import Plan, fetch, plan_model, plan_transcoders
    from attrgraph.engine.hub import HubError, cache_dir, is_offline

    if args.name and (args.model or args.transcoders):
        raise _Usage("give a preset NAME or --model/--transcoders, not both")
    if not (args.name or args.model or args.transcoders):
        raise _Usage(f"nothing to pull: give a preset ({', '.join(PRESETS)}) or --model/--transcoders")
    if is_offline():
        raise _Usage("pull downloads, and HF_HUB_OFFLINE is set: unset it to pull")
    apply_hub_flags(args)
    model, transcoders = args.model, args.transcoders
    if args.name:
        try:
            preset = get_preset(args.name)
        except UnknownPreset as e:
            raise _Usage(str(e)) from None
        model, transcoders = preset.model_ref, preset.transcoders_ref
    plans: list[Plan] = []
    try:
        if model:
            repo_id, _, revision = model.partition("@")
            plans.append(plan_model(repo_id, revision or None))
        if transcoders:
            plans.append(plan_transcoders(transcoders))
        total = sum(p.total_bytes for p in plans)
        missing = [(p, p.missing()) for p in plans]
        to_fetch = sum(f.size or 0 for _, files in missing for f in files)
        for plan, files in missing:
            where = f"{plan.repo_id}@{plan.commit[:12]}" if plan.repo_id else plan.directory
            print(f"{where}: {len(plan.files)} files, {_size(plan.total_bytes)} ({len(files)} to download)")
        print(f"total {_size(total)}, {_size(to_fetch)} to download into {cache_dir()}", flush=True)
        if args.dry_run:
            for _, files in missing:
                for f in files:
                    print(f"  {f.repo_id}/{f.path}  {_size(f.size or 0)}")
            return 0
        for plan, files in missing:
            if files:
                fetch(plan)
    except HubError as e:
        raise _Usage(str(e)) from None
    print("done: `attrgraph trace` and `attrgraph serve` now find these files offline too")
    return 0


def _models(args: argparse.Namespace) -> int:
    from huggingface_hub import scan_cache_dir

    from attrgraph.engine.hub import cache_dir

    cache = cache_dir()
    sizes: dict[str, int] = {}
    if cache.is_dir():
        sizes = {r.repo_id: r.size_on_disk for r in scan_cache_dir(cache).repos if r.repo_type == "model"}
    print(f"{'preset':<22} {'kind':<4} {'download':>9}  {'cached':<14} model + transcoders")
    for p in PRESETS.values():
        repos = [p.model, p.transcoders.split("/", 2)[0] + "/" + p.transcoders.split("/", 2)[1]]
        held = [r for r in repos if r in sizes]
        state = (
            "no"
            if not held
            else f"{_size(sum(sizes[r] for r in held))}" + ("" if len(held) == len(repos) else " (part)")
        )
        print(f"{p.name:<22} {p.kind:<4} {p.download_gb:>7.1f}GB  {state:<14} {p.model} + {p.transcoders}")
    print(f"\ncache {cache}: {len(sizes)} model repositories, {_size(sum(sizes.values()))}")
    for repo_id, size in sorted(sizes.items()):
        print(f"  {repo_id:<60} {_size(size):>10}")
    print("\n`attrgraph pull NAME` fetches a preset; sizes are approximate (docs/models.md)", file=sys.stderr)
    return 0


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
