"""attrgraph: attribution graphs of language models, traced, explored and tested."""

__version__ = "0.1.0"
