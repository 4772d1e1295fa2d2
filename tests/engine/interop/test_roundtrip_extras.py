"""What peers write now, through import and export: Neuronpedia's QK tracing and lorsa nodes kept as
they came, and circuit-tracer's error ids (old and new) exported in the current convention."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from attrgraph.engine.interop import GraphFormatError, from_json, to_json

HERE = Path(__file__).parent
DATA = HERE.parents[1] / "data"
SCHEMA = json.loads((DATA / "graph-schema.json").read_text())
LORSA_QK = json.loads((HERE / "neuronpedia_lorsa_qk.json").read_text())
RECOMPUTED = {"influence"}  # the export's own cumulative influence on the imported graph


def _by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["node_id"]: node for node in document["nodes"]}


def _links(document: dict[str, Any]) -> set[tuple[str, str, float]]:
    return {(link["source"], link["target"], link["weight"]) for link in document["links"]}


def test_neuronpedia_qk_and_lorsa_fields_survive_a_round_trip() -> None:
    original = copy.deepcopy(LORSA_QK)
    graph = from_json(original)
    assert original == LORSA_QK  # the import does not touch its input
    exported = to_json(graph)
    jsonschema.validate(exported, SCHEMA)

    nodes = _by_id(exported)
    assert set(nodes) == {n["node_id"] for n in LORSA_QK["nodes"]}
    for node in LORSA_QK["nodes"]:
        written = nodes[node["node_id"]]
        for key, value in node.items():
            if key not in RECOMPUTED:
                assert written[key] == value, f"{node['node_id']}.{key}"
    assert nodes["0_lor_5_2"]["qk_tracing_results"] == LORSA_QK["nodes"][3]["qk_tracing_results"]
    assert {n["feature_type"] for n in exported["nodes"]} >= {"lorsa", "lorsa error"}
    assert all(n["is_from_qk_tracing"] is False for n in exported["nodes"])
    assert exported["qk_only_nodes"] == LORSA_QK["qk_only_nodes"]
    details = exported["metadata"]["feature_details"]
    assert details["neuronpedia_lorsa_source_set"] == "crm-lorsa"
    assert details == LORSA_QK["metadata"]["feature_details"]
    assert exported["metadata"]["info"]["creator_name"] == "a hand-written test file"
    assert exported["metadata"]["info"]["generator"]["name"] == "attrgraph"
    assert _links(exported) == _links(LORSA_QK)

    # Our own export reads back to the same document (the carried fields ride in the nodes again).
    again = to_json(from_json(exported))
    for key in ("nodes", "links", "qk_only_nodes", "qParams"):
        assert again[key] == exported[key], key
    assert again["metadata"]["feature_details"] == details


def test_carried_fields_follow_a_feature_label_and_an_export_option() -> None:
    graph = from_json(LORSA_QK)
    exported = to_json(graph, feature_json_base_url="https://example.org/features")
    details = exported["metadata"]["feature_details"]
    assert details["feature_json_base_url"] == "https://example.org/features"
    assert details["neuronpedia_lorsa_source_set"] == "crm-lorsa"
    assert _by_id(exported)["0_lor_5_2"]["clerp"] == "attends back to the first token"
    relabelled = to_json(graph, clerps=[["0_lor_5_2", "a new label"]])
    assert _by_id(relabelled)["0_lor_5_2"]["clerp"] == "a new label"
    assert _by_id(relabelled)["0_lor_5_2"]["feature_type"] == "lorsa"


def test_a_graph_derived_from_an_import_does_not_mislabel_nodes() -> None:
    graph = from_json(LORSA_QK)
    assert graph.features[1].tolist() == [1, 2, 7]
    graph.features[1, 2] = 8  # node 1 is now another feature: the fields carried for 1_7_2 do not apply
    nodes = _by_id(to_json(graph))
    assert "1_7_2" not in nodes and nodes["1_8_2"]["jsNodeId"] == "1_8-0"
    assert "is_from_qk_tracing" not in nodes["1_8_2"]
    assert nodes["0_lor_5_2"]["feature_type"] == "lorsa"  # unchanged nodes keep theirs


def test_two_error_nodes_at_one_site_are_refused() -> None:
    document = copy.deepcopy(LORSA_QK)
    twin = {**document["nodes"][5], "node_id": "0_error_mlp_1", "feature_type": "mlp reconstruction error"}
    document["nodes"].append(twin)
    with pytest.raises(GraphFormatError, match="both at layer 0, position 1"):
        from_json(document)


def _old_style(document: dict[str, Any], js_style: str) -> dict[str, str]:
    """Error nodes renamed to circuit-tracer 0.5.0's `0_L_p` (jsNodeId old `L_p-0` or current)."""
    renames = {}
    for node in document["nodes"]:
        if node["feature_type"] == "mlp reconstruction error":
            layer, pos = int(node["layer"]), node["ctx_idx"]
            renames[node["node_id"]] = f"0_{layer}_{pos}"
            node["node_id"] = renames[node["node_id"]]
            node["jsNodeId"] = f"{layer}_{pos}-0" if js_style == "old" else f"{layer}_-1-{pos}"
    for link in document["links"]:
        link["source"] = renames.get(link["source"], link["source"])
    return renames


@pytest.mark.parametrize("js_style", ["old", "current"])
def test_errors_import_in_either_convention_and_export_in_the_current_one(js_style: str) -> None:
    current = json.loads((DATA / "circuit_tracer_example.json").read_text())
    # Without its layer-0 feature 0_4_4, whose id the old convention also gives the error at 4, 4
    # (test_interop covers that collision): here every link has one reading in both conventions.
    current["nodes"] = [n for n in current["nodes"] if n["node_id"] != "0_4_4"]
    current["links"] = [k for k in current["links"] if "0_4_4" not in (k["source"], k["target"])]
    old = copy.deepcopy(current)
    renames = _old_style(old, js_style)
    assert renames
    for document in (current, old):
        exported = to_json(from_json(document))
        jsonschema.validate(exported, SCHEMA)
        errors = [n for n in exported["nodes"] if n["feature_type"] == "mlp reconstruction error"]
        assert {n["node_id"] for n in errors} == set(renames)
        for node in errors:
            layer, pos = node["layer"], node["ctx_idx"]
            assert node["node_id"] == f"{layer}_-1_{pos}" and node["jsNodeId"] == f"{layer}_-1-{pos}"
        assert _links(exported) == _links(current)
