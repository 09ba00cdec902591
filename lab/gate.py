"""The quality gate for reduced precision (fp16, bf16, int8): sample the same seeds
with the same solver at fp32 and at the reduced precision, and judge the difference
by what a user would see.

What is compared (``precision_gate``): the fp32 ``reference`` (ONNX Runtime) and the
``candidate`` (the same artifact on OpenVINO at bf16/f16, or an int8/fp16 export of
the same model) draw samples 0 … num−1 of one seed, so both start from the same x_T
and, for stochastic solvers, take the same noise. Against fp32: RMS and max |Δ| of
the samples, the sliced W2 between the two sample sets and, for digits, their
Fréchet distance in the shipped feature space. Against the data: each side's
distribution score (``edgediff.lab.quality.score_for``, the score ``bench`` prints:
FD to the held-out digits, SW2 to the exact mixture), with its real-vs-real floor.

The verdict (``verdict``, pure) is the worst of two criteria, with ``THRESHOLDS``:

- **Sample RMS vs fp32**, in units of the data's half range h (images in [−1, 1]:
  h = 1, one 8-bit grey level is 2/255 ≈ 0.008 h). Pass up to 0.05 h, about 6 grey
  levels RMS: side by side, the same image; it is also the fp16 export's own end-to-end
  limit. Fail beyond 0.10 h, about 13 grey levels RMS: samples that visibly differ
  from fp32's; the int8 export refuses a graph beyond it (``INT8_TOLERANCE``).
  Between the two: warn. max |Δ| is printed, not judged: over every pixel of every
  sample it is set by the one trajectory that tips towards another digit, and
  whether that matters is what the distribution score says.
- **Distance to the data**, the candidate's d_P against fp32's d_32. Warn when
  d_P > 1.10·d_32 + 0.05·floor, fail when d_P > 1.25·d_32 + 0.25·floor. The
  relative margins are read off solver choices a user already makes for speed: 10 %
  is the project's int8 target (docs/measurements/int8.md), less than Heun 18 →
  iPNDM 10 costs on digits (+6.6 % … +19 % for DPM++(2M) 10); past 25 % the
  precision costs more than halving the NFE does. The floor terms are the metric's
  own noise: two real sets of the floor's size lie a floor apart, and d_32 is one
  such noisy draw. The candidate shares fp32's seeds, so most of that noise cancels
  in d_P − d_32; a twentieth (a quarter) of the floor keeps a model whose d_32 is
  itself near zero (the exact mixture) from being judged on the metric's noise.
- Non-finite candidate samples fail.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError
from edgediff.lab.metrics import frechet_distance, sliced_wasserstein
from edgediff.lab.quality import reference_rms, score_for
from edgediff.runtime import RunOptions, sample
from edgediff.runtime._call import Denoiser

LEVELS = ("pass", "warn", "fail")
BENCH_NUM = 64  # samples per side of bench's gate; the sides share seeds, so small-n bias cancels
# the metadata that must agree for two artifacts to be one model
SAME_MODEL = ("parameterization", "schedule", "sigma_min", "sigma_max", "sigma_data",
              "sample_shape", "data_range", "source_sha256", "conditioning", "latent")


@dataclass(frozen=True)
class Thresholds:
    """Where pass ends and fail begins (the module docstring argues each number):
    sample RMS vs fp32 in units of the data's half range; the candidate's distance
    to the data as ``(1 + rel)·d_32 + floor_share·floor``."""

    rms_warn: float = 0.05
    rms_fail: float = 0.10
    rel_warn: float = 0.10
    floor_warn: float = 0.05
    rel_fail: float = 0.25
    floor_fail: float = 0.25

    def distance_limits(self, d_ref: float, floor: float) -> tuple[float, float]:
        """The distances to the data past which the candidate warns, and fails."""
        return (d_ref * (1 + self.rel_warn) + self.floor_warn * floor,
                d_ref * (1 + self.rel_fail) + self.floor_fail * floor)


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Verdict:
    level: str                       # pass, warn or fail
    reasons: tuple[str, ...] = ()    # one per criterion past its warn threshold


def verdict(rms: float, half_range: float, d_ref: float | None, d_cand: float | None,
            floor: float | None, *, finite: bool = True,
            thresholds: Thresholds = THRESHOLDS) -> Verdict:
    """pass/warn/fail: the worst of the sample RMS (in half ranges) and the distance
    to the data (skipped when the artifact has no score: ``d_ref`` None)."""
    t, found = thresholds, []
    if not finite:
        found.append(("fail", "the candidate's samples hold NaN or Inf"))
    else:
        share = rms / half_range
        level = "fail" if share > t.rms_fail else "warn" if share > t.rms_warn else "pass"
        if level != "pass":
            limit = t.rms_fail if level == "fail" else t.rms_warn
            found.append((level, f"sample RMS vs fp32 is {100 * share:.3g} % of the data's "
                                 f"half range (over {100 * limit:.3g} %)"))
    if finite and d_ref is not None and d_cand is not None:
        warn_at, fail_at = t.distance_limits(d_ref, floor or 0.0)
        level = "fail" if d_cand > fail_at else "warn" if d_cand > warn_at else "pass"
        if level != "pass":
            limit = fail_at if level == "fail" else warn_at
            found.append((level, f"distance to the data {d_cand:.4g} against fp32's "
                                 f"{d_ref:.4g} (over {limit:.4g})"))
    worst = max((LEVELS.index(lv) for lv, _ in found), default=0)
    return Verdict(LEVELS[worst], tuple(reason for _, reason in found))


def check_same_model(reference: ArtifactInfo, candidate: ArtifactInfo) -> None:
    """Refuse to compare artifacts of different models, naming what differs."""
    a, b = reference.to_props(), candidate.to_props()
    differ = [k for k in SAME_MODEL if a.get("edgediff." + k) != b.get("edgediff." + k)]
    if differ:
        shown = "; ".join(f"{k} {_short(a.get('edgediff.' + k))} vs "
                          f"{_short(b.get('edgediff.' + k))}" for k in differ)
        raise EdgediffError(f"the candidate is not the reference's model ({shown}); compare "
                            f"an export of the same model at another precision")


def _short(value: str | None) -> str:
    return "none" if value is None else value if len(value) <= 24 else value[:12] + "…"


@dataclass(frozen=True)
class GateOptions:
    """``num`` samples (0 … num−1 of ``seed``), ``batch`` at a time, with ``solver``,
    ``steps`` and ``options`` (None: the artifact's default solver), on ``sigmas`` (an
    exact grid, checked by ``edgediff.grids.exact_grid``) when given."""

    num: int = 256
    seed: int = 0
    batch: int = 32
    solver: str | None = None
    steps: int | None = None
    options: dict[str, Any] | None = None
    sigmas: list[float] | None = None

    def __post_init__(self):
        for name, low in (("num", 2), ("seed", 0), ("batch", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise EdgediffError(f"{name} must be an integer ≥ {low}, got {value!r}")


@dataclass
class GateResult:
    reference: str                 # what ran, e.g. "fp32, ONNX Runtime"
    candidate: str
    num: int
    seed: int
    solver: str
    rms: float                     # of candidate − fp32 samples
    max_abs: float
    sw2_vs_fp32: float
    fd_vs_fp32: float | None       # digits: in the shipped feature space
    score: str | None              # the distance to the data: FD or SW2
    distance_fp32: float | None
    distance: float | None
    floor: float | None
    half_range: float
    verdict: Verdict
    thresholds: Thresholds = field(default_factory=Thresholds)

    def lines(self) -> list[str]:
        """The table ``edgediff check --precision`` prints."""
        t, h = self.thresholds, self.half_range
        rows = [f"{self.candidate} against {self.reference}: {self.num} samples of "
                f"{self.solver}, seed {self.seed}",
                f"  {'RMS vs fp32':<26}{self.rms:>11.4g}   pass ≤ {t.rms_warn * h:g}, "
                f"fail > {t.rms_fail * h:g} ({t.rms_warn:g}/{t.rms_fail:g} of the half "
                f"range)",
                f"  {'max |Δ| vs fp32':<26}{self.max_abs:>11.4g}   (not judged)",
                f"  {'SW2 vs fp32':<26}{self.sw2_vs_fp32:>11.4g}"]
        if self.fd_vs_fp32 is not None:
            rows.append(f"  {'FD vs fp32 (features)':<26}{self.fd_vs_fp32:>11.4g}")
        if self.score is not None:
            warn_at, fail_at = t.distance_limits(self.distance_fp32, self.floor)
            rows += [f"  {self.score + ' to data, fp32':<26}{self.distance_fp32:>11.4g}",
                     f"  {self.score + ' to data, candidate':<26}{self.distance:>11.4g}   "
                     f"pass ≤ {warn_at:.4g}, fail > {fail_at:.4g} "
                     f"({1 + t.rel_warn:g}/{1 + t.rel_fail:g}·fp32 + "
                     f"{t.floor_warn:g}/{t.floor_fail:g}·floor)",
                     f"  {self.score + ' floor (real vs real)':<26}{self.floor:>11.4g}"]
        else:
            rows.append("  distance to data: this artifact names no reference data; "
                        "judged on RMS alone")
        return [*rows, f"verdict: {self.summary()}"]

    def summary(self) -> str:
        """One line: the verdict and the figures behind it."""
        parts = []
        if self.score is not None and self.distance_fp32:
            change = 100 * (self.distance / self.distance_fp32 - 1)
            parts.append(f"{self.score} {change:+.1f} % vs fp32")
        parts.append(f"RMS {100 * self.rms / self.half_range:.2g} % of half range")
        text = f"{self.verdict.level} ({', '.join(parts)}; {self.num} samples of {self.solver})"
        return text + "".join(f"; {r}" for r in self.verdict.reasons)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"], d["reasons"] = self.verdict.level, list(self.verdict.reasons)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in d.items()}


def label(denoiser: Denoiser) -> str:
    """What a denoiser computes at, and on what: "bf16, OpenVINO CPU"."""
    kind = type(denoiser).__name__
    if kind == "OpenVinoDenoiser":
        return f"{denoiser.precision}, OpenVINO {denoiser.device}"
    engine = {"OrtDenoiser": "ONNX Runtime", "TrtDenoiser": "TensorRT"}.get(kind, kind)
    return f"{denoiser.info.precision}, {engine}"


def precision_gate(reference: Denoiser, candidate: Denoiser, options: GateOptions | None = None,
                   *, thresholds: Thresholds | None = None,
                   progress: Callable[[int], None] | None = None) -> GateResult:
    """Sample the same seeds on ``reference`` (fp32) and ``candidate`` and judge the
    candidate (module docstring). ``progress(n)``: n more samples are done."""
    o, t = options or GateOptions(), thresholds or THRESHOLDS
    info = reference.info
    if info.precision != "fp32":
        raise EdgediffError(f"the reference must be an fp32 artifact, this one is "
                            f"{info.precision}; pass the fp32 export")
    check_same_model(info, candidate.info)
    last = [0]  # samples done in the current run

    def on_batch(stop, num):
        if progress is not None:
            progress(stop - last[0])
        last[0] = 0 if stop == num else stop

    run = RunOptions(batch=o.batch, on_batch=on_batch, sigmas=o.sigmas)
    kw = dict(seed=o.seed, solver=o.solver, steps=o.steps, options=o.options, run=run)
    x, y = sample(reference, o.num, **kw), sample(candidate, o.num, **kw)
    finite = bool(np.isfinite(y).all())
    score = score_for(info, o.num, o.seed)
    fd = None
    if finite and (info.reference or {}).get("name") == "digits":
        from edgediff.lab.features import DigitsFeatures

        features = DigitsFeatures()
        fd = max(frechet_distance(features(y), features(x)), 0.0)  # ≥ 0 but for rounding
    d = dict(info.default_solver) if o.solver is None else {"solver": o.solver, "steps": o.steps}
    what = d["solver"] + ("" if d.get("steps") is None else f" {d['steps']} steps")
    if o.sigmas is not None:
        what = f"{d['solver']} on σ's " + ", ".join(f"{v:.4g}" for v in o.sigmas[:-1])
    lo, hi = info.data_range
    result = GateResult(
        label(reference), label(candidate), o.num, o.seed,
        what,
        reference_rms(y, x) if finite else math.nan,
        float(np.abs(y.astype(np.float64) - x).max()) if finite else math.nan,
        sliced_wasserstein(y, x) if finite else math.nan, fd,
        score.name if score else None, score(x) if score else None,
        (score(y) if finite else math.nan) if score else None,
        score.floor if score else None, (hi - lo) / 2, Verdict("pass"), t)
    result.verdict = verdict(result.rms, result.half_range, result.distance_fp32,
                             result.distance, result.floor, finite=finite, thresholds=t)
    return result


def needs_gate(denoiser: Denoiser) -> bool:
    """Whether ``bench`` should judge this denoiser: a reduced-precision artifact, or an
    fp32 one that OpenVINO runs at bf16/f16."""
    return (denoiser.info.precision in ("int8", "fp16")
            or getattr(denoiser, "precision", "f32") in ("bf16", "f16"))


def bench_gate(denoiser: Denoiser, artifact: Path, reference: Path | None, *,
               num: int | None = None, seed: int = 0, batch: int = 32,
               threads: int | None = None) -> tuple[GateResult | None, str]:
    """``bench``'s gate on the default solver: the result (None when it could not run)
    and the line to print beside the speed table. The fp32 side is ``reference`` for an
    int8/fp16 artifact, else ``artifact`` itself on ONNX Runtime."""
    from edgediff import runtime

    if denoiser.info.precision != "fp32" and reference is None:
        return None, (f"gate: not run: judging this {denoiser.info.precision} artifact needs "
                      f"its fp32 export (--reference FILE)")
    fp32 = runtime.load(reference or artifact, threads=threads, max_batch=batch)
    result = precision_gate(fp32, denoiser, GateOptions(num=num or BENCH_NUM, seed=seed,
                                                        batch=batch))
    loud = "" if result.verdict.level == "pass" else "WARNING: "
    return result, f"{loud}gate: {result.summary()}"


def record_gate(folder: Path, result: GateResult | None, line: str) -> None:
    """Add the gate to ``folder``'s bench.json."""
    path = folder / "bench.json"
    data = json.loads(path.read_text())
    data["gate"] = result.as_dict() if result is not None else {"note": line}
    path.write_text(json.dumps(data, indent=1) + "\n")
