"""A fake tracing backend and synthetic graphs, for tests and benchmarks of the service.

`FakeTracer` behaves like a model-backed one (tokenize, predict, trace with progress, dashboards)
but needs no torch and takes as long as it is told to, so queue behaviour (joins, cancellation,
crashed workers) can be tested quickly and deterministically:

    attrgraph worker --tracer attrgraph.worker.fake_tracer:FakeTracer

Environment: ATTRGRAPH_FAKE_STEPS (progress steps per trace), ATTRGRAPH_FAKE_STEP_S (seconds per
step), ATTRGRAPH_FAKE_LOG (a file that gets one line per trace started, to count computations).
"""

from __future__ import annotations

import os
import random
import time
import zlib
from typing import Any

from attrgraph.format.synthetic import synthetic_graph
from attrgraph.protocol.records import AttentionPayload, InterventionPayload, TracePayload
from attrgraph.protocol.schemas import ModelInfo, Prediction, Token, TranscoderInfo
from attrgraph.settings import Settings
from attrgraph.worker.tracer import Progress, UserError

FAKE_MODEL = "fake"
FAKE_TRANSCODERS = "fake-tc"
VOCAB = 1000
FAKE_BYTES_PER_NODE_TOKEN = 1000


def _token_id(word: str) -> int:
    return zlib.crc32(word.encode()) % VOCAB


class FakeTracer:
    def __init__(self, settings: Settings | None = None) -> None:
        self.steps = int(os.environ.get("ATTRGRAPH_FAKE_STEPS", "5"))
        self.step_s = float(os.environ.get("ATTRGRAPH_FAKE_STEP_S", "0.01"))
        self.log = os.environ.get("ATTRGRAPH_FAKE_LOG")
        self.traces = 0
        self.interventions = 0
        self.memory_limit = settings.memory_limit_bytes if settings is not None else None
        self.attentions = 0

    def load(self) -> list[ModelInfo]:
        transcoders = TranscoderInfo(
            name=FAKE_TRANSCODERS,
            id="fake-transcoders",
            revision="r1",
            n_layers=2,
            d_transcoder=100,
            has_dashboards=True,
        )
        return [
            ModelInfo(
                name=FAKE_MODEL,
                model_id="fake-model",
                revision="r1",
                engine_version="fake-1",
                n_layers=2,
                transcoders=[transcoders],
                default_transcoders=FAKE_TRANSCODERS,
                chat_template=True,
                memory_budget_bytes=self.memory_limit,
            )
        ]

    def estimate(
        self, model: str, transcoders: str, n_tokens: int, settings: dict[str, Any]
    ) -> dict[str, Any]:
        """A made-up estimate: FAKE_BYTES_PER_NODE_TOKEN per feature node and token, against
        ATTRGRAPH_MEMORY_LIMIT_BYTES (no limit: fits is None)."""
        nodes = settings.get("max_feature_nodes") or 100
        peak = FAKE_BYTES_PER_NODE_TOKEN * nodes * n_tokens
        fits = None if self.memory_limit is None else peak <= self.memory_limit
        return {
            "peak_bytes": peak,
            "seconds": 0.001 * n_tokens,
            "fits": fits,
            "budget_bytes": self.memory_limit,
            "batch_size": 64,
            "dominant": "edges",
            "advice": None if fits is not False else "lower max_feature_nodes, or shorten the prompt",
        }

    def tokenize(self, model: str, prompt: str) -> list[Token]:
        if "<reject>" in prompt:
            raise UserError("this prompt is rejected by the fake backend")
        words = prompt.split() or [prompt]
        return [Token(id=_token_id(w), text=w) for w in words]

    def render_chat(self, model: str, messages: list[dict[str, str]]) -> str:
        """A made-up template: one `role: content` line per message, then `assistant:`."""
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        if messages[-1]["role"] != "assistant":
            lines.append("assistant:")
        return "\n".join(lines)

    def predict(self, model: str, token_ids: list[int], top_k: int) -> list[Prediction]:
        rng = random.Random(sum(token_ids))
        return [
            Prediction(id=rng.randrange(VOCAB), text=f"tok{i}", probability=0.5 / (i + 1))
            for i in range(top_k)
        ]

    def trace(self, job: TracePayload, progress: Progress) -> dict[str, Any]:
        self.traces += 1
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()} {job.prompt}\n")
        for step in range(self.steps):
            progress("attribution", step, self.steps)
            time.sleep(self.step_s)
        progress("attribution", self.steps, self.steps)
        return synthetic_graph(job.prompt, job.prompt.split() or [job.prompt], n_features=20)

    def intervene(self, job: InterventionPayload, progress: Progress) -> dict[str, Any]:
        """A made-up result whose "after" depends on the interventions (ablating anything lowers the
        top token); `value` 13 raises a UserError, as an engine refusing an intervention would."""
        self.interventions += 1
        for step in range(self.steps):
            progress("intervene", step, self.steps)
            time.sleep(self.step_s)
        values = [float(getattr(iv, "value", 0.0)) for iv in job.interventions]
        if 13 in values:
            raise UserError("the fake backend refuses the value 13")
        shift = sum(
            0.05 if iv.mode in ("ablate", "ablate_head") else 0.01 * value
            for iv, value in zip(job.interventions, values, strict=True)
        )
        p_before = 0.5
        p_after = min(max(p_before - shift, 0.0), 1.0)

        def pred(p: float) -> dict[str, Any]:
            return {
                "top": [{"token_id": 1, "token": "x", "prob": p}],
                "continuation": "x",
                "continuation_ids": [1],
            }

        return {
            "before": pred(p_before),
            "after": pred(p_after),
            "kl_divergence": abs(p_before - p_after),
            "probability_changes": [{"token_id": 1, "token": "x", "before": p_before, "after": p_after}],
        }

    def attention(self, job: AttentionPayload, graph: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """One made-up head per edge (all of its weight) or one pair per head hop; a node the graph
        lacks raises a UserError, as the engine's refusal would."""
        self.attentions += 1
        progress("attention", 0, 1)
        ids = {n["node_id"] for n in graph["nodes"]}
        if job.edge is not None:
            if not {job.edge.source, job.edge.target} <= ids:
                raise UserError("the graph has no such node")
            loading = {"layer": 0, "head": 0, "key_pos": 0, "loading": 1.0, "pattern": 0.5, "share": 1.0}
            return {
                "source": job.edge.source,
                "target": job.edge.target,
                "weight": 1.0,
                "head_loadings": [loading],
            }
        head = job.head
        assert head is not None
        pair = [sorted(ids)[0], sorted(ids)[-1], 1.0]
        return {
            "layer": head.layer,
            "head": head.head,
            "query_pos": head.query_pos,
            "key_pos": head.key_pos,
            "score": 1.5,
            "bias": 0.5,
            "qk_tracing_results": {
                "pair_wise_contributors": [pair],
                "top_q_marginal_contributors": [pair[::2]],
                "top_k_marginal_contributors": [pair[1:]],
            },
        }

    def feature(self, transcoders: str, layer: int, index: int) -> dict[str, Any] | None:
        if transcoders != FAKE_TRANSCODERS or not (0 <= layer < 2 and 0 <= index < 100):
            return None
        return {
            "index": index,
            "layer": layer,
            "label": f"fake feature {layer}/{index}",
            "top_logits": ["a", "b"],
        }
