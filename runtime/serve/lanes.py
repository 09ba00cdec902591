"""A request's view of the shared denoiser: the *lane*, a denoiser whose calls the
scheduler packs with other requests' rows (``edgediff.runtime.serve.scheduler``).

Each request runs the runtime's own sampling code (``sample_batch`` with the denoiser
``guided_denoiser`` builds) in a thread of its own, against a ``Lane``. A lane takes
what a backend takes — ``x`` float32 [B, *sample_shape], ``sigma`` float32 [B], and a
conditional graph's ``class_labels``, a --guidance graph's ``guidance`` and tensor
conditioning by name — hands the rows to the scheduler and blocks until the packed
call returns them. It offers no ``bind``, so the step loops write into buffers of
their own (``edgediff.runtime._call``) and every solver works unchanged.

Classifier-free guidance would call the lane twice per step (D_c, then D_u), two
scheduler ticks apart; ``JointGuided`` hands both halves over as one submission, so
they share one call, and combines them exactly as ``Guided`` does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from edgediff.conditioning import check_labels
from edgediff.errors import EdgediffError
from edgediff.graph import graph_inputs
from edgediff.runtime._call import Denoiser
from edgediff.runtime.guidance import Guided, Interval
from edgediff.tensor_conditioning import check_tensors

Feeds = dict[str, np.ndarray]  # graph input name -> one value per row: [rows, *shape]


def row_feeds(info, rows: int, class_labels=None, guidance=None, tensors: dict | None = None
              ) -> Feeds:
    """The conditioning one backend call gives, one value per row: labels (one or one per
    row) checked by ``check_labels``, a --guidance graph's scale, tensors by
    ``check_tensors``. Inputs the call leaves out are left out (they hold their fill)."""
    feeds: Feeds = {}
    if class_labels is not None:
        feeds["class_labels"] = check_labels(info, class_labels, rows)
    if guidance is not None:
        if not info.guidance_input:
            raise EdgediffError("this graph takes no guidance scale")
        feeds["guidance"] = np.broadcast_to(np.asarray(guidance, np.float32), (rows,))
    for name, value in check_tensors(info.tensors, tensors or None, rows).items():
        feeds[name] = np.broadcast_to(value, (rows, *value.shape[1:]))
    return feeds


def merge_feeds(info, pieces: Sequence[tuple[int, Feeds]]) -> Feeds:
    """Pieces of (rows, feeds) concatenated in order: an input any piece gives is given
    for every row, the others' rows holding the input's fill (``edgediff.graph``: the
    null label, guidance 1, a tensor's null value). Inputs no piece gives stay out."""
    fills = {i.name: i for i in graph_inputs(info)[2:]}
    named = [name for name in fills if any(name in feeds for _, feeds in pieces)]
    merged = {}
    for name in named:
        spec = fills[name]
        if spec.fill is None and not all(name in feeds for _, feeds in pieces):
            raise EdgediffError(f"this model has {info.num_classes} real classes and no "
                                f"unconditional one: every call needs class labels")
        merged[name] = np.concatenate([
            feeds[name] if name in feeds else np.broadcast_to(
                np.asarray(spec.fill, spec.dtype), (rows, *spec.shape))
            for rows, feeds in pieces]).astype(spec.dtype, copy=False)
    return merged


Submit = Callable[[np.ndarray, np.ndarray, Feeds], np.ndarray]


class Lane:
    """One request's denoiser: ``submit(x, σ, feeds)`` is the scheduler's, bound to the
    request; it blocks until the rows come back (float32 [rows, *sample_shape], the
    lane's to keep). Same ``info`` as the served denoiser, and no ``bind``."""

    def __init__(self, info, submit: Submit):
        self.info = info
        self._submit = submit
        self.calls = 0  # submissions so far: a deadline's message says how far it got

    def __call__(self, x: np.ndarray, sigma: np.ndarray, class_labels=None, guidance=None,
                 **tensors) -> np.ndarray:
        return self.joint([(x, sigma, {"class_labels": class_labels, "guidance": guidance,
                                       **tensors})])[0]

    def joint(self, parts: Sequence[tuple[np.ndarray, np.ndarray, dict]]) -> list[np.ndarray]:
        """Several backend calls' worth of rows (each ``(x, σ, kwargs)`` as ``__call__``
        takes them) in one submission: one packed call computes them all."""
        pieces, xs, sigmas = [], [], []
        for x, sigma, kwargs in parts:
            kwargs = dict(kwargs)
            rows = len(x)
            pieces.append((rows, row_feeds(self.info, rows, kwargs.pop("class_labels", None),
                                           kwargs.pop("guidance", None), kwargs)))
            xs.append(np.asarray(x, np.float32))
            sigmas.append(np.broadcast_to(np.asarray(sigma, np.float32), (rows,)))
        self.calls += 1
        out = self._submit(np.concatenate(xs), np.concatenate(sigmas),
                           merge_feeds(self.info, pieces))
        bounds = np.cumsum([0, *(rows for rows, _ in pieces)])
        return [out[a:b] for a, b in itertools.pairwise(bounds)]


def _kwargs(conditioned) -> dict:
    """What ``Conditioned.__call__`` passes its backend."""
    kwargs = dict(conditioned.tensors)
    if conditioned.labels is not None:
        kwargs["class_labels"] = conditioned.labels
    if conditioned.guidance is not None:
        kwargs["guidance"] = conditioned.guidance
    return kwargs


class JointGuided(Guided):
    """``Guided`` over one lane whose conditional and unconditional passes travel as one
    submission: D_c and D_u come from the same packed call, and
    D = D_u + w·(D_c − D_u) is combined in float64 in ``Guided``'s order of operations,
    so for the same D_c and D_u the result is the same to the last bit."""

    def __init__(self, guided: Guided, lane: Lane):
        super().__init__(guided.conditional, guided.unconditional, guided.w)
        self.lane = lane

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        if self.passes == 1:
            return super().__call__(x, sigma)
        d_c, d_u = self.lane.joint([(x, sigma, _kwargs(self.conditional)),
                                    (x, sigma, _kwargs(self.unconditional))])
        if self._out is None or self._out.shape != x.shape:
            self._out = np.empty(x.shape, dtype=np.float64)
        out = self._out
        np.copyto(out, d_c)
        out -= d_u  # D_c − D_u
        out *= self.w
        out += d_u
        return out


def joint(denoiser: Denoiser, lane: Lane) -> Denoiser:
    """``guided_denoiser``'s result with every two-pass ``Guided`` over ``lane`` made a
    ``JointGuided`` (inside an ``Interval`` too); anything else is returned as it is."""
    if isinstance(denoiser, Guided) and all(getattr(d, "backend", None) is lane for d in (
            denoiser.conditional, denoiser.unconditional)):
        return JointGuided(denoiser, lane)
    if isinstance(denoiser, Interval):
        denoiser.guided = joint(denoiser.guided, lane)
    return denoiser
