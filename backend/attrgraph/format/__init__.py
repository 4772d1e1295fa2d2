"""The graph JSON format and feature dashboards as plain data (no torch, no web code).

The engine, the service and the demo builder all read and write graphs through it; its JavaScript
twin is frontend/src/lib/format.js. The specification is docs/graph-format.md.
"""
