"""The graph JSON format and feature dashboards as plain data (no torch, no web code).

node_ids.py      node types, node ids (both circuit-tracer error-id conventions), Cantor pairing
feature_keys.py  which feature a node is (`layer_index`), the key shared labels are stored under
clerps.py        labels as clerps: qParams.clerps read into feature labels and written back
dashboards.py    feature dashboards on disk (one gzip JSON-lines file per layer)

The engine, the service and the demo builder all read and write graphs through it; its JavaScript
twin is frontend/src/lib/graphformat.js. The specification is docs/graph-format.md.
"""
