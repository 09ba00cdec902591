"""Per-sample seeded Gaussian noise (docs/design.md, "Runtime").

Sample k of a run seeded ``seed`` draws all its randomness — the initial x_T
and every step's z — from its own generator,
``PCG64(SeedSequence(seed, spawn_key=(k,)))``. So sample k is the same whatever
the batch size, the batch it lands in, or the backend; and the torch reference
can be handed the very same numbers (that is how parity is tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgediff.errors import EdgediffError


def sample_generator(seed: int, k: int) -> np.random.Generator:
    """The generator that owns sample k's randomness."""
    if seed < 0 or k < 0:
        raise EdgediffError(f"seeds and sample indices must be ≥ 0, got seed {seed}, index {k}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(k,))))


class NoiseStreams:
    """Standard-normal draws for a batch of samples, one stream each.

    ``initial()`` is the first draw (a fresh array); ``__call__(i)`` is step i's
    noise, written into one reused buffer (valid until the next draw). Steps
    must be asked for in increasing order — each draw advances the streams.
    """

    def __init__(self, seed: int, indices: Sequence[int], sample_shape: Sequence[int]):
        self._gens = [sample_generator(seed, int(k)) for k in indices]
        self._buf = np.empty((len(self._gens), *sample_shape), dtype=np.float64)
        self._last = -1
        self._started = False

    def _draw(self) -> np.ndarray:
        for gen, row in zip(self._gens, self._buf, strict=True):
            gen.standard_normal(out=row)
        return self._buf

    def initial(self) -> np.ndarray:
        if self._started:
            raise RuntimeError("initial() is the streams' first draw")
        self._started = True
        return self._draw().copy()

    def __call__(self, i: int) -> np.ndarray:
        if not self._started or i <= self._last:
            raise RuntimeError(f"step noise asked for out of order (step {i} after {self._last})")
        self._last = i
        return self._draw()
