"""The real engine behind the worker: a tiny random model and transcoders, traced end to end."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM

from attrgraph.engine.transcoders.saving import save_transcoders
from attrgraph.protocol.interventions import InterventionItem, InterventionSettings
from attrgraph.protocol.records import InterventionPayload, TracePayload
from attrgraph.protocol.schemas import GraphSettings
from attrgraph.settings import ModelSpec, Settings
from attrgraph.worker.torch_tracer import TorchTracer
from attrgraph.worker.tracer import UserError
from tests.support.models import make_tiny_model
from tests.support.services import (
    ApiServer,
    WorkerThread,
    clear_prefix,
    sse_events,
    torch_tracer_settings,
)
from tests.support.transcoders import tiny_plt_transcoders

N_LAYERS, D_MODEL = 2, 64


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    root = tmp_path_factory.mktemp("tiny")
    model_dir = make_tiny_model("gpt2", root / "model", n_layers=N_LAYERS, d_model=D_MODEL)
    tc = tiny_plt_transcoders(n_layers=N_LAYERS, d_model=D_MODEL)
    tc_dir = save_transcoders(tc, root / "transcoders", model_name="tiny-gpt2")
    return ModelSpec(name="tiny", path=str(model_dir), transcoders={"tiny-plt": str(tc_dir)})


@pytest.fixture
def engine_settings(redis_url: str, tiny_spec: ModelSpec) -> Iterator[Settings]:
    s = torch_tracer_settings(redis_url, tiny_spec)
    yield s
    clear_prefix(redis_url, s.key_prefix)


def test_engine_worker_traces_a_prompt(engine_settings: Settings, tiny_spec: ModelSpec) -> None:
    backend = TorchTracer(engine_settings)
    with (
        ApiServer(engine_settings) as api,
        WorkerThread(engine_settings, backend),
        httpx.Client(base_url=api.url) as c,
    ):
        (model,) = c.get("/api/models").json()["models"]
        assert model["name"] == "tiny" and model["transcoders"][0]["id"] == "tiny-random-plt"

        tokens = c.post("/api/tokenize", json={"prompt": "The capital of France is", "top_k": 3}).json()
        # The predictions are the model's own: the top 3 of a softmax over its last-position logits,
        # computed here without the worker, most likely first.
        ids = [t["id"] for t in tokens["tokens"]]
        reference = AutoModelForCausalLM.from_pretrained(tiny_spec.path).eval()
        with torch.no_grad():
            logits = reference(torch.tensor([ids])).logits[0, -1].double()
        top = torch.softmax(logits, dim=-1).topk(3)
        predictions = tokens["predictions"]
        assert [p["id"] for p in predictions] == top.indices.tolist()
        assert [p["probability"] for p in predictions] == pytest.approx(top.values.tolist(), rel=1e-4)

        body = {
            "prompt": "The capital of France is",
            "settings": {"max_feature_nodes": 64, "max_n_logits": 2},
        }
        accepted = c.post("/api/graphs", json=body).json()
        events = sse_events(c, accepted["events_url"])
        assert events[-1][0] == "done", events[-3:]
        phases = {data["phase"] for name, data in events if name == "progress"}
        assert "prune" in phases and len(phases) >= 2
        graph = c.get(f"/api/graphs/{accepted['graph_id']}").json()
        assert graph["metadata"]["prompt"] == "The capital of France is"
        assert [t for t in graph["metadata"]["prompt_tokens"]] and graph["links"]
        logit = next(n for n in graph["nodes"] if n["feature_type"] == "logit")
        detail = c.get(f"/api/graphs/{accepted['graph_id']}/nodes/{logit['node_id']}").json()
        assert detail["incoming"] and not detail["outgoing"]

        bad = c.post(
            "/api/graphs", json={**body, "target": {"tokens": ["not one single token at all"]}}
        ).json()
        events = sse_events(c, bad["events_url"])
        assert events[-1][0] == "failed" and "single token" in events[-1][1]["message"]


@pytest.fixture(scope="module")
def mismatched_spec(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    """The tiny model with transcoders for one layer more than it has."""
    root = tmp_path_factory.mktemp("mismatched")
    model_dir = make_tiny_model("gpt2", root / "model", n_layers=N_LAYERS, d_model=D_MODEL)
    transcoders = tiny_plt_transcoders(n_layers=N_LAYERS + 1, d_model=D_MODEL)
    tc_dir = save_transcoders(transcoders, root / "transcoders", model_name="tiny-gpt2")
    return ModelSpec(name="tiny", path=str(model_dir), transcoders={"tiny-plt": str(tc_dir)})


@pytest.fixture
def mismatched_settings(redis_url: str, mismatched_spec: ModelSpec) -> Iterator[Settings]:
    s = torch_tracer_settings(redis_url, mismatched_spec, warmup=False)
    yield s
    clear_prefix(redis_url, s.key_prefix)


def test_transcoders_that_do_not_fit_are_the_users_error(mismatched_settings: Settings) -> None:
    """IncompatibleTranscodersError fails the job with the engine's message, as the CLI reports it,
    not as an internal error of the worker."""
    tracer = TorchTracer(mismatched_settings)
    with (
        ApiServer(mismatched_settings) as api,
        WorkerThread(mismatched_settings, tracer),  # loads the model and transcoders
        httpx.Client(base_url=api.url) as c,
    ):
        accepted = c.post("/api/graphs", json={"prompt": "The capital of France is"}).json()
        name, data = sse_events(c, accepted["events_url"])[-1]
        assert name == "failed" and data["message"] == "transcoders cover 3 layers, the model has 2"
        assert c.get(accepted["job_url"]).json()["error"] == data["message"]

    prompt = "The capital of France is"
    job = TracePayload(
        model="tiny", transcoders="tiny-plt", prompt=prompt, token_ids=[1, 2, 3], settings=GraphSettings()
    )
    with pytest.raises(UserError, match="transcoders cover 3 layers, the model has 2"):
        tracer.trace(job, _ignore)
    item = InterventionItem(layer=0, position=1, feature=0, mode="ablate")
    intervention = InterventionPayload(
        model="tiny",
        transcoders="tiny-plt",
        prompt=prompt,
        graph_id="0" * 32,
        interventions=[item],
        options=InterventionSettings(),
    )
    with pytest.raises(UserError, match="transcoders cover 3 layers"):
        tracer.intervene(intervention, _ignore)


def _ignore(phase: str, done: int, total: int) -> None:
    pass
