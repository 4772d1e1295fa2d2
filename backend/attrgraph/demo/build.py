"""`attrgraph demo build`: corpus -> tokenizer -> model -> transcoders -> dashboards -> metrics.

Deterministic for (size, seed) on one machine: every random draw comes from a seeded generator and
torch runs with a fixed number of threads. Writes into `out`:

    model/ transcoders/ dashboards/ metrics.json
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from attrgraph.bundled import DEMO_MODEL_NAME, demo_dashboards_dir, demo_model_dir, demo_transcoders_dir
from attrgraph.demo.corpus import World, eval_items, generate_documents, make_world
from attrgraph.demo.dallas import dallas_analysis
from attrgraph.demo.dashboards import build_dashboards
from attrgraph.demo.evaluate import behaviour_metrics, firing_counts, transcoder_metrics
from attrgraph.demo.tokenizer import PAD, build_tokenizer
from attrgraph.demo.train_model import ModelConfig, encode_documents, pack_documents, save_model, train_model
from attrgraph.demo.train_transcoders import TranscoderConfig, collect_mlp_activations, train_transcoders
from attrgraph.engine.transcoders import load_transcoders
from attrgraph.engine.transcoders.saving import save_transcoders


@dataclass(frozen=True)
class BuildSize:
    n_docs: int  # training corpus of the model
    model: ModelConfig
    transcoders: TranscoderConfig
    n_eval_tokens: int  # held-out tokens for transcoder quality and dashboards
    # One intra-op thread: on a shared 2-core machine two threads cost about five times the CPU time
    # per step (the model's matrices are small; synchronisation dominates). Fixed for determinism.
    threads: int = 1


SIZES: dict[str, BuildSize] = {
    "full": BuildSize(
        n_docs=250_000,
        model=ModelConfig(steps=4000, batch_size=16),
        transcoders=TranscoderConfig(steps=2000, n_tokens=150_000),
        n_eval_tokens=60_000,
    ),
    "ci": BuildSize(
        n_docs=3_000,
        model=ModelConfig(n_layer=2, d_model=64, n_ctx=64, steps=60, batch_size=16, warmup=10),
        transcoders=TranscoderConfig(steps=100, n_tokens=8_000, batch_size=256, dead_after=50, aux_k=32),
        n_eval_tokens=12_000,
    ),
}


def _windows(docs: list[str], tokenizer: Any, n_ctx: int, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed windows (N, T) holding about `n_tokens` real tokens, and their non-padding mask."""
    pad_id = tokenizer.convert_tokens_to_ids(PAD)
    ids, _ = pack_documents(encode_documents(docs, tokenizer), n_ctx, pad_id)
    mask = ids != pad_id
    per_window = mask.sum(1).cumsum(0)
    n = int((per_window < n_tokens).sum()) + 1
    return ids[:n], mask[:n]


def _transcoder_windows(world: World, tokenizer: Any, spec: BuildSize, seed: int) -> tuple[Tensor, Tensor]:
    """The transcoders' training tokens: fresh documents (seed + 1)."""
    n_tokens = spec.transcoders.n_tokens
    docs = generate_documents(world, max(1000, n_tokens // 8), seed + 1)
    return _windows(docs, tokenizer, spec.model.n_ctx, n_tokens)


def _eval_windows(world: World, tokenizer: Any, spec: BuildSize, seed: int) -> tuple[Tensor, Tensor]:
    """Held-out tokens for transcoder quality and dashboards (about `n_eval_tokens`): first every
    evaluation prompt with its answer, each alone at the start of a window (so a feature that fires
    when one of them is traced has dashboard examples), then fresh documents (seed + 2), packed."""
    pad_id = tokenizer.convert_tokens_to_ids(PAD)
    eval_docs = [item.prompt + item.answer for items in eval_items(world).values() for item in items]
    encoded = encode_documents(eval_docs, tokenizer)
    alone = torch.full((len(encoded), spec.model.n_ctx), pad_id, dtype=torch.long)  # (n_prompts, T)
    for row, doc in enumerate(encoded):
        doc = doc[: spec.model.n_ctx]
        alone[row, : len(doc)] = torch.tensor(doc)
    n_alone = int((alone != pad_id).sum())
    fresh = generate_documents(world, max(500, spec.n_eval_tokens // 8), seed + 2)
    packed, _ = _windows(fresh, tokenizer, spec.model.n_ctx, max(1, spec.n_eval_tokens - n_alone))
    ids = torch.cat([alone, packed])
    return ids, ids != pad_id


def build(
    out: Path,
    size: str = "full",
    seed: int = 0,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build everything into `out` (replacing model/, transcoders/, dashboards/ there).

    Training (corpus, model, transcoders) is followed by `finish`, which reads the saved model and
    transcoders back and writes dashboards and metrics.json. Torch's thread count and determinism
    flag are set for the build and restored afterwards.
    """
    with _torch_settings(SIZES[size]):
        spec = SIZES[size]
        torch.manual_seed(seed)
        started, cpu_started = time.perf_counter(), time.process_time()
        timings: dict[str, float] = {}
        stages = ["corpus", "model", "transcoders", "dashboards + metrics"]
        bar = tqdm(stages, desc=f"demo build ({size})", disable=not show_progress)

        def stage(name: str) -> None:
            timings[name] = round(time.perf_counter() - started - sum(timings.values()), 1)
            bar.update(1)
            bar.set_postfix_str(name)

        out.mkdir(parents=True, exist_ok=True)
        for sub in (demo_model_dir(out), demo_transcoders_dir(out), demo_dashboards_dir(out)):
            if sub.exists():
                shutil.rmtree(sub)
        model_cfg = ModelConfig(**{**asdict(spec.model), "seed": seed})
        tc_cfg = TranscoderConfig(**{**asdict(spec.transcoders), "seed": seed})

        world = make_world(seed)
        docs = generate_documents(world, spec.n_docs, seed)
        prompts = [item.prompt for items in eval_items(world).values() for item in items]
        tokenizer = build_tokenizer(docs + prompts, world.entity_words())
        stage("corpus")

        model, losses = train_model(docs, tokenizer, model_cfg, log=log, show_progress=show_progress)
        save_model(model, tokenizer, demo_model_dir(out))
        stage("model")

        tc_ids, tc_mask = _transcoder_windows(world, tokenizer, spec, seed)
        x_train, y_train = collect_mlp_activations(model, tc_ids, tc_mask, show_progress=show_progress)
        tc, tc_notes = train_transcoders(
            x_train, y_train, tc_cfg, name=f"{DEMO_MODEL_NAME}-plt", show_progress=show_progress
        )
        save_transcoders(tc, demo_transcoders_dir(out), model_name=DEMO_MODEL_NAME, overwrite=True)
        del x_train, y_train
        stage("transcoders")

        training = {
            "n_docs": spec.n_docs,
            "model_config": asdict(model_cfg),
            "transcoder_config": asdict(tc_cfg),
            "loss_curve": losses,
            "transcoder_training": tc_notes,
        }
        metrics = _finish(out, size, seed, show_progress, training)
        stage("dashboards + metrics")
        bar.close()
        metrics.update(
            timings_s=timings,
            wall_s=round(time.perf_counter() - started, 1),
            cpu_s=round(time.process_time() - cpu_started, 1),
        )
        _write_metrics(out, metrics)
        log(f"demo build ({size}) done in {metrics['wall_s']:.0f} s -> {out}")
        return metrics


@contextmanager
def _torch_settings(spec: BuildSize) -> Iterator[None]:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(spec.threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _write_metrics(out: Path, metrics: dict[str, Any]) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False) + "\n")


def finish(
    out: Path,
    size: str,
    seed: int,
    show_progress: bool = True,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Dashboards and metrics from the model and transcoders saved in `out` (deterministic).

    `training` (what the training stages recorded) is kept in metrics.json; without it, the
    training section of an existing metrics.json is kept.
    """
    with _torch_settings(SIZES[size]):
        return _finish(out, size, seed, show_progress, training)


def _finish(
    out: Path,
    size: str,
    seed: int,
    show_progress: bool,
    training: dict[str, Any] | None,
) -> dict[str, Any]:
    spec = SIZES[size]
    started = time.perf_counter()
    metrics_path = out / "metrics.json"
    old: dict[str, Any] = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    training = training or old.get("training", {})
    tokenizer = AutoTokenizer.from_pretrained(str(demo_model_dir(out)))
    model = AutoModelForCausalLM.from_pretrained(str(demo_model_dir(out)))
    model.train(False)
    tc = load_transcoders(demo_transcoders_dir(out))
    world = make_world(seed)

    tc_ids, tc_mask = _transcoder_windows(world, tokenizer, spec, seed)
    x_train, _ = collect_mlp_activations(model, tc_ids, tc_mask, show_progress=show_progress)
    fire_counts = [firing_counts(tc, layer, x) for layer, x in enumerate(x_train)]  # dead: never fires
    del x_train
    ev_ids, ev_mask = _eval_windows(world, tokenizer, spec, seed)
    x_eval, y_eval = collect_mlp_activations(model, ev_ids, ev_mask, show_progress=show_progress)

    dashboards_dir = demo_dashboards_dir(out)
    if dashboards_dir.exists():
        shutil.rmtree(dashboards_dir)
    dash_stats = build_dashboards(
        model,
        tokenizer,
        tc,
        world,
        ev_ids,
        ev_mask,
        dashboards_dir,
        seed=seed,
        show_progress=show_progress,
    )
    tc_quality = transcoder_metrics(tc, x_eval, y_eval, fire_counts)
    for row, note in zip(tc_quality, training.get("transcoder_training", []), strict=False):
        row.update({k: v for k, v in note.items() if k != "layer"})
    behaviour = behaviour_metrics(model, tokenizer, world)
    dallas = dallas_analysis(model, tokenizer, tc, world, out)

    metrics: dict[str, Any] = {
        "size": size,
        "seed": seed,
        "threads": spec.threads,
        "vocab_size": len(tokenizer),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "transcoder_config": training.get("transcoder_config", asdict(spec.transcoders)),
        "behaviour": behaviour,
        "transcoders": tc_quality,
        "dashboards": dash_stats,
        "dallas": dallas,
        "world": {
            "n_states": len(world.states),
            "n_cities": len(world.cities),
            "two_hop_held_out": list(world.two_hop_held_out),
            "antonyms_held_out": [list(x) for x in world.antonyms_held_out],
        },
        "training": training,
        "finish_s": round(time.perf_counter() - started, 1),
        "sizes_bytes": {
            name: sum(p.stat().st_size for p in (out / name).rglob("*") if p.is_file())
            for name in ("model", "transcoders", "dashboards")
        },
    }
    for key in ("timings_s", "wall_s", "cpu_s"):  # kept from the build that trained these files
        if key in old:
            metrics[key] = old[key]
    _write_metrics(out, metrics)
    return metrics
