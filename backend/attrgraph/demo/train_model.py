"""Train the demo language model: a small transformers GPT2LMHeadModel on the toy-world corpus.

nanoGPT-style: documents are packed into fixed windows (each window starts at a document's `<bos>`,
the tail is padding that the loss ignores), AdamW with warm-up and cosine decay, one fixed seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from attrgraph.demo.tokenizer import BOS, EOS, PAD, save_tokenizer

IGNORE = -100  # label of padding positions


@dataclass(frozen=True)
class ModelConfig:
    n_layer: int = 4
    d_model: int = 128
    n_head: int = 4
    n_ctx: int = 96  # n_positions; training windows have this length
    batch_size: int = 32
    steps: int = 2000
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0


def _id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    return int(tokenizer.convert_tokens_to_ids(token))  # type: ignore[arg-type]


def encode_documents(docs: list[str], tokenizer: PreTrainedTokenizerFast) -> list[list[int]]:
    """Token ids of each document: `<bos>` text `<eos>`."""
    bos, eos = _id(tokenizer, BOS), _id(tokenizer, EOS)
    encodings = tokenizer.backend_tokenizer.encode_batch(docs, add_special_tokens=False)
    return [[bos, *enc.ids, eos] for enc in encodings]


def pack_documents(docs: list[list[int]], n_ctx: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedily pack whole documents into windows of `n_ctx` tokens.

    Returns input ids (n_windows, n_ctx) and labels (n_windows, n_ctx): labels are the next token,
    IGNORE where the next token is padding (or past the window).
    """
    windows: list[list[int]] = []
    current: list[int] = []
    for doc in docs:
        doc = doc[:n_ctx]
        if len(current) + len(doc) > n_ctx:
            windows.append(current)
            current = []
        current = current + doc
    if current:
        windows.append(current)
    ids = torch.full((len(windows), n_ctx), pad_id, dtype=torch.long)  # (N, T)
    for i, w in enumerate(windows):
        ids[i, : len(w)] = torch.tensor(w)
    labels = torch.full_like(ids, IGNORE)  # (N, T): labels[:, t] = ids[:, t + 1]
    labels[:, :-1] = ids[:, 1:]
    labels[labels == pad_id] = IGNORE
    return ids, labels


def make_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    torch.manual_seed(cfg.seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_inner=4 * cfg.d_model,
        activation_function="gelu",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=_id(tokenizer, BOS),
        eos_token_id=_id(tokenizer, EOS),
        pad_token_id=_id(tokenizer, PAD),
        tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(config)


def lr_at(step: int, cfg: ModelConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def train_model(
    docs: list[str],
    tokenizer: PreTrainedTokenizerFast,
    cfg: ModelConfig,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
    on_checkpoint: Callable[[int, GPT2LMHeadModel], None] | None = None,
    checkpoint_every: int = 250,
) -> tuple[GPT2LMHeadModel, list[float]]:
    """Train a fresh model on `docs`; returns it (eval mode) and the loss every 50 steps.

    `on_checkpoint(step, model)` is called (model in eval mode, no grad) every `checkpoint_every` steps.
    """
    torch.manual_seed(cfg.seed)
    pad_id = _id(tokenizer, PAD)
    ids, labels = pack_documents(encode_documents(docs, tokenizer), cfg.n_ctx, pad_id)  # (N, T) each
    n_windows = ids.shape[0]
    log(f"model: {n_windows} windows of {cfg.n_ctx} tokens ({int((labels != IGNORE).sum())} targets)")
    model = make_model(cfg, tokenizer)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "wte" not in n and "wpe" not in n]
    no_decay = [
        p for n, p in model.named_parameters() if not (p.dim() >= 2 and "wte" not in n and "wpe" not in n)
    ]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    order_rng = random.Random(cfg.seed)
    order: list[int] = []
    losses: list[float] = []
    running = 0.0
    bar = tqdm(range(cfg.steps), desc="train model", disable=not show_progress, leave=False)
    for step in bar:
        if len(order) < cfg.batch_size:  # next epoch: a fresh permutation of the windows
            perm = list(range(n_windows))
            order_rng.shuffle(perm)
            order += perm
        batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
        x, y = ids[batch], labels[batch]  # (B, T), (B, T)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        logits = model(input_ids=x).logits  # (B, T, vocab)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE
        )
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        running = loss.item() if step == 0 else 0.95 * running + 0.05 * loss.item()
        if step % 50 == 0 or step == cfg.steps - 1:
            losses.append(round(running, 4))
            bar.set_postfix(loss=f"{running:.3f}")
        if on_checkpoint is not None and (step + 1) % checkpoint_every == 0:
            model.train(False)
            with torch.no_grad():
                on_checkpoint(step + 1, model)
            model.train()
    model.train(False)
    log(f"model: final smoothed loss {running:.3f}")
    return model, losses


def save_model(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    """config.json + model.safetensors + tokenizer files: a Hugging Face model directory."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    save_tokenizer(tokenizer, directory)
    gen = directory / "generation_config.json"
    if gen.exists():
        gen.unlink()


def model_config_dict(cfg: ModelConfig) -> dict[str, object]:
    return asdict(cfg)
