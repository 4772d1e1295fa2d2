"""Build the benchmark fixture: a small GPT-2-architecture model, its per-layer transcoders and prompts.

Everything is seeded and deterministic. The output directory holds

    model/                 a Hugging Face GPT-2 model directory (config.json, model.safetensors,
                           tokenizer.json, tokenizer_config.json); word-level tokenizer that prepends
                           <bos> (id 1: circuit-tracer needs a BOS token whose id is not 0)
    transcoders/           per-layer JumpReLU transcoders in the circuit-tracer layout (config.yaml,
                           layer_{i}.safetensors with W_enc, W_dec, b_enc, b_dec,
                           activation_function.threshold)
    prompts.json           {"16": "...", "64": "...", "256": "..."}: prompts of exactly that many
                           tokens, <bos> included
    reference_logits.pt    {"16": tensor(vocab), ...}: last-position logits of the HF model on each
                           prompt, computed in this project's environment (ct_runner checks
                           circuit-tracer's model against them)

The transcoders are not trained by gradient descent, but they are realistic enough for a benchmark:
encoder rows are random unit directions read from the normalised MLP input (TransformerLens
`ln2.hook_normalized`: the LayerNorm output before its gain and bias), each feature's JumpReLU
threshold is a quantile of its pre-activation over a calibration set (so a feature fires on 0.3%-6%
of tokens, tens of features per token and layer), and the decoder is the ridge-regression fit of
the true MLP output from the feature activations on that calibration set (so error nodes carry a
minority of the MLP output, as with trained transcoders).

--fold-mlp-norm folds ln_2's gain and bias into the MLP's first linear map: the same function, but
the normalised MLP input is then the same whether read before or after the norm's gain and bias
(tools that disagree on that convention can still be compared edge by edge).

--d-transcoder sets the transcoder width (default 2048), --n-ctx the model's number of positions
(default 1024) and --prompt-lengths the prompts written (default 16 64 256); e.g. the long-prompt
fixture of bench/long_prompt_memory.py:

    python bench/make_fixture.py --out bench/out/fixture-long --d-transcoder 4096 --n-ctx 4096 \
        --prompt-lengths 16 64 256 512 1024 2048

Usage:  python bench/make_fixture.py [--out bench/out/fixture] [--seed 0] [--fold-mlp-norm]
            [--d-transcoder 2048] [--n-ctx 1024] [--prompt-lengths 16 64 256]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<bos>", "<unk>"]  # ids 0, 1, 2
BOS_ID = 1
PROMPT_LENGTHS = (16, 64, 256)

N_LAYERS = 6
D_MODEL = 256
N_HEADS = 4
N_CTX = 1024
VOCAB_SIZE = 1024
D_TRANSCODER = 2048

CALIBRATION_SEQUENCES = 48
CALIBRATION_LENGTH = 128


def make_words(n: int, generator: torch.Generator) -> list[str]:
    """n distinct pronounceable pseudo-words (consonant-vowel syllables)."""
    consonants = "bdfgklmnprstvz"
    vowels = "aeiou"
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        n_syllables = int(torch.randint(1, 4, (1,), generator=generator))
        word = "".join(
            consonants[int(torch.randint(len(consonants), (1,), generator=generator))]
            + vowels[int(torch.randint(len(vowels), (1,), generator=generator))]
            for _ in range(n_syllables)
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def make_tokenizer(words: list[str], n_ctx: int = N_CTX) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", BOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<bos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=n_ctx,
    )


def blocks(model: GPT2LMHeadModel) -> list[Any]:
    """The transformer blocks (typed loosely: HF modules are dynamically typed)."""
    return list(model.transformer.h)


def make_model(seed: int, n_ctx: int = N_CTX) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_positions=n_ctx,
        n_embd=D_MODEL,
        n_layer=N_LAYERS,
        n_head=N_HEADS,
        n_inner=4 * D_MODEL,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=0.05,
        bos_token_id=BOS_ID,
        eos_token_id=BOS_ID,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    model.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        # Make it less uniform than a fresh initialisation: peaky attention, non-trivial LayerNorm
        # gains and biases (so "normalised input" conventions matter), a spread-out output distribution.
        model.transformer.wte.weight.normal_(0.0, 0.12, generator=generator)
        model.transformer.wpe.weight.normal_(0.0, 0.05, generator=generator)
        for block in blocks(model):
            qk = block.attn.c_attn.weight[:, : 2 * D_MODEL]
            qk.normal_(0.0, 0.12, generator=generator)
            for ln in (block.ln_1, block.ln_2):
                ln.weight.copy_(1.0 + 0.2 * torch.randn(D_MODEL, generator=generator))
                ln.bias.normal_(0.0, 0.1, generator=generator)
        model.transformer.ln_f.weight.copy_(1.0 + 0.2 * torch.randn(D_MODEL, generator=generator))
        model.transformer.ln_f.bias.normal_(0.0, 0.05, generator=generator)
    return model


@torch.no_grad()
def fold_mlp_norm(model: GPT2LMHeadModel) -> None:
    """Fold each ln_2's gain and bias into the MLP's first linear map (the model computes the same
    function; ln_2 becomes a plain normalisation). Then "the normalised MLP input" means the same
    thing whether it is read before or after the norm's gain and bias."""
    for block in blocks(model):
        gain, bias = block.ln_2.weight.clone(), block.ln_2.bias.clone()
        w = block.mlp.c_fc.weight  # Conv1D: (d_model, d_mlp), y = x @ w + b
        block.mlp.c_fc.bias.add_(bias @ w)
        w.mul_(gain[:, None])
        block.ln_2.weight.fill_(1.0)
        block.ln_2.bias.zero_()


@torch.no_grad()
def calibration_activations(
    model: GPT2LMHeadModel, generator: torch.Generator
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: normalised MLP inputs (ln_2 output before gain/bias) and MLP outputs, flattened."""
    first_word = len(SPECIAL_TOKENS)
    tokens = torch.randint(
        first_word, VOCAB_SIZE, (CALIBRATION_SEQUENCES, CALIBRATION_LENGTH), generator=generator
    )
    tokens[:, 0] = BOS_ID
    mlp_in: list[list[torch.Tensor]] = [[] for _ in range(N_LAYERS)]
    mlp_out: list[list[torch.Tensor]] = [[] for _ in range(N_LAYERS)]
    handles = []
    for layer, block in enumerate(blocks(model)):

        def grab_in(_module: torch.nn.Module, args: tuple[torch.Tensor], *, layer: int = layer) -> None:
            x = args[0]
            x = x - x.mean(-1, keepdim=True)
            x = x / (x.pow(2).mean(-1, keepdim=True) + model.config.layer_norm_epsilon).sqrt()
            mlp_in[layer].append(x[:, 1:].reshape(-1, D_MODEL))  # skip BOS, as attribution does

        def grab_out(
            _module: torch.nn.Module, _args: tuple[torch.Tensor], out: torch.Tensor, *, layer: int = layer
        ) -> None:
            mlp_out[layer].append(out[:, 1:].reshape(-1, D_MODEL))

        handles.append(block.ln_2.register_forward_pre_hook(grab_in))
        handles.append(block.mlp.register_forward_hook(grab_out))
    for chunk in torch.split(tokens, 8):
        model(chunk)
    for handle in handles:
        handle.remove()
    return [torch.cat(x) for x in mlp_in], [torch.cat(y) for y in mlp_out]


def fit_transcoder(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, d_transcoder: int = D_TRANSCODER
) -> dict[str, torch.Tensor]:
    """A JumpReLU transcoder for one layer from calibration inputs x and MLP outputs y."""
    w_enc = torch.randn(d_transcoder, D_MODEL, generator=generator)
    w_enc = w_enc / w_enc.norm(dim=1, keepdim=True)
    b_enc = 0.1 * torch.randn(d_transcoder, generator=generator)
    pre = x @ w_enc.T + b_enc
    # Firing rate per feature, log-uniform in [0.3%, 6%]; threshold = matching quantile (kept > 0).
    log_rate = torch.empty(d_transcoder).uniform_(math.log(0.003), math.log(0.06), generator=generator)
    quantiles = 1.0 - log_rate.exp()
    rank = (quantiles * (pre.shape[0] - 1)).round().long()
    threshold = pre.sort(dim=0).values[rank, torch.arange(d_transcoder)].clamp_min(0.05)
    acts = pre * (pre > threshold)
    # Decoder: ridge regression of (y - mean y) on the activations.
    b_dec = y.mean(0)
    gram = acts.T @ acts + 1e-2 * torch.eye(d_transcoder)
    w_dec = torch.linalg.solve(gram.double(), (acts.T @ (y - b_dec)).double()).float()
    return {
        "W_enc": w_enc.contiguous(),
        "W_dec": w_dec.contiguous(),
        "b_enc": b_enc.contiguous(),
        "b_dec": b_dec.contiguous(),
        "activation_function.threshold": threshold.contiguous(),
    }


def make_prompts(
    words: list[str], generator: torch.Generator, lengths: tuple[int, ...] = PROMPT_LENGTHS
) -> dict[str, str]:
    """Prompts of exactly n tokens (<bos> + n-1 words). Words repeat in short phrases, so that
    attention has something to latch on to."""
    phrases = [
        [words[int(i)] for i in torch.randint(len(words), (int(n),), generator=generator)]
        for n in torch.randint(3, 7, (40,), generator=generator)
    ]
    prompts: dict[str, str] = {}
    for n_tokens in lengths:
        out: list[str] = []
        while len(out) < n_tokens - 1:
            out.extend(phrases[int(torch.randint(len(phrases), (1,), generator=generator))])
        prompts[str(n_tokens)] = " ".join(out[: n_tokens - 1])
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "fixture")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fold-mlp-norm",
        action="store_true",
        help="fold ln_2 gain/bias into the MLP (a plain pre-MLP LayerNorm; same function)",
    )
    parser.add_argument("--d-transcoder", type=int, default=D_TRANSCODER, help="features per layer")
    parser.add_argument("--n-ctx", type=int, default=N_CTX, help="the model's positions")
    parser.add_argument(
        "--prompt-lengths", type=int, nargs="+", default=list(PROMPT_LENGTHS), help="tokens, <bos> included"
    )
    args = parser.parse_args()
    if max(args.prompt_lengths) > args.n_ctx:
        parser.error("a prompt length exceeds --n-ctx")
    torch.set_num_threads(2)

    out: Path = args.out
    model_dir, tc_dir = out / "model", out / "transcoders"
    model_dir.mkdir(parents=True, exist_ok=True)
    tc_dir.mkdir(parents=True, exist_ok=True)

    generator = torch.Generator().manual_seed(args.seed)
    words = make_words(VOCAB_SIZE - len(SPECIAL_TOKENS), generator)
    tokenizer = make_tokenizer(words, args.n_ctx)
    model = make_model(args.seed, args.n_ctx)
    if args.fold_mlp_norm:
        fold_mlp_norm(model)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    # transformers 5 writes tokenizer_class "TokenizersBackend", which transformers 4.x (circuit-tracer's
    # environment) does not know; "PreTrainedTokenizerFast" loads in both.
    tok_config_path = model_dir / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_config_path.write_text(json.dumps(tok_config, indent=2))

    xs, ys = calibration_activations(model, generator)
    n_active = []
    for layer in range(N_LAYERS):
        params = fit_transcoder(xs[layer], ys[layer], generator, args.d_transcoder)
        save_file(params, str(tc_dir / f"layer_{layer}.safetensors"))
        pre = xs[layer] @ params["W_enc"].T + params["b_enc"]
        acts = pre * (pre > params["activation_function.threshold"])
        recon = acts @ params["W_dec"] + params["b_dec"]
        fvu = ((recon - ys[layer]).pow(2).sum() / (ys[layer] - ys[layer].mean(0)).pow(2).sum()).item()
        n_active.append((acts > 0).sum(1).float().mean().item())
        print(f"layer {layer}: {n_active[-1]:.1f} active features/token, unexplained variance {fvu:.3f}")
    config = {
        "model_kind": "transcoder_set",
        "model_name": str(model_dir.resolve()),
        "feature_input_hook": "ln2.hook_normalized",
        "feature_output_hook": "hook_mlp_out",
    }  # no `transcoders:` list: readers fall back to layer_{i}.safetensors
    (tc_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    prompts = make_prompts(words, generator, tuple(args.prompt_lengths))
    reference_logits: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for n_tokens, prompt in prompts.items():
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            assert ids.shape[1] == int(n_tokens) and int(ids[0, 0]) == BOS_ID, (n_tokens, ids.shape)
            reference_logits[n_tokens] = model(ids).logits[0, -1].clone()
    (out / "prompts.json").write_text(json.dumps(prompts, indent=1))
    torch.save(reference_logits, out / "reference_logits.pt")
    first = next(iter(prompts))
    top = torch.softmax(reference_logits[first], -1).topk(5)
    probabilities = [round(p, 3) for p in top.values.tolist()]
    print(f"{first}-token prompt: top-5 next-token probabilities {probabilities}")
    print(f"fixture written to {out}")


if __name__ == "__main__":
    main()
