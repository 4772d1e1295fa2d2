"""A scripted tracing backend for the browser tests: the two-hop "Dallas" circuit, deterministically.

`attrgraph worker --tracer tests.support.dallas:DallasTracer` serves a model "dallas-demo" whose
graph for any prompt has the shape of the textbook example (Dallas -> Texas -> say Austin, with a
"say a capital" path), plus filler features, error nodes and dashboards for every feature. It needs
no torch and traces in about a second with visible progress, so the browser tests check the page,
not the engine (tests/e2e/browser/test_real_model.py runs the real demo model when it is built).
"""

from __future__ import annotations

import random
import re
import time
import zlib
from typing import Any

from attrgraph.format.synthetic import document, embedding_node, error_node, feature_node, level, logit_node
from attrgraph.protocol.records import AttentionPayload, InterventionPayload, TracePayload
from attrgraph.protocol.schemas import ModelInfo, Prediction, Token, TranscoderInfo
from attrgraph.settings import Settings
from attrgraph.worker.tracer import Progress, UserError

MODEL = "dallas-demo"
TRANSCODERS = "dallas-plt"
N_LAYERS = 6
D_TRANSCODER = 512
VOCAB = 5000
DALLAS_PROMPT = "Fact: the capital of the state containing Dallas is"
OUTPUTS = [(" Austin", 0.62), (" Texas", 0.11), (" the", 0.06), (" Dallas", 0.04), (" a", 0.03)]
# The scripted attention: layer 0 head 3 carries most of every edge that crosses positions (as in the
# demo model, where it brings " Dallas" to " is"); ablating it costs " Austin" this much logit.
TOP_HEAD = (0, 3)
HEAD_SHARES = [((0, 3), 0.78, 0.73), ((0, 0), 0.15, 0.11), ((1, 2), 0.07, 0.2)]  # head, share, pattern
HEAD_ABLATION_AUSTIN = 4.0
TOKEN_RE = re.compile(r"<[a-z_]+>| ?[A-Za-z]+| ?\d+| ?[^\sA-Za-z\d]|\s+")  # <start_of_turn>: one token


def token_id(text: str) -> int:
    return zlib.crc32(text.encode()) % VOCAB


def tokenize_text(prompt: str) -> list[str]:
    return ["<bos>", *TOKEN_RE.findall(prompt)]


# The circuit: (key, layer, token to sit on (last match; "$" = last position), feature index, label,
# activation). Filler features are added around it.
CIRCUIT = [
    ("dallas0", 0, " Dallas", 17, "Dallas", 9.1),
    ("dallas1", 1, " Dallas", 233, "Dallas/Houston (Texas cities)", 6.4),
    ("texas_d", 2, " Dallas", 88, "Texas", 7.7),
    ("capital0", 0, " capital", 41, "capital", 8.3),
    ("capital1", 1, " capital", 302, "capital cities", 5.2),
    ("state2", 2, " state", 150, "state / province", 4.9),
    ("texas_l", 3, "$", 88, "Texas", 5.6),
    ("say_cap", 3, "$", 409, "say a capital", 6.8),
    ("say_austin", 4, "$", 12, "say Austin", 10.2),
    ("say_austin5", 5, "$", 277, "say Austin", 7.3),
]
# (source key, target key, weight); "E:tok" is the embedding of tok, "L:tok" an output logit.
CIRCUIT_LINKS = [
    ("E: Dallas", "dallas0", 6.0),
    ("E: Dallas", "dallas1", 2.1),
    ("dallas0", "dallas1", 3.4),
    ("dallas0", "texas_d", 1.9),
    ("dallas1", "texas_d", 4.2),
    ("texas_d", "texas_l", 3.6),
    ("dallas1", "texas_l", 1.1),
    ("E: capital", "capital0", 5.5),
    ("capital0", "capital1", 2.7),
    ("capital1", "say_cap", 2.2),
    ("state2", "say_cap", 1.4),
    ("E: state", "state2", 3.1),
    ("E: is", "say_cap", 1.0),
    ("texas_l", "say_austin", 4.4),
    ("say_cap", "say_austin", 3.0),
    ("texas_d", "say_austin", 1.2),
    ("say_austin", "say_austin5", 3.9),
    ("texas_l", "say_austin5", 1.3),
    ("say_cap", "L: Texas", -1.6),
    ("say_austin", "L: Austin", 5.1),
    ("say_austin5", "L: Austin", 6.2),
    ("texas_l", "L: Texas", 3.0),
    ("texas_l", "L: Austin", 1.5),
    ("say_cap", "L: Austin", 1.8),
    ("E: Dallas", "L: Dallas", 1.2),
]
FILLER_LABELS = [
    "punctuation",
    "start of a fact",
    "definite article",
    "preposition 'of'",
    "relation words",
    "US geography",
    "containment",
    "proper nouns",
    "copula 'is'",
    "end of clause",
    "place names",
    "question-like context",
    "list of facts",
    "city names",
    "short words",
]


class DallasTracer:
    def __init__(self, settings: Settings | None = None, step_s: float = 0.08, steps: int = 12) -> None:
        self.step_s = step_s
        self.steps = steps

    def load(self) -> list[ModelInfo]:
        tc = TranscoderInfo(
            name=TRANSCODERS,
            id="dallas-plt",
            revision="r1",
            n_layers=N_LAYERS,
            d_transcoder=D_TRANSCODER,
            has_dashboards=True,
        )
        return [
            ModelInfo(
                name=MODEL,
                model_id="dallas-demo-model",
                revision="r1",
                engine_version="scripted-1",
                n_layers=N_LAYERS,
                transcoders=[tc],
                default_transcoders=TRANSCODERS,
                chat_template=True,
            )
        ]

    def tokenize(self, model: str, prompt: str) -> list[Token]:
        if "<reject>" in prompt:
            raise UserError("this prompt is rejected by the scripted backend")
        return [Token(id=token_id(t), text=t) for t in tokenize_text(prompt)]

    def render_chat(self, model: str, messages: list[dict[str, str]]) -> str:
        """Gemma's turn layout (the BOS is the tokenizer's)."""
        turns = "".join(f"<start_of_turn>{m['role']}\n{m['content']}<end_of_turn>\n" for m in messages)
        return turns + "<start_of_turn>model\n"

    def predict(self, model: str, token_ids: list[int], top_k: int) -> list[Prediction]:
        return [Prediction(id=token_id(t), text=t, probability=p) for t, p in OUTPUTS[:top_k]]

    def trace(self, job: TracePayload, progress: Progress) -> dict[str, Any]:
        progress("forward", 0, 1)
        time.sleep(self.step_s)
        progress("forward", 1, 1)
        for step in range(self.steps):
            progress("features", step, self.steps)
            time.sleep(self.step_s)
        progress("features", self.steps, self.steps)
        progress("prune", 0, 1)
        graph = dallas_graph(job.prompt)
        progress("prune", 1, 1)
        return graph

    def intervene(self, job: InterventionPayload, progress: Progress) -> dict[str, Any]:
        from tests.support.dallas_interventions import scripted_intervention

        progress("intervene", 0, 1)
        time.sleep(self.step_s)
        return scripted_intervention(job)

    def attention(self, job: AttentionPayload, graph: dict[str, Any], progress: Progress) -> dict[str, Any]:
        from tests.support.dallas_attention import scripted_attention

        progress("forward", 0, 1)
        time.sleep(self.step_s)
        return scripted_attention(job, graph)

    def feature(self, transcoders: str, layer: int, index: int) -> dict[str, Any] | None:
        if transcoders != TRANSCODERS or not (0 <= layer < N_LAYERS and 0 <= index < D_TRANSCODER):
            return None
        return dashboard(layer, index)


def label_for(layer: int, index: int) -> str:
    for _, c_layer, _, c_index, label, _ in CIRCUIT:
        if (c_layer, c_index) == (layer, index):
            return label
    return FILLER_LABELS[(layer * 31 + index) % len(FILLER_LABELS)]


def dallas_graph(prompt: str, n_filler: int = 70, seed: int = 0) -> dict[str, Any]:
    """The graph JSON (Neuronpedia / circuit-tracer format) for `prompt`."""
    rng = random.Random(seed)
    tokens = tokenize_text(prompt)
    n_pos = len(tokens)
    last = n_pos - 1

    def position_of(token: str) -> int:
        if token == "$":
            return last
        matches = [i for i, t in enumerate(tokens) if t == token]
        return matches[-1] if matches else max(1, last - 1)

    nodes: list[dict[str, Any]] = []
    by_key: dict[str, str] = {}
    for pos, tok in enumerate(tokens):
        nodes.append(embedding_node(tok, token_id(tok), pos))
        by_key[f"E:{tok}"] = nodes[-1]["node_id"]  # last occurrence
    rank = 0.02

    def add_feature(layer: int, pos: int, index: int, label: str, activation: float, influence: float) -> str:
        node = feature_node(
            layer, index, pos, label=label, activation=activation, influence=round(influence, 4)
        )
        nodes.append(node)
        return str(node["node_id"])

    for key, layer, tok, index, label, act in CIRCUIT:
        by_key[key] = add_feature(layer, position_of(tok), index, label, act, rank)
        rank += 0.035
    used = {n["node_id"] for n in nodes}
    fillers: list[str] = []
    while len(fillers) < n_filler:
        layer = rng.randrange(N_LAYERS)
        pos = rng.randrange(1, n_pos)
        index = rng.randrange(D_TRANSCODER)
        node_id = f"{layer}_{index}_{pos}"
        if node_id in used:
            continue
        used.add(node_id)
        influence = min(0.99, 0.4 + 0.6 * len(fillers) / n_filler)
        # Every fifth filler comes unlabelled, as graphs traced without labels do: the page
        # shows "L{layer} #{index}" until the feature's dashboard supplies one.
        label = "" if len(fillers) % 5 == 0 else label_for(layer, index)
        fillers.append(add_feature(layer, pos, index, label, round(rng.uniform(0.5, 6), 3), influence))
    # The layer-3 "Texas" feature also fires at "state" (another position of the same feature).
    if f"3_88_{position_of(' state')}" not in {n["node_id"] for n in nodes}:
        fillers.append(add_feature(3, position_of(" state"), 88, "Texas", 2.1, 0.5))
    for layer in (1, 3, 4):
        nodes.append(
            error_node(layer, last, label=f'Err: mlp "{tokens[last]}"', influence=0.3 + 0.05 * layer)
        )
    for i, (tok, prob) in enumerate(OUTPUTS):
        nodes.append(
            logit_node(tok, token_id(tok), last, n_layers=N_LAYERS, probability=prob, is_target=i == 0)
        )
        by_key[f"L:{tok}"] = nodes[-1]["node_id"]

    def ref(key: str) -> str:
        if key.startswith(("E:", "L:")):
            kind, tok = key.split(":", 1)
            return by_key.get(f"{kind}:{tok}") or by_key[f"{kind}: is" if kind == "E" else "L: Austin"]
        return by_key[key]

    layer_of = {n["node_id"]: level(n) for n in nodes}
    pos_of = {n["node_id"]: n["ctx_idx"] for n in nodes}
    links: dict[tuple[str, str], float] = {}
    for source, target, weight in CIRCUIT_LINKS:
        links[(ref(source), ref(target))] = weight
    candidates = [n["node_id"] for n in nodes]
    # Errors, like embeddings, are pure sources: no links go into them.
    for target in [*fillers, *(by_key[k] for k, *_ in CIRCUIT), *(by_key[f"L:{t}"] for t, _ in OUTPUTS)]:
        sources = [s for s in candidates if layer_of[s] < layer_of[target] and pos_of[s] <= pos_of[target]]
        for source in rng.sample(sources, min(len(sources), 4)):
            links.setdefault((source, target), round(rng.uniform(-0.9, 0.9), 3))
    link_list = [
        {"source": s, "target": t, "weight": w}
        for (s, t), w in sorted(links.items(), key=lambda kv: kv[0][::-1])
    ]
    graph = document(
        prompt,
        tokens,
        nodes,
        link_list,
        slug="dallas",
        scan=MODEL,
        transcoder_list=[],
        info={"generator": {"name": "tests.browser.dallas", "version": "1"}},
        node_threshold=0.8,
    )
    graph["qParams"].update(clickedId="", sg_pos="")
    return graph


def dashboard(layer: int, index: int) -> dict[str, Any]:
    """A feature dashboard in the Neuronpedia feature-detail shape (plus `label`)."""
    rng = random.Random(layer * 100_003 + index)
    label = label_for(layer, index)
    focus = label.split()[-1].strip("()'/") or "is"
    sentences = [
        "Dallas is a large city in the state of Texas",
        "The capital of Texas is Austin , not Dallas",
        "Houston and Dallas are both in Texas",
        "Fact : the capital of the state containing Dallas is Austin",
        "Sacramento is the capital of California",
        "He drove from Dallas to Austin in the morning",
    ]
    pool = [s for s in sentences if focus.lower() in s.lower()] or sentences
    examples = []
    for k in range(10):
        words = rng.choice(pool if k < 6 else sentences).split(" ")
        tokens = ["<bos>", *(w if i == 0 else " " + w for i, w in enumerate(words))]
        peak = next(
            (i for i, t in enumerate(tokens) if focus.lower() in t.lower()), rng.randrange(1, len(tokens))
        )
        top = round(10.0 - k * 0.7, 2)
        acts = [
            0.0 if i == 0 else round(max(0.0, top - abs(i - peak) * 3.1 - rng.random()), 2)
            for i in range(len(tokens))
        ]
        acts[peak] = top
        examples.append({"tokens": tokens, "tokens_acts_list": acts, "max_token_index": peak})
    counts = [int(400 * 0.55**b) + rng.randrange(3) for b in range(16)]
    return {
        "index": index,
        "layer": layer,
        "label": label,
        "label_source": "scripted",
        "examples_quantiles": [
            {"quantile_name": "Top activations", "examples": examples[:6]},
            {"quantile_name": "Subsample interval 0", "examples": examples[6:]},
        ],
        "top_logits": [" Austin", " Texas", " Houston", " capital", " state"],
        "top_logit_values": [1.9, 1.2, 0.8, 0.5, 0.3],
        "bottom_logits": [" Sacramento", " California", " the", " of", ","],
        "bottom_logit_values": [-1.4, -1.1, -0.6, -0.4, -0.2],
        "act_min": 0.0,
        "act_max": 10.0,
        "activation_frequency": 0.012,
        "histogram": {"counts": counts, "edges": [round(10 * b / 16, 3) for b in range(17)]},
        "top_tokens": [" Dallas", " Texas", " Houston"],
    }
