"""Compare attrgraph with circuit-tracer 0.5.0 on the same model, transcoders, prompts and settings.

    bash bench/setup_circuit_tracer.sh                # once: bench/.venv-ct
    python bench/make_fixture.py --fold-mlp-norm --out bench/out/fixture-folded   # once
    python bench/compare_circuit_tracer.py --fixture bench/out/fixture-folded --out-dir bench/out/folded \
        [--write-docs docs/benchmarks.md]

Any GPT-2-architecture HF model directory and circuit-tracer-layout transcoder directory can replace
the fixture (--model, --transcoders, --prompts: a JSON {"16": prompt, ...} keyed by token count).

For every (setting, prompt length) it runs bench/ct_runner.py in circuit-tracer's virtual environment
and bench/attrgraph_runner.py in this project's environment, each in its own process (so the peak RSS
of each, its VmHWM, covers only that tool), then compares the graphs:

- nodes are matched by interop node id (`L_f_p`, `L_-1_p`, `E_t_p`, `{L+1}_v_p`);
- every edge attrgraph kept whose two nodes circuit-tracer also has is compared with circuit-tracer's
  dense adjacency: relative error |a - b| / max(|b|, 1e-6 * max|row of b|) against 1e-4, and
  |a - b| / max|row of b|, split by the kind of source node (feature, error, error at BOS, token);
- time is the wall time of `attribute()` / `trace()` only (model loading excluded), plus its CPU time.

Results go to OUT_DIR/results.json and, with --write-docs, into the section of docs/benchmarks.md
between `<!-- bench:circuit-tracer:start -->` and `<!-- bench:circuit-tracer:end -->`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
START_MARK = "<!-- bench:circuit-tracer:start -->"
END_MARK = "<!-- bench:circuit-tracer:end -->"
REL_TOL = 1e-4
ROW_FLOOR = 1e-6


@dataclass
class ChildResult:
    returncode: int | None  # None: killed at the timeout
    wall_s: float
    max_rss_mib: float  # the child's VmHWM, polled
    log: Path


@dataclass
class RunRecord:
    setting: str
    n_tokens: int
    max_feature_nodes: int | None
    ct: dict[str, Any] = field(default_factory=dict)
    ag: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] = field(default_factory=dict)
    load_average: list[float] = field(default_factory=list)  # 1-minute load average before each tool ran


def _vm_hwm_mib(pid: int) -> float | None:
    """Peak resident set size of a running process (VmHWM), MiB; None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def run_child(cmd: list[str], log: Path, timeout_s: float) -> ChildResult:
    """Run cmd in its own process group, polling its VmHWM (peak RSS; it only grows, so the last
    reading is the peak up to then); kill the group at the timeout.

    (Not ru_maxrss from wait4: Linux carries the forked parent's high-water mark across exec, so a
    child of a large parent would report the parent's size.)"""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        peak = 0.0
        timed_out = False
        while proc.poll() is None:
            hwm = _vm_hwm_mib(proc.pid)
            if hwm is not None:
                peak = max(peak, hwm)
            if time.perf_counter() - start > timeout_s:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.1)
        wall = time.perf_counter() - start
    return ChildResult(
        returncode=None if timed_out else proc.returncode, wall_s=wall, max_rss_mib=peak, log=log
    )


def log_tail(path: Path, n: int = 6) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


# -- comparison ---------------------------------------------------------------------------------


def compare(ct_prefix: Path, ag_prefix: Path) -> dict[str, Any]:
    ct_meta = json.loads(Path(f"{ct_prefix}.meta.json").read_text())
    ag_meta = json.loads(Path(f"{ag_prefix}.meta.json").read_text())
    adjacency = np.load(f"{ct_prefix}.adjacency.npy", mmap_mode="r")
    edges = np.load(f"{ag_prefix}.edges.npz")
    ag_targets, ag_sources, ag_weights = edges["targets"], edges["sources"], edges["weights"]

    result: dict[str, Any] = {"same_tokens": ct_meta["token_ids"] == ag_meta["token_ids"]}

    ct_ids: list[str] = ct_meta["node_ids"]
    ag_ids: list[str] = ag_meta["node_ids"]
    ct_index = {node: i for i, node in enumerate(ct_ids)}
    ag_to_ct = np.array([ct_index.get(node, -1) for node in ag_ids], dtype=np.int64)

    n_layers = ct_meta["n_layers"]
    ct_feats = {n for n in ct_ids[: ct_meta["n_selected_features"]]}
    ag_feats = {n for n in ag_ids[: ag_meta["n_selected_features"]]}
    result["features"] = {
        "ct": len(ct_feats),
        "ag": len(ag_feats),
        "common": len(ct_feats & ag_feats),
        "ct_active": ct_meta["n_active_features"],
        "ag_active": ag_meta["n_active_features"],
    }
    ct_act = dict(zip(ct_ids, ct_meta["activations"], strict=False))
    act_err = [
        abs(a - ct_act[n]) / max(abs(ct_act[n]), 1e-12)
        for n, a in zip(ag_ids, ag_meta["activations"], strict=False)
        if n in ct_act
    ]
    result["activation_max_rel_err"] = max(act_err) if act_err else None

    ct_logits = [(t["token_id"], t["probability"]) for t in ct_meta["logit_targets"]]
    ag_logits = [(t["token_id"], t["probability"]) for t in ag_meta["logit_targets"]]
    result["logits"] = {
        "ct": [t for t, _ in ct_logits],
        "ag": [t for t, _ in ag_logits],
        "same_targets": [t for t, _ in ct_logits] == [t for t, _ in ag_logits],
        "max_prob_diff": max(
            (abs(p - q) for (_, p), (_, q) in zip(ct_logits, ag_logits, strict=False)), default=None
        ),
    }

    t_ct, s_ct = ag_to_ct[ag_targets], ag_to_ct[ag_sources]
    both = (t_ct >= 0) & (s_ct >= 0)
    rows, cols, a = t_ct[both], s_ct[both], ag_weights[both].astype(np.float64)
    order = np.argsort(rows, kind="stable")
    rows, cols, a = rows[order], cols[order], a[order]
    b = np.empty_like(a)
    row_max = np.empty_like(a)
    common_cols = np.zeros(len(ct_ids), dtype=bool)
    common_cols[ag_to_ct[ag_to_ct >= 0]] = True
    ct_edges_between_common = 0
    uniq, starts = np.unique(rows, return_index=True)
    bounds = [*starts.tolist(), len(rows)]
    for k, r in enumerate(uniq.tolist()):
        lo, hi = bounds[k], bounds[k + 1]
        row = np.asarray(adjacency[r], dtype=np.float64)
        b[lo:hi] = row[cols[lo:hi]]
        row_max[lo:hi] = np.abs(row).max()
        ct_edges_between_common += int(np.count_nonzero(row[common_cols]))
    diff = np.abs(a - b)
    rel = _rel_err(diff, b, row_max)
    row_rel = diff / np.where(row_max > 0, row_max, np.inf)
    n = int(rel.size)
    result["edges"] = {
        "ag_total": int(ag_targets.size),
        "ct_nonzero_total": int(ct_meta["n_nonzero_edges"]),
        "ct_nonzero_between_common_targets": ct_edges_between_common,
        "compared": n,
        "ct_zero_but_ag_nonzero": int(((b == 0) & (a != 0)).sum()),
        "max_rel_err": float(rel.max()) if n else None,
        "n_over_tol": int((rel > REL_TOL).sum()),
        "max_row_rel_err": float(row_rel.max()) if n else None,
    }
    # The same, by kind of source node: the conventions that can differ (token embeddings, the BOS
    # position's error node) show up as one kind disagreeing while the others agree.
    kinds = _kinds(ct_ids, n_layers)[cols]  # per column, then per edge: no per-edge strings
    by_kind: dict[str, dict[str, Any]] = {}
    for code, kind in enumerate(KINDS[:4]):
        sel = kinds == code
        if not sel.any():
            continue
        by_kind[kind] = {
            "compared": int(sel.sum()),
            "max_rel_err": float(rel[sel].max()),
            "n_over_tol": int((rel[sel] > REL_TOL).sum()),
            "max_row_rel_err": float(row_rel[sel].max()),
            "max_rel_err_edges_over_0.1_rowmax": float(
                np.max(rel[sel & (np.abs(b) >= 0.1 * row_max)], initial=0.0)
            ),
        }
    result["edges"]["by_source_kind"] = by_kind
    if n and result["edges"]["n_over_tol"]:
        worst = np.argsort(rel)[::-1][:5]
        result["edges"]["worst"] = [
            {
                "target": ct_ids[int(rows[i])],
                "source": ct_ids[int(cols[i])],
                "attrgraph": float(a[i]),
                "circuit_tracer": float(b[i]),
                "row_max": float(row_max[i]),
            }
            for i in worst
        ]
    return result


def _rel_err(diff: np.ndarray, b: np.ndarray, row_max: np.ndarray) -> np.ndarray:
    """|a - b| / max(|b|, ROW_FLOOR * max|row of b|); 0 where both are 0."""
    denom = np.maximum(np.abs(b), ROW_FLOOR * row_max)
    rel: np.ndarray = np.divide(diff, denom, out=np.zeros_like(diff), where=denom > 0)
    return rel


KINDS = ("feature", "error", "error@BOS", "token", "logit")


def _kinds(ids: list[str], n_layers: int) -> np.ndarray:
    """Index into KINDS of each node id."""
    out = np.empty(len(ids), dtype=np.int8)
    for i, node in enumerate(ids):
        if node.startswith("E_"):
            kind = "token"
        elif "_-1_" in node:
            kind = "error@BOS" if node.endswith("_-1_0") else "error"
        elif node.startswith(f"{n_layers + 1}_"):
            kind = "logit"
        else:
            kind = "feature"
        out[i] = KINDS.index(kind)
    return out


# -- orchestration --------------------------------------------------------------------------------


def common_args(args: argparse.Namespace, key: str, out: Path, max_feature_nodes: int | None) -> list[str]:
    cmd = [
        "--model", str(args.model), "--transcoders", str(args.transcoders),
        "--prompt-file", str(args.prompts), "--prompt-key", key, "--out", str(out),
        "--max-n-logits", str(args.max_n_logits), "--desired-logit-prob", str(args.desired_logit_prob),
        "--batch-size", str(args.batch_size), "--threads", str(args.threads),
    ]  # fmt: skip
    if max_feature_nodes is not None:
        cmd += ["--max-feature-nodes", str(max_feature_nodes)]
    return cmd


def run_one(args: argparse.Namespace, setting: str, n_tokens: int, mfn: int | None) -> RunRecord:
    record = RunRecord(setting=setting, n_tokens=n_tokens, max_feature_nodes=mfn)
    tag = f"{setting}_{n_tokens}"
    out_dir: Path = args.out_dir
    ct_prefix, ag_prefix = out_dir / f"ct_{tag}", out_dir / f"ag_{tag}"

    ct_cmd = [
        str(args.ct_python),
        str(BENCH / "ct_runner.py"),
        *common_args(args, str(n_tokens), ct_prefix, mfn),
    ]
    if (args.fixture / "reference_logits.pt").exists():
        ct_cmd += ["--reference-logits", str(args.fixture / "reference_logits.pt")]
    if n_tokens == args.json_tokens and setting == args.settings[0]:
        ct_cmd += ["--json-out", str(args.json_dir)]
    ag_cmd = [
        sys.executable,
        str(BENCH / "attrgraph_runner.py"),
        *common_args(args, str(n_tokens), ag_prefix, mfn),
    ]
    if args.max_edges_per_target is not None:
        ag_cmd += ["--max-edges-per-target", str(args.max_edges_per_target)]

    reuse = args.reuse_ct and Path(f"{ct_prefix}.meta.json").exists()
    for tool, cmd, prefix in (("ct", ct_cmd, ct_prefix), ("ag", ag_cmd, ag_prefix)):
        slot: dict[str, Any] = getattr(record, tool)
        if tool == "ct" and reuse:
            meta = json.loads(Path(f"{prefix}.meta.json").read_text())
            if (
                meta["settings"]["max_feature_nodes"] == mfn
                and meta["settings"]["batch_size"] == args.batch_size
            ):
                slot.update(_summary(meta), status="ok (reused)", max_rss_mib=meta.get("child_max_rss_mib"))
                print(f"[{tag}] ct: reusing {prefix}.meta.json")
                continue
        for stale in (Path(f"{prefix}.meta.json"),):
            stale.unlink(missing_ok=True)
        record.load_average.append(round(os.getloadavg()[0], 2))
        print(f"[{tag}] {tool}: running (timeout {args.timeout:.0f} s)", flush=True)
        child = run_child(cmd, out_dir / "logs" / f"{tool}_{tag}.log", args.timeout)
        slot["max_rss_mib"] = child.max_rss_mib
        slot["process_wall_s"] = child.wall_s
        if child.returncode is None:
            slot["status"] = f"timed out after {args.timeout:.0f} s"
        elif child.returncode != 0:
            crashed = "out of memory?" if child.returncode in (-9, 137) else "error"
            slot["status"] = f"failed (exit {child.returncode}, {crashed})"
            slot["log_tail"] = log_tail(child.log)
        else:
            meta_path = Path(f"{prefix}.meta.json")
            meta = json.loads(meta_path.read_text())
            meta["child_max_rss_mib"] = child.max_rss_mib
            meta_path.write_text(json.dumps(meta))
            slot.update(_summary(meta), status="ok")
        print(f"[{tag}] {tool}: {slot['status']}; " + _short(slot), flush=True)

    if record.ct.get("status", "").startswith("ok") and record.ag.get("status") == "ok":
        record.comparison = compare(ct_prefix, ag_prefix)
        e = record.comparison["edges"]
        print(f"[{tag}] compared {e['compared']} edges: max rel err {e['max_rel_err']}, "
              f"{e['n_over_tol']} over {REL_TOL}", flush=True)  # fmt: skip
    return record


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "attribute_seconds", "attribute_cpu_seconds", "load_seconds", "peak_rss_mib",
        "rss_before_attribute_mib", "n_active_features", "n_selected_features", "version", "torch",
        "threads", "max_abs_logit_diff_vs_hf", "max_abs_logit_diff_vs_reference", "n_edges",
        "n_nonzero_edges", "settings",
    )  # fmt: skip
    return {k: meta[k] for k in keys if k in meta}


def _short(slot: dict[str, Any]) -> str:
    if "attribute_seconds" not in slot:
        return f"peak RSS {slot.get('max_rss_mib', float('nan')):.0f} MiB"
    return (
        f"{slot['attribute_seconds']:.1f} s wall, {slot['attribute_cpu_seconds']:.1f} s CPU, "
        f"peak RSS {slot['peak_rss_mib']:.0f} MiB"
    )


# -- report ---------------------------------------------------------------------------------------


def machine_description(threads: int) -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return (
        f"{os.cpu_count()} CPU cores ({cpu}), {mem_kib / 1024**2:.0f} GiB RAM, no GPU; "
        f"torch.set_num_threads({threads}) in both runners; Python {platform.python_version()}"
    )


def _fmt_time(slot: dict[str, Any]) -> str:
    if "attribute_seconds" in slot:
        return f"{slot['attribute_seconds']:.1f} ({slot['attribute_cpu_seconds']:.1f})"
    return str(slot.get("status", "not run"))


def _fmt_mem(slot: dict[str, Any]) -> str:
    if "peak_rss_mib" in slot:  # the child's own VmHWM, read right after the call
        return f"{slot['peak_rss_mib']:.0f} / {slot['rss_before_attribute_mib']:.0f}"
    if slot.get("max_rss_mib"):  # a run that failed: how far it got
        return f"≥ {slot['max_rss_mib']:.0f}"
    return "-"


def _load_text(records: list[RunRecord]) -> str:
    loads = [x for r in records for x in r.load_average]
    if not loads:
        return ""
    return (
        f"The machine was shared: the 1-minute load average when a run started was "
        f"{min(loads):.1f} to {max(loads):.1f}, on {os.cpu_count()} cores."
    )


def _fmt_kind(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"
    return (
        f"{stats['max_rel_err']:.1e} ({stats['n_over_tol']}/{stats['compared']}); "
        f"{stats['max_row_rel_err']:.1e}"
    )


def _fmt_ratio(rec: RunRecord, key: str) -> str:
    if key in rec.ct and key in rec.ag and rec.ct[key] > 0:
        return f"{rec.ag[key] / rec.ct[key]:.2f}"
    return "-"


def _transcoder_width(transcoders: Path) -> str:
    """Features per layer, read from layer 0's encoder bias (circuit-tracer layout)."""
    from safetensors import safe_open

    try:
        with safe_open(str(transcoders / "layer_0.safetensors"), framework="np") as f:
            return f"{f.get_slice('b_enc').get_shape()[0]:,}"
    except (OSError, KeyError):
        return "?"


def _active_per_token(records: list[RunRecord]) -> str:
    """', about N active per token and layer', from the shortest all-features run (BOS excluded)."""
    full = [r for r in records if r.max_feature_nodes is None and r.comparison]
    if not full:
        return ""
    rec = min(full, key=lambda r: r.n_tokens)
    n_features = (rec.comparison or {}).get("features", {}).get("ag_active")
    if not isinstance(n_features, int):
        return ""
    return f", about {n_features / ((rec.n_tokens - 1) * 6):.0f} active per token and layer"


def markdown(records: list[RunRecord], args: argparse.Namespace, command: str) -> str:
    today = dt.date.today().isoformat()
    ct_version = next((r.ct["version"] for r in records if "version" in r.ct), "0.5.0")
    lines = [
        START_MARK,
        "## attrgraph vs circuit-tracer",
        "",
        f"Measured {today} on {machine_description(args.threads)}. circuit-tracer {ct_version} "
        "(TransformerLens backend) runs in its own virtual environment (bench/.venv-ct, "
        "`bash bench/setup_circuit_tracer.sh`).",
        "",
        f"Model and transcoders: `{_rel(args.model)}`, `{_rel(args.transcoders)}` (built by "
        "`bench/make_fixture.py`: GPT-2 architecture, 6 layers, d_model 256, 4 heads, vocabulary 1024, "
        f"per-layer JumpReLU transcoders with {_transcoder_width(args.transcoders)} features per layer"
        + _active_per_token(records)
        + "). "
        f"Settings for both: max_n_logits={args.max_n_logits}, desired_logit_prob={args.desired_logit_prob}, "
        f"batch_size={args.batch_size}, float32, CPU"
        + (
            f"; attrgraph max_edges_per_target={args.max_edges_per_target}"
            if args.max_edges_per_target
            else ""
        )
        + ".",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        "**Agreement.** Every edge attrgraph kept whose two nodes circuit-tracer also has (nodes matched "
        "by interop id), against circuit-tracer's dense adjacency, split by the kind of source node. "
        f"Cell: max relative error |a-b| / max(|b|, {ROW_FLOOR:g}·max|row|) (edges over {REL_TOL:g} / "
        "edges compared); then max |a-b| / max|row|.",
        "",
        "| tokens | max_feature_nodes | feature nodes ct / ag / common | same logits | from features "
        "| from errors | from error at BOS | from tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rec in records:
        c = rec.comparison
        if not c:
            lines.append(f"| {rec.n_tokens} | {rec.max_feature_nodes or 'all'} | - | - | - | - | - | - |")
            continue
        f = c["features"]
        kinds = c["edges"]["by_source_kind"]
        cells = [_fmt_kind(kinds.get(k)) for k in ("feature", "error", "error@BOS", "token")]
        lines.append(
            f"| {rec.n_tokens} | {rec.max_feature_nodes or 'all'} | {f['ct']} / {f['ag']} / {f['common']} "
            f"| {'yes' if c['logits']['same_targets'] else 'no'} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "**Time and memory.** Wall seconds of `attribute()` (circuit-tracer) / `trace()` (attrgraph) only, "
        "model loading excluded, CPU seconds of the same call in parentheses (the machine is shared, so "
        "wall time is noisy); ratio attrgraph / circuit-tracer (< 1: attrgraph faster). Peak RSS of the "
        "whole process (its VmHWM, read right after the call) / RSS just before the call, MiB. "
        + _load_text(records),
        "",
        "| tokens | max_feature_nodes | circuit-tracer s | attrgraph s | ratio (wall) | ratio (CPU) "
        "| circuit-tracer peak RSS | attrgraph peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rec in records:
        lines.append(
            f"| {rec.n_tokens} | {rec.max_feature_nodes or 'all'} "
            f"| {_fmt_time(rec.ct)} | {_fmt_time(rec.ag)} | {_fmt_ratio(rec, 'attribute_seconds')} "
            f"| {_fmt_ratio(rec, 'attribute_cpu_seconds')} "
            f"| {_fmt_mem(rec.ct)} | {_fmt_mem(rec.ag)} |"
        )
    auto_notes = notes(records)
    if auto_notes:
        lines += ["", *auto_notes]
    if args.notes is not None and args.notes.exists():
        lines += ["", args.notes.read_text().rstrip("\n")]
    lines += ["", END_MARK]
    return "\n".join(lines)


def notes(records: list[RunRecord]) -> list[str]:
    out: list[str] = []
    for rec in records:
        c = rec.comparison
        tag = f"{rec.n_tokens} tokens, max_feature_nodes={rec.max_feature_nodes or 'all'}"
        for tool, slot in (("circuit-tracer", rec.ct), ("attrgraph", rec.ag)):
            if not slot.get("status", "").startswith("ok"):
                out.append(f"- {tag}: {tool} {slot.get('status', 'not run')}.")
        if not c:
            continue
        if not c["same_tokens"]:
            out.append(f"- {tag}: the two tools tokenised the prompt differently.")
        if not c["logits"]["same_targets"]:
            out.append(f"- {tag}: logit targets differ: ct {c['logits']['ct']}, ag {c['logits']['ag']}.")
        f = c["features"]
        if f["ct_active"] != f["ag_active"]:
            out.append(
                f"- {tag}: active features differ: circuit-tracer {f['ct_active']}, "
                f"attrgraph {f['ag_active']}."
            )
    return out


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_docs(
    path: Path, section: str, start: str = START_MARK, end: str = END_MARK, after: str | None = None
) -> None:
    """Replace the section between `start` and `end` in `path`; the first time, put it right after
    the marker `after` when the file has one, else at the end."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + section + tail
    elif after is not None and after in text:
        head, tail = text.split(after, 1)
        text = head + after + "\n\n" + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixture", type=Path, default=BENCH / "out" / "fixture")
    parser.add_argument("--model", type=Path, default=None, help="default: FIXTURE/model")
    parser.add_argument("--transcoders", type=Path, default=None, help="default: FIXTURE/transcoders")
    parser.add_argument("--prompts", type=Path, default=None, help="default: FIXTURE/prompts.json")
    parser.add_argument("--out-dir", type=Path, default=BENCH / "out")
    parser.add_argument("--ct-python", type=Path, default=BENCH / ".venv-ct" / "bin" / "python")
    parser.add_argument("--full-lengths", type=int, nargs="*", default=[16, 64],
                        help="prompt lengths run with max_feature_nodes=None")  # fmt: skip
    parser.add_argument("--capped-lengths", type=int, nargs="*", default=[16, 64, 256])
    parser.add_argument("--cap", type=int, default=2048, help="max_feature_nodes of the capped setting")
    parser.add_argument("--max-n-logits", type=int, default=10)
    parser.add_argument("--desired-logit-prob", type=float, default=0.95)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-edges-per-target", type=int, default=None,
                        help="attrgraph only; 0: keep all; default: the engine's")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per tool run")
    parser.add_argument(
        "--json-tokens", type=int, default=16, help="export circuit-tracer's JSON at this length"
    )
    parser.add_argument("--json-dir", type=Path, default=BENCH / "out", help="where ct_graph_N.json goes")
    parser.add_argument(
        "--reuse-ct", action="store_true", help="reuse circuit-tracer results already in OUT_DIR"
    )
    parser.add_argument("--write-docs", type=Path, default=None, help="e.g. docs/benchmarks.md")
    parser.add_argument(
        "--notes",
        type=Path,
        default=BENCH / "circuit_tracer_notes.md",
        help="markdown appended to the section",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: re-compare the saved outputs in OUT_DIR (results.json) and write the report",
    )
    args = parser.parse_args()
    args.model = args.model or args.fixture / "model"
    args.transcoders = args.transcoders or args.fixture / "transcoders"
    args.prompts = args.prompts or args.fixture / "prompts.json"
    args.settings = ["all", "capped"]
    command = "python " + shlex.join([_rel(Path(sys.argv[0])), *sys.argv[1:]])

    results_path = args.out_dir / "results.json"
    if args.report_only:
        saved = json.loads(results_path.read_text())
        command = saved["command"]
        records = [RunRecord(**r) for r in saved["records"]]
        for rec in records:
            tag = f"{'all' if rec.max_feature_nodes is None else 'capped'}_{rec.n_tokens}"
            ct_prefix, ag_prefix = args.out_dir / f"ct_{tag}", args.out_dir / f"ag_{tag}"
            if Path(f"{ct_prefix}.meta.json").exists() and Path(f"{ag_prefix}.meta.json").exists():
                rec.comparison = compare(ct_prefix, ag_prefix)
    else:
        if not args.ct_python.exists():
            raise SystemExit(f"{args.ct_python} not found: run bash bench/setup_circuit_tracer.sh first")
        records = []
        plan = [("all", n, None) for n in args.full_lengths] + [
            ("capped", n, args.cap) for n in args.capped_lengths
        ]
        for setting, n_tokens, mfn in plan:
            records.append(run_one(args, setting, n_tokens, mfn))
            saved = {"command": command, "records": [asdict(r) for r in records]}
            results_path.write_text(json.dumps(saved, indent=1))

    section = markdown(records, args, command)
    print(section)
    if args.write_docs is not None:
        write_docs(args.write_docs, section)
        print(f"wrote {args.write_docs}")


if __name__ == "__main__":
    main()
