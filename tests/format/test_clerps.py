"""Labels as clerps: qParams.clerps keyed by node id (any convention) or feature key become labels
per feature key; labels written back set each feature's clerp and list [node id, label] pairs."""

from __future__ import annotations

from typing import Any

from attrgraph.format.clerps import labels_from_clerps, with_labels
from tests.support.collab import example_graph


def renamed(graph: dict[str, Any], old: str, new: str) -> None:
    for node in graph["nodes"]:
        if node["node_id"] == old:
            node["node_id"] = new
    for link in graph["links"]:
        for end in ("source", "target"):
            if link[end] == old:
                link[end] = new


def test_clerps_by_node_id_in_any_convention_and_by_feature_key() -> None:
    graph = example_graph()
    renamed(graph, "14_2268_4", "feature-b")  # read by its jsNodeId 14_2268-0
    renamed(graph, "4_13154_2", str(86586215))  # a bare Cantor number
    graph["qParams"]["clerps"] = [
        ["20_15589_5", "say Austin"],
        ["feature-b", "Texas"],
        ["86586215", " capital "],
        ["3_7", "by feature key"],
        ["4_-1_4", "an error node has no feature"],
        ["E_2_0", "nor an embedding"],
        ["nonsense", "unknown keys are skipped"],
        ["20_15589", ""],  # empty labels are skipped
        ["only one"],
        "not a pair",
    ]
    assert labels_from_clerps(graph) == {
        "20_15589": "say Austin",
        "14_2268": "Texas",
        "4_13154": "capital",
        "3_7": "by feature key",
    }


def test_no_clerps() -> None:
    assert labels_from_clerps(example_graph()) == {}
    assert labels_from_clerps({"nodes": [], "qParams": None}) == {}


def test_with_labels_writes_clerps_that_read_back() -> None:
    graph = example_graph()
    renamed(graph, "14_2268_4", "feature-b")
    labelled = with_labels(graph, {"20_15589": "say Austin", "14_2268": "Texas", "99_1": "not in graph"})
    by_id = {n["node_id"]: n for n in labelled["nodes"]}
    assert by_id["20_15589_5"]["clerp"] == "say Austin" and by_id["feature-b"]["clerp"] == "Texas"
    assert labelled["qParams"]["clerps"] == [["20_15589_5", "say Austin"], ["feature-b", "Texas"]]
    assert labels_from_clerps(labelled) == {"20_15589": "say Austin", "14_2268": "Texas"}
    assert graph["nodes"][0]["clerp"] == ""  # the input is left as it was
    # qParams keeps what it had and gains the fields viewers expect, in their order
    assert list(labelled["qParams"]) == [
        "pinnedIds",
        "supernodes",
        "linkType",
        "clickedId",
        "sg_pos",
        "clerps",
    ]
    bare = with_labels({"nodes": [], "links": []}, {})
    assert bare["qParams"] == {
        "pinnedIds": [],
        "supernodes": [],
        "linkType": "both",
        "clickedId": "",
        "sg_pos": "",
    }
