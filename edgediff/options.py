"""Solver and grid options: each a typed value with a default, a valid range and
the reason for that range, so every front end (settings, presets, the CLI,
artifact metadata) refuses what the maths does not support, with the reason,
before any denoiser call."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgediff.errors import EdgediffError


@dataclass(frozen=True)
class Option:
    """One solver option: a float in [low, high], a bool, or one of ``choices``.
    ``why`` says where the range comes from; it is part of every refusal."""

    name: str
    default: Any
    low: float = -math.inf
    high: float = math.inf
    choices: tuple[str, ...] = ()
    infinite_ok: bool = False  # ±inf allowed (S_tmax: "churn everywhere above S_tmin")
    why: str = ""
    help: str = ""

    @property
    def kind(self) -> type:
        return str if self.choices else type(self.default)

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        if self.kind is int:
            return f"an integer from {self.low:g} to {self.high:g}"
        hi = "inf" if self.high == math.inf else f"{self.high:g}"
        return f"a number in [{self.low:g}, {hi}]" + ("" if self.infinite_ok else ", finite")

    def check(self, owner: str, value: Any) -> Any:
        """``value`` normalised (floats as float), or an EdgediffError that names the
        option, the value, what is allowed and why."""
        if self.choices:
            ok = isinstance(value, str) and value in self.choices
        elif self.kind is bool:
            ok = isinstance(value, bool)
        elif self.kind is int:
            ok = (isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
                  and self.low <= value <= self.high)
            value = int(value) if ok else value
        else:
            ok = (isinstance(value, int | float | np.integer | np.floating)
                  and not isinstance(value, bool | np.bool_)
                  and (math.isfinite(value) or (self.infinite_ok and not math.isnan(value)))
                  and self.low <= value <= self.high)
            value = float(value) if ok else value
        if not ok:
            why = f" ({self.why})" if self.why else ""
            raise EdgediffError(f"{owner}: {self.name} = {value!r} is not allowed; it takes "
                                f"{self.allowed()}{why}")
        return value


VARIANCE = Option("variance", "small", choices=("small", "large"),
                  help="ddpm: posterior (small) or jump (large) variance")
CLIP = Option("clip", False, help="ddpm, ddim, cm, lcm: clamp D to the model's data range at "
                                  "every step (diffusers' clip_sample, clip_denoised)")
CM_SIGMA_MIN = Option(
    "sigma_min", 0.002, 0.0,
    why="the consistency boundary σ_min: each step re-noises to σ' with std sqrt(σ'² − σ_min²)",
    help="cm, lcm: σ_min of the consistency boundary condition (openai's consistency models: "
         "0.002; LCM and k-diffusion's sample_lcm: 0)")
LCM_SIGMA_MIN = replace(CM_SIGMA_MIN, default=0.0)
ETA = Option("eta", 0.0, 0.0, 1.0,
             why="η scales the step noise c = η·σ_j·sqrt(1 − σ_j²/σ_i²); beyond 1 it asks for "
                 "more variance than the step has, σ_j² − c² < 0",
             help="ddim: stochasticity η (0: deterministic, 1: DDPM)")
S_CHURN = Option("S_churn", 0.0, 0.0, why="γ = min(S_churn/N, √2 − 1) must be ≥ 0",
                 help="edm: total churn S_churn")
S_TMIN = Option("S_tmin", 0.0, 0.0, why="a noise level", help="edm: churn only where σ ≥ S_tmin")
S_TMAX = Option("S_tmax", math.inf, 0.0, infinite_ok=True, why="a noise level",
                help="edm: churn only where σ ≤ S_tmax")
S_NOISE = Option("S_noise", 1.0, 0.0, 2.0,
                 why="S_noise inflates the churn noise's std (EDM uses 1.000–1.010); far "
                     "above 1 it adds more noise than the step removes",
                 help="edm: noise inflation S_noise")
ANCESTRAL_ETA = Option(
    "eta", 1.0, 0.0, 1.0,
    why="σ_up = η·σ_j·sqrt(1 − σ_j²/σ_i²) is the share of the step taken as fresh noise; "
        "beyond 1 it would exceed σ_j",
    help="euler_ancestral: ancestral noise η (0: Euler, 1: full ancestral step)")
SDE_ETA = Option(
    "eta", 1.0, 0.0, 1.0,
    why="η scales the Langevin part of the step, e^(−ηh) (1: the reverse SDE, 0: "
        "DPM-Solver++(2M))",
    help="dpmpp_2m_sde: SDE strength η (0: the ODE solver dpmpp_2m)")
IPNDM_ORDER = Option("order", 4, 1, 4, why="iPNDM's Adams–Bashforth formulas exist for orders 1–4",
                     help="ipndm, deis, unipc: the multistep order (lower orders warm it up)")
DEIS_ORDER = Option("order", 3, 1, 3, why="DEIS-tAB is used up to order 3 (Zhang & Chen 2023)",
                    help=IPNDM_ORDER.help)
UNIPC_ORDER = Option("order", 3, 1, 3, why="UniPC's B(h) predictor is defined here up to order 3",
                     help=IPNDM_ORDER.help)
DPMPP_3M_WEIGHTS = Option(
    "weights", "third_order", choices=("third_order", "published"),
    help="dpmpp_3m: the D2 term's weight: 2φ₃ (third_order, exact for a quadratic D in λ) or "
         "φ₃ (published: DPM-Solver's code, k-diffusion, diffusers and A1111, second order)")
DEIS_BASIS = Option("basis", "t", choices=("t", "log_rho"),
                    help="deis: extrapolate ε̂ in t (DEIS-tAB, the schedule's own time) or in "
                         "log_rho (log σ, as diffusers' DEISMultistepScheduler does)")

# Grid options: how the σ grid is laid out, for every solver (checked against the
# schedule when the grid is built).
GRID = Option("grid", "default", choices=("default", "rho", "lambda", "time"),
              help="σ grid: the schedule's own (default), EDM's ρ-grid (rho), uniform in "
                   "log-SNR (lambda), or uniform in the schedule's own time (time)")
SPACING = Option("spacing", "leading", choices=("leading", "trailing", "linspace"),
                 help="DDPM (discrete) models: timestep spacing of the default grid")
RHO = Option("rho", 7.0, 1.0, 1000.0,
             why="ρ < 1 crowds the steps at σ_max, and toward 0.5 the σ_min end cancels to 0; "
                 "past 1000 the grid is geometric to rounding",
             help="ρ-grids: the ρ of Karras et al. eq 5")
SHIFT = Option("shift", 1.0, 0.01, 100.0,
               why="t ↦ s·t/(1 + (s−1)·t) is a bijection of [0, 1] for every s > 0; beyond "
                   "[0.01, 100] the grid's steps collapse onto one end",
               help="flow models: SD3's timestep shift s of the default grid (default: the "
                    "schedule's own)")
MU = Option("mu", 0.0, -4.6, 4.6,
            why="diffusers' dynamic shifting is the shift s = e^μ; |μ| ≤ 4.6 keeps s in "
                "[0.01, 100] like the shift option",
            help="flow models: diffusers' dynamic shifting μ (shift e^μ; "
                 "edgediff.sigmas.dynamic_shift computes it from the token count)")
GRID_OPTIONS = (GRID, SPACING, RHO, SHIFT, MU)
