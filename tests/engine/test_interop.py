"""Graph JSON export / import: schema, id conventions, round trips, circuit-tracer's format, errors."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import torch

from attrgraph.engine.graph import Graph, LogitTarget
from attrgraph.engine.interop import (
    ExportOptions,
    GraphFormatError,
    cantor_pair,
    cantor_unpair,
    dumps,
    from_json,
    to_json,
)
from attrgraph.engine.pruning import graph_scores, prune, pruned_graph
from attrgraph.format.feature_keys import feature_key_text
from tests.support.graphs import random_graph

DATA = Path(__file__).parents[1] / "data"
SCHEMA = json.loads((DATA / "graph-schema.json").read_text())
CT_EXAMPLE = (DATA / "circuit_tracer_example.json").read_bytes()


def validate(document: dict[str, Any]) -> None:
    jsonschema.validate(document, SCHEMA)


def edge_dict(graph: Graph) -> dict[tuple[str, str], float]:
    return {
        (graph.node_id(int(t)), graph.node_id(int(s))): float(w)
        for (t, s), w in zip(graph.edges.tolist(), graph.weights.tolist(), strict=True)
    }


@pytest.mark.parametrize("seed", range(3))
def test_export_validates_and_follows_conventions(seed: int) -> None:
    graph = random_graph(seed=seed, n_layers=3, n_pos=5, features_per_site=3)
    result = prune(graph)
    for document in (
        to_json(graph),
        to_json(graph, prune_result=result, slug="my-graph", scan="tiny", feature_json_base_url="http://x/f"),
        orjson.loads(dumps(graph, prune_result=result, pinned_ids=[graph.node_id(0)], indent=True)),
    ):
        validate(document)
        assert document["metadata"]["schema_version"] == 1
        assert document["metadata"]["info"]["generator"]["name"] == "attrgraph"
        ids = [n["node_id"] for n in document["nodes"]]
        assert len(ids) == len(set(ids))
        known = set(ids)
        assert all(link["source"] in known and link["target"] in known for link in document["links"])
        for node in document["nodes"]:
            kind = node["feature_type"]
            if kind == "cross layer transcoder":
                layer, feature, pos = (int(x) for x in node["node_id"].split("_"))
                assert node["feature"] == cantor_pair(layer, feature)
                assert node["layer"] == str(layer) and node["ctx_idx"] == pos
                assert node["jsNodeId"] == f"{layer}_{feature}-0"
                assert isinstance(node["activation"], float)
            elif kind == "mlp reconstruction error":
                assert re.fullmatch(r"\d+_-1_\d+", node["node_id"])
                assert node["feature"] == -1 and node["clerp"].startswith("Err: mlp ")
                assert node["jsNodeId"] == f"{node['layer']}_-1-{node['ctx_idx']}"
            elif kind == "embedding":
                pos = node["ctx_idx"]
                assert node["node_id"] == f"E_{graph.token_ids[pos]}_{pos}" and node["layer"] == "E"
                assert node["feature"] == pos and node["clerp"].startswith("Emb: ")
            else:
                assert kind == "logit"
                assert node["layer"] == str(graph.n_layers + 1) and node["ctx_idx"] == graph.n_pos - 1
                assert re.fullmatch(r'Output ".*" \(p=\d\.\d{3}\)', node["clerp"])
                assert node["influence"] is None
        # every embedding and logit is present
        assert sum(n["feature_type"] == "embedding" for n in document["nodes"]) == graph.n_pos
        assert [n["is_target_logit"] for n in document["nodes"] if n["feature_type"] == "logit"] == [True] + [
            False
        ] * (graph.n_logits - 1)


def test_error_ids_never_collide_with_layer0_features() -> None:
    graph = random_graph(seed=0, n_layers=3, n_pos=4)
    # a layer-0 feature whose index equals an error's layer and whose position equals its position
    graph.features[0] = torch.tensor([0, 2, 1])
    ids = [graph.node_id(i) for i in range(graph.n_nodes)]
    assert len(set(ids)) == len(ids)
    assert "0_1_2" in ids and "1_-1_2" in ids


def test_cantor_pairing_inverts() -> None:
    for layer in range(0, 40, 7):
        for feature in (0, 1, 17, 32767, 131071):
            assert cantor_unpair(cantor_pair(layer, feature)) == (layer, feature)


@pytest.mark.parametrize("seed", range(3))
def test_round_trip_full_graph(seed: int) -> None:
    graph = random_graph(seed=seed, complete_rows=seed % 2 == 0)
    graph.logit_targets[1] = LogitTarget(
        token_id=graph.logit_targets[1].token_id,
        token=" yes",
        probability=graph.logit_targets[1].probability,
        minus_token_id=7,
        minus_token=" no",
    )
    for data in (dumps(graph), to_json(graph), orjson.dumps(to_json(graph)).decode()):
        back = from_json(data)
        assert torch.equal(back.features, graph.features)
        assert torch.equal(back.activations, graph.activations)
        assert back.token_ids == graph.token_ids and back.tokens == graph.tokens
        assert back.prompt == graph.prompt and back.n_layers == graph.n_layers
        assert back.model_id == graph.model_id and back.transcoder_id == graph.transcoder_id
        assert back.logit_targets == graph.logit_targets
        assert edge_dict(back) == edge_dict(graph)  # float32 values survive exactly
        for name in ("target_values", "bias_terms", "unexplored"):
            assert torch.equal(getattr(back, name), getattr(graph, name)), name
        torch.testing.assert_close(back.row_abs_totals, graph.row_abs_totals)
        assert back.settings == graph.settings and back.stats == graph.stats
        assert back.feature_labels == graph.feature_labels
        assert graph_scores(back) == pytest.approx(graph_scores(graph), rel=1e-6)


def test_round_trip_pruned_export() -> None:
    graph = random_graph(seed=4, n_layers=4, features_per_site=3)
    result = prune(graph)
    back = from_json(dumps(graph, prune_result=result))
    small = pruned_graph(graph, result)
    assert torch.equal(back.features, small.features)
    assert edge_dict(back) == edge_dict(small)
    torch.testing.assert_close(back.unexplored, small.unexplored)
    torch.testing.assert_close(back.row_abs_totals, small.row_abs_totals)
    document = to_json(graph, prune_result=result)
    assert document["metadata"]["pruning_settings"] == {"node_threshold": 0.8, "edge_threshold": 0.98}
    assert document["metadata"]["node_threshold"] == 0.8
    # influence on nodes is the prune result's cumulative influence
    by_id = {n["node_id"]: n for n in document["nodes"]}
    feature0 = int(torch.nonzero(result.node_mask[: graph.n_features])[0])
    assert by_id[graph.node_id(feature0)]["influence"] == pytest.approx(
        float(result.cumulative_influence[feature0]), rel=1e-6
    )


def test_export_labels_view_state_and_scores() -> None:
    graph = random_graph(seed=2)
    layer, _, feature = (int(v) for v in graph.features[0])
    node0 = graph.node_id(0)
    supernodes = [["group", node0, graph.node_id(1)]]
    document = to_json(
        graph, clerps=[[f"{layer}_{feature}", "my label"]], pinned_ids=[node0], supernodes=supernodes
    )
    validate(document)
    by_id = {n["node_id"]: n for n in document["nodes"]}
    assert by_id[node0]["clerp"] == "my label"
    assert document["qParams"]["pinnedIds"] == [node0]
    assert document["qParams"]["supernodes"] == supernodes
    assert document["qParams"]["clerps"] == [[f"{layer}_{feature}", "my label"]]
    assert (document["qParams"]["linkType"], document["qParams"]["clickedId"]) == ("both", "")
    scores = document["metadata"]["attrgraph"]["scores"]
    assert scores["replacement_score"] == pytest.approx(graph_scores(graph)[0])
    assert set(scores["pinned"]) == {"replacement_score", "completeness_score"}
    labelled = next(k for k in graph.feature_labels if k != f"{layer}_{feature}")
    assert any(n["clerp"] == graph.feature_labels[labelled] for n in document["nodes"])
    logit = next(n for n in document["nodes"] if n["feature_type"] == "logit")
    assert (
        logit["clerp"]
        == f'Output "{graph.logit_targets[0].token}" (p={graph.logit_targets[0].probability:.3f})'
    )


def test_dumps_is_compact_and_equal_to_to_json() -> None:
    graph = random_graph(seed=3)
    document = to_json(graph)
    data = dumps(graph)
    parsed = orjson.loads(data)
    for a, b in zip(parsed["nodes"], document["nodes"], strict=True):
        assert list(a) == list(b)
        for key, value in a.items():
            if isinstance(value, float):
                assert torch.tensor(value, dtype=torch.float32) == torch.tensor(b[key], dtype=torch.float32)
            else:
                assert value == b[key]
    weights = [link["weight"] for link in parsed["links"]]
    expected = [link["weight"] for link in document["links"]]
    assert torch.equal(
        torch.tensor(weights, dtype=torch.float32), torch.tensor(expected, dtype=torch.float32)
    )
    assert len(data) < len(orjson.dumps(document))


def test_circuit_tracer_fixture_imports() -> None:
    raw = json.loads(CT_EXAMPLE)
    validate(raw)
    graph = from_json(CT_EXAMPLE)
    assert graph.n_layers == 26
    assert graph.token_ids == [2, 651, 6037, 576, 9447, 603]
    assert graph.tokens[4] == " Texas" and graph.prompt == "The capital of Texas is"
    assert graph.model_id == "gemma-2-2b"
    assert graph.n_features == 6 and graph.features[0].tolist() == [20, 5, 15589]
    assert [t.token for t in graph.logit_targets] == [" Austin", " the", " a"]
    assert graph.logit_targets[0].probability == pytest.approx(0.63671875)
    assert graph.edges.shape[0] == len(raw["links"])
    assert edge_dict(graph) == {(link["target"], link["source"]): link["weight"] for link in raw["links"]}
    # row totals and target values come from the links; bias and unexplored are zero
    sums = torch.zeros(graph.n_nodes).index_add_(0, graph.edges[:, 0], graph.weights)
    torch.testing.assert_close(graph.target_values, sums)
    assert not graph.bias_terms.any() and not graph.unexplored.any()
    activations = {n["node_id"]: n["activation"] for n in raw["nodes"] if n["activation"] is not None}
    assert {graph.node_id(i): float(graph.activations[i]) for i in range(graph.n_features)} == activations
    # influence recomputed here matches what the file carries
    document = to_json(graph)
    ours = {n["node_id"]: n["influence"] for n in document["nodes"]}
    for node in raw["nodes"]:
        if node["influence"] is not None:
            assert ours[node["node_id"]] == pytest.approx(node["influence"], rel=1e-5)
    # our export has circuit-tracer's field set and order, plus only optional metadata
    assert all(list(ours) == list(raw["nodes"][0]) for ours in document["nodes"])
    assert list(document)[:4] == list(raw)
    assert list(document["qParams"]) == list(raw["qParams"])
    ct_meta = [k for k in raw["metadata"] if k != "node_threshold"]
    assert [k for k in document["metadata"] if k in ct_meta] == ct_meta
    # and exporting it again validates and re-imports
    validate(document)
    assert edge_dict(from_json(dumps(graph))) == edge_dict(graph)


def test_circuit_tracer_import_tolerates_js_node_ids_and_labels() -> None:
    raw = json.loads(CT_EXAMPLE)
    feature = raw["nodes"][0]
    old_id = feature["node_id"]
    feature["node_id"] = "feature-a"  # not L_f_p: falls back to layer / ctx_idx / jsNodeId
    feature["clerp"] = "say Austin"
    for link in raw["links"]:
        for end in ("source", "target"):
            if link[end] == old_id:
                link[end] = "feature-a"
    graph = from_json(raw)
    assert graph.features[0].tolist() == [20, 5, 15589]
    assert graph.feature_labels == {"20_15589": "say Austin"}
    feature["jsNodeId"] = "x"  # and then to the Cantor-paired feature number
    assert from_json(raw).features[0].tolist() == [20, 5, 15589]


def mutated(change: Any) -> dict[str, Any]:
    raw: dict[str, Any] = copy.deepcopy(json.loads(CT_EXAMPLE))
    change(raw)
    return raw


def link(source: str, target: str) -> dict[str, Any]:
    return {"source": source, "target": target, "weight": 1.0}


def _old_error_ids(raw: dict[str, Any]) -> None:
    for node in raw["nodes"]:
        if node["node_id"] == "4_-1_4":
            node["node_id"] = "0_4_4"  # the pre-fix id, colliding with the layer-0 feature 0_4_4
    for x in raw["links"]:
        for end in ("source", "target"):
            if x[end] == "4_-1_4":
                x[end] = "0_4_4"


def _drop_embedding(raw: dict[str, Any]) -> None:
    raw["nodes"] = [n for n in raw["nodes"] if n["node_id"] != "E_576_3"]
    raw["links"] = [x for x in raw["links"] if "E_576_3" not in (x["source"], x["target"])]


MALFORMED: dict[str, Any] = {
    "not json": b"{nodes: ",
    "top level list": b"[]",
    "wrong type": 42,
    "no nodes": b'{"links": []}',
    "links not a list": orjson.dumps({"nodes": [], "links": {}}),
    "no logits": mutated(lambda r: r.update(nodes=[n for n in r["nodes"] if n["feature_type"] != "logit"])),
    "unknown link target": mutated(
        lambda r: r["links"].append({"source": "E_2_0", "target": "9_9_9", "weight": 1})
    ),
    "link into embedding": mutated(
        lambda r: r["links"].append({"source": "E_2_0", "target": "E_651_1", "weight": 1})
    ),
    "link from logit": mutated(lambda r: r["links"].append(link("27_573_5", "20_15589_5"))),
    "weight not a number": mutated(lambda r: r["links"][0].update(weight="big")),
    "duplicate node id": mutated(lambda r: r["nodes"].append(copy.deepcopy(r["nodes"][0]))),
    "missing embedding": mutated(_drop_embedding),
    "feature outside layers": mutated(lambda r: r["nodes"][0].update(node_id="30_1_5")),
    "node without id": mutated(lambda r: r["nodes"][0].pop("node_id")),
    "node not an object": mutated(lambda r: r["nodes"].append("x")),
    "bad attrgraph metadata": mutated(lambda r: r["metadata"].update(attrgraph=[])),
}


def test_old_colliding_error_ids_import_by_feature_type() -> None:
    graph = from_json(mutated(_old_error_ids))
    assert graph.stats["colliding_node_ids"] == 1
    assert "4_-1_4" in {graph.node_id(i) for i in range(graph.n_nodes)}
    assert "0_4_4" in {graph.node_id(i) for i in range(graph.n_features)}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_inputs_raise_graph_format_error(name: str) -> None:
    with pytest.raises(GraphFormatError):
        from_json(MALFORMED[name])


def test_malformed_attrgraph_extras_raise() -> None:
    graph = random_graph(seed=1)
    document = to_json(graph)
    broken = copy.deepcopy(document)
    broken["metadata"]["attrgraph"]["node_values"]["nope"] = [0, 0, 0, 0]
    with pytest.raises(GraphFormatError):
        from_json(broken)
    broken = copy.deepcopy(document)
    broken["metadata"]["attrgraph"]["logit_targets"] = []
    with pytest.raises(GraphFormatError):
        from_json(broken)
    assert issubclass(GraphFormatError, ValueError)


def test_a_real_circuit_tracer_export_imports() -> None:
    """circuit-tracer 0.5.0's own `create_graph_files` output (bench/ct_runner.py, 16-token prompt).

    That release still names error nodes `0_L_p`, colliding with layer-0 feature ids; the import tells
    them apart by feature_type and by which layers a link can connect.
    """
    import gzip

    raw = gzip.decompress(
        (Path(__file__).parents[1] / "data" / "circuit_tracer_export_16.json.gz").read_bytes()
    )
    document = json.loads(raw)
    graph = from_json(raw)
    assert graph.n_pos == 16 and graph.n_layers == 6
    ours: dict[str, str] = {}  # their id -> our id, for ids that are not ambiguous
    errors = [n for n in document["nodes"] if n["feature_type"] == "mlp reconstruction error"]
    colliding = {n["node_id"] for n in errors} & {
        n["node_id"] for n in document["nodes"] if n["feature_type"] == "cross layer transcoder"
    }
    for node in document["nodes"]:
        if node["feature_type"] == "mlp reconstruction error":
            ours[node["node_id"]] = f"{node['layer']}_-1_{node['ctx_idx']}"
        else:
            ours.setdefault(node["node_id"], node["node_id"])
    assert colliding and graph.stats["colliding_node_ids"] == len(colliding)
    assert graph.n_features == len(document["nodes"]) - len(errors) - 16 - graph.n_logits
    assert graph.edges.shape[0] == len(document["links"])
    weights = {
        (graph.node_id(int(s)), graph.node_id(int(t))): float(w)
        for (t, s), w in zip(graph.edges.tolist(), graph.weights, strict=True)
    }
    checked = 0
    for link in document["links"]:
        if link["source"] in colliding or link["target"] in colliding:
            continue
        assert weights[(ours[link["source"]], ours[link["target"]])] == pytest.approx(link["weight"])
        checked += 1
    assert checked > 0.9 * len(document["links"])


def test_options_object_and_keywords_export_the_same() -> None:
    graph = random_graph(seed=3)
    result = prune(graph, node_threshold=0.8, edge_threshold=0.98)
    options = ExportOptions(prune_result=result, slug="s", pinned_ids=[graph.node_id(0)])
    by_keywords = to_json(graph, prune_result=result, slug="s", pinned_ids=[graph.node_id(0)])
    assert to_json(graph, options) == by_keywords
    assert dumps(graph, options) == dumps(graph, prune_result=result, slug="s", pinned_ids=[graph.node_id(0)])
    # keywords given beside the options object win over its fields
    assert to_json(graph, options, slug="other")["metadata"]["slug"] == "other"


def test_import_keys_features_as_the_format_package_does() -> None:
    """Whatever names a feature node (L_f_p, jsNodeId, Cantor number), the engine's import and
    attrgraph.format (which the API's label index and the page follow) find the same feature."""
    raw = json.loads(CT_EXAMPLE)
    renames = {}
    for k, node in enumerate(n for n in raw["nodes"] if n["feature_type"] == "cross layer transcoder"):
        new_id = f"{node['feature']}_{node['ctx_idx']}" if k % 2 else f"feature-{k}"
        if k % 2:
            node["jsNodeId"] = "-"
        renames[node["node_id"]] = new_id
        node["node_id"] = new_id
        node["clerp"] = f"label {k}"
    for x in raw["links"]:
        for end in ("source", "target"):
            x[end] = renames.get(x[end], x[end])
    graph = from_json(raw)
    assert graph.feature_labels == {
        feature_key_text(n): n["clerp"] for n in raw["nodes"] if n["feature_type"] == "cross layer transcoder"
    }
    keys = {f"{layer}_{feature}" for layer, _, feature in graph.features.tolist()}
    assert keys == {old.rsplit("_", 1)[0] for old in renames}


def test_old_error_ids_without_layer_fields_import() -> None:
    def strip_error_fields(raw: dict[str, Any]) -> None:
        _old_error_ids(raw)
        for node in raw["nodes"]:
            if node["feature_type"] == "mlp reconstruction error":
                node.pop("layer")
                node.pop("ctx_idx")

    graph = from_json(mutated(strip_error_fields))
    assert "4_-1_4" in {graph.node_id(i) for i in range(graph.n_nodes)}
    assert "13_-1_4" in {graph.node_id(i) for i in range(graph.n_nodes)}
