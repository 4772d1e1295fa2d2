"""The HTTP API and the explorer's pages (FastAPI). Never runs a model: work goes to workers through
attrgraph.protocol."""
