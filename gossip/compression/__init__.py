"""Compression operators with real wire encodings, and error feedback.

Each operator is a :class:`Compressor` of pure functions ``init / encode / decode`` with an
explicit state (optax style) and says whether it is biased; :func:`make_compressor` builds one
from the ``[compression]`` config section, :func:`error_feedback` wraps any of them. Operators
register in :data:`COMPRESSORS` with :func:`register_compressor`.
"""

from gossip.compression.base import COMPRESSORS, Compressor, CompressorState, register_compressor
from gossip.compression.error_feedback import EFState, error_feedback
from gossip.compression.registry import (
    compressor_names,
    describe_compression,
    make_compressor,
    section_options,
)
from gossip.compression.uploads import is_biased, wants_error_feedback

__all__ = [
    "COMPRESSORS",
    "Compressor",
    "CompressorState",
    "EFState",
    "compressor_names",
    "describe_compression",
    "error_feedback",
    "is_biased",
    "make_compressor",
    "register_compressor",
    "section_options",
    "wants_error_feedback",
]
