"""Transcoder sets: the interface (base), loading from disk or the hub cache, and saving."""

from .base import Activation, InputSite, LayerLoader, TranscoderLayer, TranscoderSet
from .loading import TranscoderLoadError, load_transcoders
from .saving import save_gemmascope_npz, save_transcoders

__all__ = [
    "Activation",
    "InputSite",
    "LayerLoader",
    "TranscoderLayer",
    "TranscoderLoadError",
    "TranscoderSet",
    "load_transcoders",
    "save_gemmascope_npz",
    "save_transcoders",
]
