"""Run circuit-tracer 0.5.0 on one prompt and save its attribution graph. Runs INSIDE bench/.venv-ct.

    bench/.venv-ct/bin/python bench/ct_runner.py --model DIR --transcoders DIR --prompt-file F \
        --prompt-key 16 --out bench/out/ct_16 [--max-feature-nodes N] [--json-out bench/out]

The model directory is a Hugging Face model. A GPT-2 one is converted with TransformerLens'
`convert_gpt2_weights` and loaded through `ReplacementModel.from_config(HookedTransformerConfig,
TranscoderSet, tokenizer=...)` (backend "transformerlens"); any other (Llama: SmolLM2-135M, see
bench/make_smollm2_fixture.py) goes through circuit-tracer's nnsight backend,
`ReplacementModel.from_pretrained_and_transcoders(DIR, TranscoderSet, backend="nnsight")`, which reads
the directory with transformers (`--backend` overrides the choice). The transcoder directory is in the
circuit-tracer layout (config.yaml + layer_{i}.safetensors) and is loaded with circuit-tracer's own
`load_transcoder_set` (`--lazy-decoder`: decoders read from the files when used, circuit-tracer's
default for published sets).

Writes
    OUT.adjacency.npy   (n_nodes, n_nodes) float32, rows = targets, columns = sources, in circuit-tracer's
                        node order [selected features | errors (layer-major) | tokens | logits]
    OUT.meta.json       node ids (interop form `L_f_p`, `L_-1_p`, `E_t_p`, `{L+1}_v_p`), activations,
                        logit targets, timing (attribute() only), memory, logit sanity check
and, with --json-out, circuit-tracer's graph JSON export (`create_graph_files`) as JSON_OUT/ct_graph_N.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from transformers import AutoTokenizer, GPT2LMHeadModel


def proc_status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM, ...) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def hooked_config(hf_model: GPT2LMHeadModel, model_dir: Path, dtype: torch.dtype) -> Any:
    from transformer_lens import HookedTransformerConfig

    c = hf_model.config
    return HookedTransformerConfig(
        n_layers=c.n_layer,
        d_model=c.n_embd,
        d_head=c.n_embd // c.n_head,
        n_heads=c.n_head,
        d_mlp=c.n_inner or 4 * c.n_embd,
        d_vocab=c.vocab_size,
        n_ctx=c.n_positions,
        act_fn=c.activation_function,
        eps=c.layer_norm_epsilon,
        normalization_type="LN",
        positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel",
        model_name=model_dir.name,
        tokenizer_name=str(model_dir),
        default_prepend_bos=False,
        dtype=dtype,
        device="cpu",
    )


def load_transcoders(
    transcoder_dir: Path, n_layers: int, dtype: torch.dtype, scan: str, lazy_decoder: bool = False
) -> Any:
    """A per-layer set in the circuit-tracer layout, through circuit-tracer's own loader."""
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set

    tc_config = yaml.safe_load((transcoder_dir / "config.yaml").read_text())
    if tc_config["model_kind"] != "transcoder_set":
        raise SystemExit(f"ct_runner handles per-layer transcoder sets only, got {tc_config['model_kind']}")
    files = tc_config.get("transcoders") or [f"layer_{i}.safetensors" for i in range(n_layers)]
    return load_transcoder_set(
        {i: str(transcoder_dir / f) for i, f in enumerate(files)},
        scan=scan,
        feature_input_hook=tc_config["feature_input_hook"],
        feature_output_hook=tc_config["feature_output_hook"],
        device=torch.device("cpu"),
        dtype=dtype,
        lazy_encoder=False,
        lazy_decoder=lazy_decoder,
    )


def load_nnsight_model(
    model_dir: Path, transcoder_dir: Path, dtype: torch.dtype, scan: str, lazy_decoder: bool
) -> Any:
    """circuit-tracer's nnsight ReplacementModel for a local HF directory (Llama, Gemma, Qwen3)."""
    from circuit_tracer import ReplacementModel

    n_layers = int(json.loads((model_dir / "config.json").read_text())["num_hidden_layers"])
    transcoders = load_transcoders(transcoder_dir, n_layers, dtype, scan, lazy_decoder)
    return ReplacementModel.from_pretrained_and_transcoders(
        str(model_dir), transcoders, backend="nnsight", device=torch.device("cpu"), dtype=dtype
    )


def load_replacement_model(
    model_dir: Path, transcoder_dir: Path, dtype: torch.dtype, scan: str, lazy_decoder: bool = False
) -> tuple[Any, Any]:
    """circuit-tracer's ReplacementModel for a local HF GPT-2 directory, plus the HF model itself."""
    from circuit_tracer import ReplacementModel
    from transformer_lens.loading_from_pretrained import convert_gpt2_weights

    hf_model = GPT2LMHeadModel.from_pretrained(model_dir, torch_dtype=dtype)
    hf_model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    cfg = hooked_config(hf_model, model_dir, dtype)
    transcoders = load_transcoders(transcoder_dir, cfg.n_layers, dtype, scan, lazy_decoder)

    model = ReplacementModel.from_config(cfg, transcoders, tokenizer=tokenizer)
    # from_config builds a randomly initialised HookedTransformer and wraps its MLPs / unembedding
    # (blocks.L.mlp -> blocks.L.mlp.old_mlp, unembed -> unembed.old_unembed); load the converted HF
    # weights under those names. No LayerNorm folding, no centring: the model computes what HF computes.
    state = convert_gpt2_weights(hf_model, cfg)
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "blocks" and parts[2] == "mlp":
            key = ".".join([*parts[:3], "old_mlp", *parts[3:]])
        elif parts[0] == "unembed":
            key = "unembed.old_unembed." + ".".join(parts[1:])
        renamed[key] = value.detach().to(dtype)
    if "unembed.old_unembed.b_U" not in renamed:
        renamed["unembed.old_unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=dtype)
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    transcoder_keys = [k for k in missing if k.startswith("transcoders.")]
    real_missing = [k for k in missing if k not in transcoder_keys and not k.endswith(("mask", "IGNORE"))]
    if real_missing or unexpected:
        raise SystemExit(f"weight loading mismatch: missing={real_missing} unexpected={unexpected}")
    return model, hf_model


def node_ids(graph: Any, n_layers: int) -> list[str]:
    """Interop node ids in circuit-tracer's node order."""
    ids: list[str] = []
    for idx in graph.selected_features.tolist():
        layer, pos, feature = graph.active_features[idx].tolist()
        ids.append(f"{layer}_{feature}_{pos}")
    n_pos = graph.n_pos
    ids += [f"{layer}_-1_{pos}" for layer in range(n_layers) for pos in range(n_pos)]
    ids += [f"E_{int(tok)}_{pos}" for pos, tok in enumerate(graph.input_tokens.tolist())]
    ids += [f"{n_layers + 1}_{t.vocab_idx}_{n_pos - 1}" for t in graph.logit_targets]
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--transcoders", type=Path, required=True)
    parser.add_argument("--prompt-file", type=Path, required=True, help="JSON {key: prompt}")
    parser.add_argument("--prompt-key", required=True)
    parser.add_argument("--out", type=Path, required=True, help="output prefix")
    parser.add_argument("--max-n-logits", type=int, default=10)
    parser.add_argument("--desired-logit-prob", type=float, default=0.95)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-feature-nodes", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--scan", default="attrgraph-bench-fixture", help="transcoder set id in the JSON")
    parser.add_argument("--reference-logits", type=Path, default=None, help="fixture's reference_logits.pt")
    parser.add_argument(
        "--json-out", type=Path, default=None, help="also write circuit-tracer's graph JSON here"
    )
    parser.add_argument("--no-adjacency", action="store_true", help="time only; do not save the matrix")
    parser.add_argument(
        "--backend",
        choices=["auto", "transformerlens", "nnsight"],
        default="auto",
        help="auto: transformerlens for GPT-2 directories, nnsight for the rest",
    )
    parser.add_argument("--lazy-decoder", action="store_true", help="circuit-tracer's lazy_decoder")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    # attribute() allocates its edge matrix with the default dtype: match the model's.
    torch.set_default_dtype(dtype)
    model_dir: Path = args.model.resolve()
    prompt: str = json.loads(args.prompt_file.read_text())[args.prompt_key]

    backend = args.backend
    if backend == "auto":
        model_type = json.loads((model_dir / "config.json").read_text()).get("model_type")
        backend = "transformerlens" if model_type == "gpt2" else "nnsight"
    t0 = time.perf_counter()
    if backend == "nnsight":
        model = load_nnsight_model(model_dir, args.transcoders.resolve(), dtype, args.scan, args.lazy_decoder)
    else:
        model, hf_model = load_replacement_model(
            model_dir, args.transcoders.resolve(), dtype, args.scan, args.lazy_decoder
        )
    load_s = time.perf_counter() - t0
    input_ids = model.ensure_tokenized(prompt)  # prepends <bos> unless the text starts with one

    # Sanity: circuit-tracer's model reproduces the HF model's logits on this prompt. (The nnsight
    # backend runs the HF model itself: its logits through nnsight against the bare module's.)
    with torch.no_grad():
        if backend == "nnsight":
            from nnsight import save

            with model.trace(input_ids.unsqueeze(0)):
                traced = save(model.output.logits)
            ct_logits = traced[0]
            hf_logits = model._module(input_ids.unsqueeze(0)).logits[0]
        else:
            ct_logits = model(input_ids.unsqueeze(0))[0]
            hf_logits = hf_model(input_ids.unsqueeze(0)).logits[0]
    logit_diff = float((ct_logits - hf_logits).abs().max())
    ref_diff = None
    if args.reference_logits is not None and args.reference_logits.exists():
        reference = torch.load(args.reference_logits)
        if args.prompt_key in reference:
            ref_diff = float((ct_logits[-1] - reference[args.prompt_key]).abs().max())
    print(
        f"[ct] {len(input_ids)} tokens; max |logit(circuit-tracer) - logit(HF)| = {logit_diff:.2e}"
        + (f", vs fixture reference {ref_diff:.2e}" if ref_diff is not None else "")
    )
    if logit_diff > 1e-3:
        raise SystemExit("circuit-tracer's model does not reproduce the HF logits")
    if backend != "nnsight":
        del hf_model

    from circuit_tracer import attribute

    rss_before_kib = proc_status_kib("VmRSS")
    t0, cpu0 = time.perf_counter(), time.process_time()
    graph = attribute(
        input_ids,
        model,
        max_n_logits=args.max_n_logits,
        desired_logit_prob=args.desired_logit_prob,
        batch_size=args.batch_size,
        max_feature_nodes=args.max_feature_nodes,
        verbose=False,
    )
    attribute_s = time.perf_counter() - t0
    attribute_cpu_s = time.process_time() - cpu0
    hwm_kib = proc_status_kib("VmHWM")
    n_layers = model.cfg.n_layers
    print(
        f"[ct] attribute(): {attribute_s:.2f} s ({attribute_cpu_s:.2f} s CPU), "
        f"{len(graph.selected_features)} of {len(graph.active_features)} active features, "
        f"{len(graph.logit_targets)} logits, "
        f"peak RSS {hwm_kib / 1024:.0f} MiB"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    adjacency = graph.adjacency_matrix.numpy()
    if not args.no_adjacency:
        np.save(f"{args.out}.adjacency.npy", adjacency)
    selected = graph.selected_features
    meta = {
        "tool": "circuit-tracer",
        "version": __import__("circuit_tracer").__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "backend": backend,
        "lazy_decoder": args.lazy_decoder,
        "python": platform.python_version(),
        "prompt_key": args.prompt_key,
        "token_ids": input_ids.tolist(),
        "n_layers": n_layers,
        "settings": {
            "max_n_logits": args.max_n_logits,
            "desired_logit_prob": args.desired_logit_prob,
            "batch_size": args.batch_size,
            "max_feature_nodes": args.max_feature_nodes,
        },
        "n_active_features": len(graph.active_features),
        "n_selected_features": len(selected),
        "node_ids": node_ids(graph, n_layers),
        "activations": graph.activation_values[selected].tolist(),
        "logit_targets": [
            {"token_id": t.vocab_idx, "token": t.token_str, "probability": float(p)}
            for t, p in zip(graph.logit_targets, graph.logit_probabilities.tolist(), strict=True)
        ],
        "n_nonzero_edges": int(np.count_nonzero(adjacency)),
        "attribute_seconds": attribute_s,
        "attribute_cpu_seconds": attribute_cpu_s,
        "load_seconds": load_s,
        "rss_before_attribute_mib": rss_before_kib / 1024,
        "peak_rss_mib": hwm_kib / 1024,
        "max_abs_logit_diff_vs_hf": logit_diff,
        "max_abs_logit_diff_vs_reference": ref_diff,
    }
    Path(f"{args.out}.meta.json").write_text(json.dumps(meta))

    if args.json_out is not None:
        from circuit_tracer.utils.create_graph_files import create_graph_files

        slug = f"ct_graph_{args.prompt_key}"
        create_graph_files(graph, slug=slug, output_path=str(args.json_out.resolve()), scan=graph.scan)
        print(f"[ct] graph JSON written to {args.json_out / (slug + '.json')}")


if __name__ == "__main__":
    main()
