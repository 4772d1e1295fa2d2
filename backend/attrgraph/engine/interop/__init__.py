"""Graph JSON export and import: the format of Neuronpedia's graph viewer and circuit-tracer
(docs/graph-format.md). Ids, node types, feature keys and clerps come from attrgraph.format, which
the API and the page (its JavaScript twin) read graphs with too.

export.py   to_json / dumps: a Graph as graph JSON, shaped by one ExportOptions (options.py)
imports.py  from_json: graph JSON (ours, circuit-tracer's, Neuronpedia's) as a Graph
extras.py   metadata.attrgraph: what only this project writes and reads back
tokens.py   the prompt and logit targets of an imported graph; links.py: its links
reading.py  GraphFormatError and the value readers the import shares
"""

from attrgraph.engine.interop.export import GENERATOR_NAME, SCHEMA_VERSION, build_document, dumps, to_json
from attrgraph.engine.interop.extras import ATTRGRAPH_FORMAT_VERSION, NODE_VALUE_FIELDS
from attrgraph.engine.interop.imports import from_json
from attrgraph.engine.interop.options import ExportOptions
from attrgraph.engine.interop.reading import GraphFormatError
from attrgraph.format.node_ids import (
    EMBEDDING_TYPE,
    ERROR_TYPE,
    FEATURE_TYPE,
    LOGIT_TYPE,
    cantor_pair,
    cantor_unpair,
    process_token,
)

__all__ = [
    "ATTRGRAPH_FORMAT_VERSION",
    "EMBEDDING_TYPE",
    "ERROR_TYPE",
    "FEATURE_TYPE",
    "GENERATOR_NAME",
    "LOGIT_TYPE",
    "NODE_VALUE_FIELDS",
    "SCHEMA_VERSION",
    "ExportOptions",
    "GraphFormatError",
    "build_document",
    "cantor_pair",
    "cantor_unpair",
    "dumps",
    "from_json",
    "process_token",
    "to_json",
]
