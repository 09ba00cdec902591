"""The per-sample noise streams, from the core (``edgediff.noise``): the runtime
and the torch reference draw the very same numbers."""

from edgediff.noise import NoiseStreams, sample_generator

__all__ = ["NoiseStreams", "sample_generator"]
