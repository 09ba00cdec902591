"""The one place a step loop meets the denoiser: float64 state in, float32 at
the call, a NaN/Inf guard on the way out, no per-step allocation."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.conditioning import check_labels
from edgediff.errors import EdgediffError
from edgediff.graph import graph_inputs
from edgediff.tensor_conditioning import check_tensors

Callback = Callable[[dict[str, Any]], None] | None
NoiseFn = Callable[[int], np.ndarray]


class Denoiser(Protocol):
    """A backend: ``D(x float32 [B, *sample_shape], σ float32 [B]) -> denoised``.
    The returned array may be reused by the next call.

    A backend may also offer ``bind(batch) -> Bound``: input buffers the step loop
    writes straight into, and a call on them (ONNX Runtime's IOBinding arrays),
    which saves the loop a copy and the backend its input checks."""

    info: ArtifactInfo

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray: ...


class Bound(Protocol):
    """A backend's inputs for one batch size, and the call that reads them."""

    x: np.ndarray  # float32 [B, *sample_shape]
    sigma: np.ndarray  # float32 [B]

    def run(self) -> np.ndarray: ...  # D(x; σ) float32, valid until the next run


class _OwnBuffers:
    """Bound for backends without ``bind``: buffers of our own, passed to the call."""

    class_labels = guidance = None

    def __init__(self, denoiser: Denoiser, shape: tuple[int, ...]):
        self.denoiser = denoiser
        self.x = np.empty(shape, dtype=np.float32)
        self.sigma = np.empty(shape[:1], dtype=np.float32)

    def run(self) -> np.ndarray:
        return self.denoiser(self.x, self.sigma)


class NonFiniteOutputError(EdgediffError):
    """The denoiser returned NaN or Inf: sampling stops rather than write garbage."""


class Call:
    """Calls ``denoiser`` on float64 state at scalar σ: the state goes into the
    backend's float32 input (``x32``), the result comes back as float64.

    A step loop either calls ``call(x, σ)``, or writes the model input into
    ``call.x32`` itself (fusing its own arithmetic with the cast) and calls
    ``call.run(σ)``. Both return D in float64, in ``out`` or a buffer of the call's
    own (valid until the next call), after a NaN/Inf guard.
    """

    def __init__(self, denoiser: Denoiser, shape: tuple[int, ...]):
        bind = getattr(denoiser, "bind", None)
        self.bound: Bound = bind(shape[0]) if bind is not None else _OwnBuffers(denoiser, shape)
        self.x32 = self.bound.x
        self.denoised = np.empty(shape, dtype=np.float64)
        self._scaled = np.empty(shape, dtype=np.float64)
        self.step = 0

    def __call__(self, x: np.ndarray, sigma: float, scale: float = 1.0,
                 out: np.ndarray | None = None, check: bool = True) -> np.ndarray:
        """D(x / scale; σ) as float64."""
        if scale != 1.0:
            x = np.divide(x, scale, out=self._scaled)
        np.copyto(self.x32, x, casting="same_kind")  # a ufunc casting on output is slower
        return self.run(sigma, out, check)

    def run(self, sigma: float, out: np.ndarray | None = None, check: bool = True
            ) -> np.ndarray:
        """D(x32; σ) as float64, for a model input already in ``x32``. A loop that
        passes ``check=False`` guards its state itself (``guard``)."""
        self.bound.sigma.fill(sigma)
        out = self.denoised if out is None else out
        np.copyto(out, self.bound.run())
        if check:
            self.guard(out, sigma)
        return out

    def guard(self, a: np.ndarray, sigma: float) -> None:
        """Stop on NaN/Inf in ``a``, naming the current step and ``sigma``. One
        reduction, Σa² (the cheapest here): NaN and ±Inf propagate, and values of
        float32 range cannot overflow it."""
        flat = a.reshape(-1)
        if not math.isfinite(np.dot(flat, flat)):
            raise NonFiniteOutputError(
                f"the denoiser returned NaN/Inf at step {self.step} (σ = {sigma:.6g}); sampling "
                f"stopped. An fp16 engine overflowing does this: rebuild it without --fp16, or "
                f"check the model on 'edgediff check'")


def report(callback: Callback, i: int, x: np.ndarray, sigma: float, sigma_next: float,
           denoised: np.ndarray, scale: float = 1.0) -> None:
    """Hand step i to the callback: x̂ (= x / scale), σ, the next σ, and D. D is
    the loop's own buffer, overwritten later: a callback copies what it keeps."""
    if callback is not None:
        callback({"i": i, "x": x / scale, "sigma": sigma, "sigma_next": sigma_next,
                  "denoised": denoised})


def reset_conditioning(info: ArtifactInfo, bound) -> None:
    """Put a reused binding's conditioning inputs back to their defaults (the null
    label, scale 1, each tensor's null value). A backend keeps one binding per batch
    size, so a loop that binds for an unconditional run must not inherit the labels
    the last conditional call of that size wrote."""
    tensors = getattr(bound, "tensors", None) or {}
    for i in graph_inputs(info)[2:]:
        buffer = tensors.get(i.name) if i.name in tensors else getattr(bound, i.name, None)
        if buffer is not None and i.fill is not None:
            buffer[...] = i.fill


def fill_conditioning(info: ArtifactInfo, bound, class_labels, guidance,
                      tensors: dict | None = None) -> None:
    """Write a call's class labels, guidance scale and tensor conditioning into a
    backend's bound inputs (a conditional graph's ``class_labels``; a --guidance
    graph's ``guidance``; ``bound.tensors``, name → array); an input the call
    leaves out holds its default (``edgediff.graph``: the null label, scale 1, a
    tensor's null value)."""
    fills = {i.name: i.fill for i in graph_inputs(info)}
    if class_labels is not None:
        num = 1 if bound.class_labels is None else len(bound.class_labels)
        np.copyto(bound.class_labels, check_labels(info, class_labels, num))
    elif bound.class_labels is not None:
        if fills["class_labels"] is None:
            raise EdgediffError(f"this model has {info.num_classes} real classes and no "
                                f"unconditional one: every call needs class labels")
        bound.class_labels.fill(fills["class_labels"])
    if guidance is not None:
        if bound.guidance is None:
            raise EdgediffError("this graph takes no guidance scale; export it with "
                                "--guidance, or guide with runtime.guidance.Guided")
        np.copyto(bound.guidance, np.broadcast_to(np.asarray(guidance, np.float32),
                                                  bound.guidance.shape))
    elif bound.guidance is not None:
        bound.guidance.fill(fills["guidance"])
    buffers = getattr(bound, "tensors", None)
    if buffers is None:
        if tensors:
            raise EdgediffError("this backend does not feed tensor conditioning yet; use an "
                                ".onnx artifact with ONNX Runtime")
        return
    given = check_tensors(info.tensors, tensors, len(bound.x))
    for name, buffer in buffers.items():
        np.copyto(buffer, given[name] if name in given else fills[name])


def check_inputs(info: ArtifactInfo, x, sigma) -> tuple[np.ndarray, np.ndarray]:
    """Cast to float32 and check shapes: a clear message instead of a backend's own."""
    if (type(x) is np.ndarray and type(sigma) is np.ndarray and x.dtype == np.float32
            and sigma.dtype == np.float32 and x.shape[1:] == info.sample_shape
            and sigma.shape == x.shape[:1] and x.shape[0] > 0):
        return x, sigma  # the step loops' own calls: already right
    x = np.asarray(x)
    if x.ndim != 1 + len(info.sample_shape) or tuple(x.shape[1:]) != info.sample_shape:
        want = ", ".join(map(str, info.sample_shape))
        raise EdgediffError(f"x has shape {tuple(x.shape)}; this model takes [batch, {want}]")
    if x.shape[0] < 1:
        raise EdgediffError("x is an empty batch")
    if not np.issubdtype(x.dtype, np.floating):
        raise EdgediffError(f"x has dtype {x.dtype}; pass floating-point samples")
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float32), (x.shape[0],)) \
        if np.ndim(sigma) == 0 else np.asarray(sigma)
    if sigma.shape != (x.shape[0],):
        raise EdgediffError(f"sigma has shape {tuple(sigma.shape)}; it takes one σ per sample, "
                            f"shape ({x.shape[0]},)")
    if not np.issubdtype(sigma.dtype, np.floating):
        raise EdgediffError(f"sigma has dtype {sigma.dtype}; pass floating-point noise levels")
    return x.astype(np.float32, copy=False), sigma.astype(np.float32, copy=False)
