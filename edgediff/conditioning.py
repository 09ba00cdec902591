"""What both guided denoisers share (the runtime's and the torch reference's)."""

from __future__ import annotations

import math

import numpy as np

from edgediff.errors import EdgediffError


def check_guidance(w) -> float:
    """A guidance scale: finite and ≥ 0 (w < 0 would guide away from the condition)."""
    if isinstance(w, bool) or not isinstance(w, int | float | np.integer | np.floating) \
            or not math.isfinite(w) or w < 0:
        raise EdgediffError(f"the guidance scale must be a finite number ≥ 0 (1: the "
                            f"conditional model alone, 0: the unconditional one), got {w!r}")
    return float(w)


def check_interval(interval) -> tuple[float, float] | None:
    """A guidance interval (Kynkäänniemi et al. 2024): guided calls only for σ in
    (lo, hi], plain conditional calls outside. None: guidance at every σ. hi may be
    inf (from lo up to the top of the grid)."""
    if interval is None:
        return None
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise EdgediffError(f"a guidance interval is two σ's LO HI, got {interval!r}") from None
    if not (math.isfinite(lo) and lo >= 0 and hi > lo) or math.isnan(hi):
        raise EdgediffError(f"a guidance interval needs 0 ≤ LO < HI (σ's; guided for LO < σ ≤ "
                            f"HI), got {lo:g} {hi:g}")
    return lo, hi


def inside(interval: tuple[float, float] | None, sigma):
    """Which σ's (an array or a number) get guidance: LO < σ ≤ HI; all without an
    interval. Works on NumPy and torch alike."""
    if interval is None:
        return sigma == sigma
    lo, hi = interval
    return (sigma > lo) & (sigma <= hi)


def guidance_gain(w: float) -> float:
    """How much D = w·D_c + (1 − w)·D_u amplifies errors in D_c and D_u: |w| + |1 − w|
    (1 for 0 ≤ w ≤ 1). Multiply a float32 drift bound by it (edgediff.tolerance)."""
    return abs(w) + abs(1 - w)


def check_labels(info, labels, num: int) -> np.ndarray | None:
    """Class ids for ``num`` samples as int64 [num] (one id broadcasts), or None for
    none. Ids run 0…K−1; the artifact's null id asks for an unconditional pass."""
    if labels is None:
        if info.num_classes and info.null_label is None:
            raise EdgediffError(f"this model has {info.num_classes} real classes and no "
                                f"unconditional one: give every sample a class label (--class)")
        return None
    if not info.num_classes:
        raise EdgediffError("this model is not class-conditional: it takes no class labels "
                            "(edgediff info shows a model's conditioning)")
    arr = np.asarray(labels)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer) or arr.ndim > 1:
        raise EdgediffError(f"class labels are whole numbers, one per sample or one for all; "
                            f"got {labels!r}")
    arr = np.broadcast_to(arr.astype(np.int64).reshape(-1), (num,)) if arr.size == 1 \
        else arr.astype(np.int64)
    if arr.shape != (num,):
        raise EdgediffError(f"{arr.size} class labels for {num} samples; give one per sample or "
                            f"one for all")
    bad = arr[((arr < 0) | (arr >= info.num_classes)) & (arr != info.null_label)]
    if bad.size:
        none = "" if info.null_label is None else f" (and {info.null_label} for none)"
        raise EdgediffError(f"class label {int(bad[0])} is out of range: this model has classes "
                            f"0…{info.num_classes - 1}{none}")
    return arr


def labels_from_text(text: str | None, info, num: int) -> np.ndarray | None:
    """--class: one id (every sample), a comma-separated list or ``all`` (then --num
    samples of each listed class, one grid row per class)."""
    if text is None:
        return None
    if not info.num_classes:
        raise EdgediffError("--class: this model is not class-conditional (edgediff info "
                            "shows a model's conditioning)")
    if text.strip() == "all":
        ids = list(range(info.num_classes))
    else:
        try:
            ids = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise EdgediffError(f"--class takes an id, a comma-separated list of ids or "
                                f"'all', got {text!r}") from None
        if not ids:
            raise EdgediffError("--class names no class")
    check_labels(info, ids, len(ids))
    return np.repeat(np.array(ids, np.int64), num) if len(ids) > 1 or text.strip() == "all" \
        else np.full(num, ids[0], np.int64)




def tensors_from_files(pairs, info, num: int) -> dict[str, np.ndarray] | None:
    """--cond NAME=FILE.npy (repeatable): tensor conditioning read from .npy files
    (never pickles), checked against the artifact for ``num`` samples."""
    from edgediff.tensor_conditioning import check_tensors

    if not pairs:
        return None
    tensors = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise EdgediffError(f"--cond takes NAME=FILE.npy, got {pair!r}")
        if name in tensors:
            raise EdgediffError(f"--cond gives {name} twice")
        try:
            tensors[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise EdgediffError(f"--cond {name}: cannot read {path} as a .npy array: "
                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
                                ) from None
    try:
        return check_tensors(info.tensors, tensors, num)
    except EdgediffError as e:
        raise EdgediffError(f"--cond: {e}") from None
