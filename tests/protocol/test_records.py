"""Job records: one shape for both kinds of job, stored as a Redis hash and read back exactly."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from attrgraph.protocol.interventions import InterventionItem, InterventionSettings
from attrgraph.protocol.keys import Keys
from attrgraph.protocol.records import (
    InterventionPayload,
    JobRecord,
    RecordError,
    TracePayload,
)
from attrgraph.protocol.schemas import GraphSettings, TargetRequest

GRAPH_ID = "a" * 32
INTERVENTION_ID = "b" * 32


def _trace_job() -> JobRecord:
    payload = TracePayload(
        model="demo",
        transcoders="demo-plt",
        prompt="The capital of Texas is",
        token_ids=[5, 17, 3],
        target=TargetRequest(logit_diff=(" Austin", 262)),
        settings=GraphSettings(max_feature_nodes=64),
    )
    return JobRecord(job_id="1" * 32, state="queued", result_id=GRAPH_ID, payload=payload, created_at=1.5)


def _intervention_job() -> JobRecord:
    payload = InterventionPayload(
        model="demo",
        transcoders="demo-plt",
        prompt="The capital of Texas is",
        graph_id=GRAPH_ID,
        interventions=[InterventionItem(layer=1, position=2, feature=7, mode="scale", value=2.5)],
        options=InterventionSettings(top_k=3),
    )
    return JobRecord(
        job_id="2" * 32,
        state="running",
        result_id=INTERVENTION_ID,
        payload=payload,
        created_at=2.0,
        cancel_requested=True,
        percent=12.5,
    )


def _as_redis_returns(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


@pytest.mark.parametrize("make", [_trace_job, _intervention_job])
def test_a_job_survives_the_hash_round_trip(make: Callable[[], JobRecord]) -> None:
    job = make()
    stored = job.to_hash()
    assert all(isinstance(v, str) for v in stored.values())
    again = JobRecord.from_hash(_as_redis_returns(stored))
    assert again == job
    assert type(again.payload) is type(job.payload)


def test_kind_comes_from_the_payload_and_names_where_the_result_goes() -> None:
    keys = Keys("p:")
    trace, intervention = _trace_job(), _intervention_job()
    assert (trace.kind, intervention.kind) == ("trace", "intervene")
    assert trace.result_key(keys) == keys.graph(GRAPH_ID)
    assert intervention.result_key(keys) == keys.intervention(INTERVENTION_ID)
    assert trace.result_ref() == {"graph_id": GRAPH_ID}
    assert intervention.result_ref() == {"intervention_id": INTERVENTION_ID}
    # The graph a job is about: the one it computes, or the one it intervenes on.
    assert trace.graph_id == GRAPH_ID and intervention.graph_id == GRAPH_ID
    assert trace.model == intervention.model == "demo"


def test_a_payload_of_the_wrong_kind_is_refused() -> None:
    stored = _trace_job().to_hash()
    # A trace payload labelled as an intervention lacks the intervention's fields.
    stored["payload"] = stored["payload"].replace('"kind":"trace"', '"kind":"intervene"')
    with pytest.raises(RecordError):
        JobRecord.from_hash(stored)


@pytest.mark.parametrize(
    "damage",
    [
        lambda h: h.pop("payload"),
        lambda h: h.update(payload="{not json"),
        lambda h: h.update(payload='{"kind": "summarize", "model": "demo"}'),
        # The shape of records before jobs had kinds: a graph_id and a spec, no payload.
        lambda h: h.update(spec=h.pop("payload"), graph_id=h.pop("result_id")),
    ],
)
def test_unreadable_records_raise_record_error(damage: Callable[[dict[str, str]], object]) -> None:
    stored = _trace_job().to_hash()
    damage(stored)
    with pytest.raises(RecordError, match="unreadable job record"):
        JobRecord.from_hash(stored)
