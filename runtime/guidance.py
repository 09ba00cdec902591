"""Guidance is a denoiser, not a solver option (docs/design.md, "Runtime").

``Guided`` wraps a conditional and an unconditional (or weaker) denoiser and is
itself a denoiser: D = D_u + w·(D_c − D_u), combined in float64 on the host, so
every step loop, present and future, gets guidance without being touched.

- classifier-free guidance (Ho & Salimans 2022): D_c and D_u are one network
  with the requested labels and with the null label;
- autoguidance (Karras et al. 2024, EDM2): D_u is a second, weaker network
  conditioned on the same labels.

w = 1 is the conditional model alone and w = 0 the unconditional one: each is
one pass. The step loops' NaN/Inf guard sees the combined D, so it names the
step and σ as for any backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgediff.conditioning import check_guidance, check_interval, inside
from edgediff.errors import EdgediffError
from edgediff.runtime._call import Denoiser, fill_conditioning


@dataclass(frozen=True, eq=False)
class Condition:
    """What a run is conditioned on, checked when made: ``labels``, class ids (one for
    all samples or one per sample; the artifact's null id or None: unconditional);
    ``guidance``, the scale w of D = D_u + w·(D_c − D_u) (None: no guidance); and
    ``guide``, autoguidance's second, weaker model (a ``Denoiser`` for
    ``runtime.sample``; the torch module for ``samplers.reference.reference_run``).
    Classifier-free guidance is ``guidance`` without ``guide``. ``tensors``: tensor
    conditioning, input name → array of its declared shape (one for all samples) or
    [num, *shape] (one per sample); the unconditional pass feeds the artifact's
    null values. ``guidance_interval`` (LO, HI): guidance only for LO < σ ≤ HI, the
    plain conditional model elsewhere (Kynkäänniemi et al. 2024; ``Interval``).
    Labels and tensors are checked against the artifact when a run starts
    (``check_labels``, ``check_tensors``)."""

    labels: Any = None
    guidance: float | None = None
    guide: Any = None
    tensors: dict[str, Any] | None = None
    guidance_interval: tuple[float, float] | None = None

    def __post_init__(self):
        if self.tensors is not None and not isinstance(self.tensors, dict):
            raise EdgediffError(f"Condition(tensors=...) is a mapping of input name to array, "
                                f"got {type(self.tensors).__name__}")
        if self.guidance is not None:
            object.__setattr__(self, "guidance", check_guidance(self.guidance))
        elif self.guide is not None:
            raise EdgediffError("a guiding model needs a guidance scale (--guidance W)")
        if self.guidance_interval is not None:
            if self.guidance is None:
                raise EdgediffError("a guidance interval needs a guidance scale (--guidance W)")
            object.__setattr__(self, "guidance_interval", check_interval(self.guidance_interval))

    @property
    def given(self) -> bool:
        """Whether anything is asked beyond the plain, unconditional model."""
        return (self.labels is not None or self.guidance is not None or self.guide is not None
                or bool(self.tensors))


class Guided:
    """D(x̂; σ) = D_u + w·(D_c − D_u) in float64, from two denoisers that share
    the artifact contract (same sample shape; ``info`` is the conditional one's)."""

    def __init__(self, conditional: Denoiser, unconditional: Denoiser, w: float):
        self.w = check_guidance(w)
        self.conditional, self.unconditional = conditional, unconditional
        self.info = conditional.info
        if unconditional.info.sample_shape != self.info.sample_shape:
            raise EdgediffError(f"the guiding model takes samples of shape "
                                f"{unconditional.info.sample_shape}, the guided one "
                                f"{self.info.sample_shape}")
        self._out: np.ndarray | None = None

    @property
    def passes(self) -> int:
        """Denoiser passes per call: 1 at w = 0 or 1, else 2."""
        return 1 if self.w in (0.0, 1.0) else 2

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        if self.w == 1.0:
            return self.conditional(x, sigma)
        if self.w == 0.0:
            return self.unconditional(x, sigma)
        if self._out is None or self._out.shape != x.shape:
            self._out = np.empty(x.shape, dtype=np.float64)
        out = self._out
        np.copyto(out, self.conditional(x, sigma))  # D_c (a backend may reuse its buffer)
        d_u = self.unconditional(x, sigma)
        out -= d_u  # D_c − D_u
        out *= self.w
        out += d_u
        return out


class Interval:
    """Guidance in a limited σ interval (Kynkäänniemi et al. 2024): ``guided`` for the
    samples whose σ lies in (LO, HI], ``plain`` (the conditional model alone, one
    pass) for the rest. A call whose σ's all lie outside costs one pass instead of
    two; the step loops' calls share one σ, so only a server's mixed batches take
    both branches (then both run on the whole batch and each sample keeps its own)."""

    def __init__(self, guided: Denoiser, plain: Denoiser, interval: tuple[float, float]):
        self.guided, self.plain = guided, plain
        self.interval = check_interval(interval)
        self.info = guided.info

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        mask = inside(self.interval, np.asarray(sigma))
        if mask.all():
            return self.guided(x, sigma)
        if not mask.any():
            return self.plain(x, sigma)
        out = np.array(self.plain(x, sigma), dtype=np.float64)  # a copy: buffers are reused
        out[mask] = self.guided(x, sigma)[mask]
        return out


class Conditioned:
    """A conditional backend with its class labels, tensor conditioning (name →
    float32 [1 or B, *shape]) and a --guidance graph's scale fixed: a plain
    denoiser D(x̂, σ) for the step loops. Binds like its backend, with the
    conditioning written into the bound inputs once."""

    def __init__(self, backend: Denoiser, labels: np.ndarray | None,
                 guidance: float | None = None, tensors: dict | None = None):
        self.backend, self.labels, self.guidance = backend, labels, guidance
        self.tensors = tensors or {}
        self.info = backend.info
        if hasattr(backend, "bind"):
            self.bind = self._bind

    def _bind(self, batch: int):
        bound = self.backend.bind(batch)
        fill_conditioning(self.info, bound, self.labels, self.guidance, self.tensors)
        return bound

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        extra = {} if self.guidance is None else {"guidance": self.guidance}
        if self.labels is None and not extra and not self.tensors:
            return self.backend(x, sigma)
        return self.backend(x, sigma, class_labels=self.labels, **extra, **self.tensors)


def guided_denoiser(denoiser: Denoiser, labels: np.ndarray | None, w: float | None,
                    guide: Denoiser | None = None, tensors: dict | None = None,
                    interval: tuple[float, float] | None = None) -> Denoiser:
    """What the step loops call for one batch whose samples ask for ``labels`` and
    ``tensors`` (tensor conditioning, checked) at guidance scale ``w``:

    - no guidance (w None): the model with that conditioning (None: unconditional);
    - a --guidance graph: one launch, the scale passed in (form b);
    - classifier-free guidance: labels and tensors against the null label and the
      null tensors (form a);
    - autoguidance (``guide``): against the guiding model, same conditioning
      (form c; the guide gets the tensors it declares).

    With ``interval`` (LO, HI), any of these only for LO < σ ≤ HI, and the model with
    the requested conditioning alone elsewhere (``Interval``).
    """
    tensors = tensors or {}
    if w is None:
        if guide is not None:
            raise EdgediffError("a guiding model needs a guidance scale (--guidance W)")
        if interval is not None:
            raise EdgediffError("a guidance interval needs a guidance scale (--guidance W)")
        return Conditioned(denoiser, labels, tensors=tensors)
    guided = _guided(denoiser, labels, check_guidance(w), guide, tensors)
    if interval is None:
        return guided
    return Interval(guided, Conditioned(denoiser, labels, tensors=tensors), interval)


def _guided(denoiser: Denoiser, labels: np.ndarray | None, w: float, guide: Denoiser | None,
            tensors: dict) -> Denoiser:
    info = denoiser.info
    if guide is not None:
        guide_labels = labels if guide.info.num_classes else None
        names = {t.name for t in guide.info.tensors}
        return Guided(Conditioned(denoiser, labels, tensors=tensors),
                      Conditioned(guide, guide_labels, tensors={
                          k: v for k, v in tensors.items() if k in names}), w)
    if not info.num_classes and not info.tensors:
        raise EdgediffError("classifier-free guidance needs a class-conditional model (or "
                            "one with tensor conditioning); for an unconditional one, guide "
                            "with a weaker model (--guide)")
    if info.num_classes and info.null_label is None and not info.tensors:
        raise EdgediffError(f"classifier-free guidance needs an unconditional class, and this "
                            f"model's {info.num_classes} classes are all real (openai's "
                            f"consistency models are trained so); guide with a weaker model "
                            f"(--guide) instead")
    if labels is None and info.num_classes:
        labels = np.full(1, info.null_label, np.int64)  # unguided: every pass is the null one
    if info.guidance_input:
        return Conditioned(denoiser, labels, guidance=w)
    null_labels = None if labels is None else np.full_like(labels, info.null_label)
    return Guided(Conditioned(denoiser, labels, tensors=tensors),
                  Conditioned(denoiser, null_labels), w)


def check_guide(info, guide_info) -> None:
    """Autoguidance's second model must describe the same samples: shape, σ range and
    (when it is conditional) the same classes."""
    problems = []
    if guide_info.sample_shape != info.sample_shape:
        problems.append(f"sample shape {guide_info.sample_shape} vs {info.sample_shape}")
    if (guide_info.sigma_min, guide_info.sigma_max) != (info.sigma_min, info.sigma_max):
        problems.append(f"σ range [{guide_info.sigma_min:g}, {guide_info.sigma_max:g}] vs "
                        f"[{info.sigma_min:g}, {info.sigma_max:g}]")
    if guide_info.num_classes and guide_info.num_classes != info.num_classes:
        problems.append(f"{guide_info.num_classes} classes vs {info.num_classes}")
    if guide_info.guidance_input:
        problems.append("the guide is a --guidance graph; export it without --guidance")
    if problems:
        raise EdgediffError("the guiding model does not match the guided one: "
                            + "; ".join(problems))
