"""The solver catalogue shared by the torch reference and the NumPy runtime.

One frozen ``SolverSpec`` per solver: its NFE for N steps, whether it draws
step noise, whether it steps in the schedule's own time, its default step
count, and its options (``edgediff.options``). Both implementations register
their step loops against it by name (``implements``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from edgediff.errors import EdgediffError
from edgediff.options import (
    ANCESTRAL_ETA,
    CLIP,
    CM_SIGMA_MIN,
    DEIS_BASIS,
    DEIS_ORDER,
    DPMPP_3M_WEIGHTS,
    ETA,
    GRID_OPTIONS,
    IPNDM_ORDER,
    LCM_SIGMA_MIN,
    S_CHURN,
    S_NOISE,
    S_TMAX,
    S_TMIN,
    SDE_ETA,
    UNIPC_ORDER,
    VARIANCE,
    Option,
)


@dataclass(frozen=True)
class SolverSpec:
    """What every part of edgediff knows about one solver."""

    name: str
    summary: str
    calls_per_step: int = 1
    saved_on_last: int = 0  # Heun-type: the last step to σ = 0 is Euler
    stochastic: bool = False  # draws step noise
    own_time: bool = False  # steps in the schedule's own t (else in (x̂, σ))
    default_steps: int = 18
    options: tuple[Option, ...] = ()
    # pairs (a, b) of options that must satisfy a ≤ b, and why
    ordered: tuple[tuple[str, str, str], ...] = field(default=())
    # a stochastic solver whose noise this option switches off at 0 (DDIM's η)
    quiet_at_zero: str | None = None
    # the largest total weight with which one call's rounding reaches the final
    # sample (edgediff.tolerance, point 2): Σ over the steps that reuse one D
    error_gain: float = 1.5
    # the loop takes its options as one value: (keyword, frozen dataclass)
    bundle: tuple[str, type] | None = None

    def nfe(self, steps: int) -> int:
        """Denoiser evaluations for ``steps`` steps."""
        return self.calls_per_step * steps - self.saved_on_last

    def option(self, name: str) -> Option:
        for opt in self.options + GRID_OPTIONS:
            if opt.name == name:
                return opt
        names = ", ".join(o.name for o in self.options + GRID_OPTIONS)
        raise EdgediffError(f"{self.name} takes no option {name}; its options are {names}")

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Every option type- and range-checked; unknown ones refused."""
        if not isinstance(options, dict):
            raise EdgediffError(f"{self.name}: options must be a mapping of name: value, got "
                                f"{options!r}")
        unknown = sorted(str(k) for k in options
                         if k not in {o.name for o in self.options + GRID_OPTIONS})
        if unknown:
            names = ", ".join(o.name for o in self.options + GRID_OPTIONS)
            raise EdgediffError(f"{self.name} takes no option {', '.join(unknown)}; its options "
                                f"are {names}")
        out = {k: self.option(k).check(self.name, v) for k, v in options.items()}
        for a, b, why in self.ordered:
            va = out.get(a, self.option(a).default)
            vb = out.get(b, self.option(b).default)
            if not va <= vb:
                raise EdgediffError(f"{self.name}: {a} = {va:g} > {b} = {vb:g}; need {a} ≤ {b} "
                                    f"({why})")
        return out

    def defaults(self, **given: Any) -> dict[str, Any]:
        """The loop options with their defaults, overridden by ``given`` (checked)."""
        checked = self.check_options(given)
        return {o.name: checked.get(o.name, o.default) for o in self.options}

    def deterministic(self, options: dict[str, Any]) -> bool:
        """Whether a run with ``options`` draws no noise (so has a reference solution)."""
        if not self.stochastic:
            return True
        if self.quiet_at_zero is None:
            return False
        return float(options.get(self.quiet_at_zero, self.option(self.quiet_at_zero).default)) \
            == 0.0

    def loop(self, side: str):
        """The registered implementation: ``side`` "numpy" (the runtime) or "torch" (the
        reference). Each side's package registers its loops when imported."""
        try:
            return _LOOPS[self.name, side]
        except KeyError:
            raise EdgediffError(f"no {side} implementation of {self.name} is registered; import "
                                f"{'edgediff.runtime' if side == 'numpy' else 'edgediff.samplers'}"
                                f" first") from None


_LOOPS: dict[tuple[str, str], Any] = {}


def implements(name: str, side: str):
    """Register a step loop as the ``side`` ("numpy" or "torch") implementation of the
    catalogue's solver ``name``; the spec must exist first."""
    if side not in ("numpy", "torch"):
        raise ValueError(f"side must be 'numpy' or 'torch', got {side!r}")
    spec(name)

    def register(fn):
        _LOOPS[name, side] = fn
        return fn
    return register


@dataclass(frozen=True)
class Churn:
    """EDM's churn (Karras et al. 2022, Algorithm 2) as one value: the ``edm``
    solver's options S_churn, S_tmin, S_tmax, S_noise, checked against the
    catalogue when made."""

    S_churn: float = 0.0
    S_tmin: float = 0.0
    S_tmax: float = math.inf
    S_noise: float = 1.0

    def __post_init__(self):
        for name, value in spec("edm").check_options(asdict(self)).items():
            object.__setattr__(self, name, value)

    def gamma(self, t: float, steps: int) -> float:
        """γ_i = min(S_churn/N, √2 − 1) where S_tmin ≤ t_i ≤ S_tmax, else 0."""
        if not self.S_tmin <= t <= self.S_tmax:
            return 0.0
        return min(self.S_churn / steps, math.sqrt(2) - 1)


CATALOGUE: dict[str, SolverSpec] = {s.name: s for s in (
    SolverSpec("ddpm", "ancestral posterior step (Ho et al. 2020, Algorithm 2)",
               stochastic=True, default_steps=1000, options=(VARIANCE, CLIP)),
    SolverSpec("euler_maruyama", "reverse SDE, Euler–Maruyama in the schedule's own time",
               stochastic=True, own_time=True, default_steps=1000),
    SolverSpec("euler", "PF-ODE, Euler", own_time=True, default_steps=50),
    SolverSpec("heun", "PF-ODE, Heun (Karras et al. 2022, Algorithm 1)", calls_per_step=2,
               saved_on_last=1, own_time=True, default_steps=18),
    SolverSpec("edm", "EDM's stochastic solver (Karras et al. 2022, Algorithm 2)",
               calls_per_step=2, saved_on_last=1, stochastic=True, default_steps=64,
               options=(S_CHURN, S_TMIN, S_TMAX, S_NOISE), quiet_at_zero="S_churn",
               ordered=(("S_tmin", "S_tmax", "the churn window [S_tmin, S_tmax]"),),
               bundle=("churn", Churn)),
    SolverSpec("ddim", "DDIM(η) (Song et al. 2021, eq 12)", stochastic=True, default_steps=50,
               options=(ETA, CLIP), quiet_at_zero="eta"),
    SolverSpec("dpmpp_2m", "DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2)", default_steps=10),
    SolverSpec("euler_ancestral", "Euler ancestral (k-diffusion; Karras et al. 2022 σ-space)",
               stochastic=True, default_steps=35, options=(ANCESTRAL_ETA,), quiet_at_zero="eta"),
    SolverSpec("dpmpp_2m_sde", "DPM-Solver++(2M) SDE, midpoint (Lu et al. 2022, SDE-DPM-Solver++)",
               stochastic=True, default_steps=20, options=(SDE_ETA,), quiet_at_zero="eta"),
    SolverSpec("dpmpp_3m", "DPM-Solver++(3M), multistep data prediction (Lu et al. 2022)",
               default_steps=10, options=(DPMPP_3M_WEIGHTS,), error_gain=4.0),
    SolverSpec("ipndm", "improved PNDM (Zhang & Chen 2023), Adams–Bashforth in σ",
               default_steps=10, options=(IPNDM_ORDER,), error_gain=160 / 24),
    SolverSpec("deis", "DEIS-tAB (Zhang & Chen 2023), exponential-integrator multistep",
               own_time=True, default_steps=10, options=(DEIS_ORDER, DEIS_BASIS),
               error_gain=4.0),
    SolverSpec("unipc", "UniPC, B(h) = e^h − 1 (bh2), with the UniC corrector (Zhao et al. 2023)",
               default_steps=10, options=(UNIPC_ORDER,), error_gain=4.0),
    SolverSpec("cm", "multistep consistency sampling (Song et al. 2023, Algorithm 1)",
               stochastic=True, default_steps=2, options=(CM_SIGMA_MIN, CLIP)),
    SolverSpec("lcm", "cm with σ_min = 0: LCM's loop (Luo et al. 2023), k-diffusion's sample_lcm",
               stochastic=True, default_steps=4, options=(LCM_SIGMA_MIN, CLIP)),
)}
SOLVER_NAMES = tuple(CATALOGUE)


def options_by_name() -> dict[str, list[Option]]:
    """Every option of the catalogue (solver and grid options), grouped by name: the
    front ends offer one flag per name (several solvers take an ``eta``)."""
    out: dict[str, list[Option]] = {}
    for s in (*CATALOGUE.values(), None):
        for opt in (s.options if s else GRID_OPTIONS):
            if opt not in out.setdefault(opt.name, []):
                out[opt.name].append(opt)
    return out


def spec(name: str) -> SolverSpec:
    """The catalogue's entry for ``name``, or a clear error."""
    if not isinstance(name, str) or name not in CATALOGUE:
        raise EdgediffError(f"unknown solver {name!r}; choose one of {', '.join(SOLVER_NAMES)}")
    return CATALOGUE[name]


def check_solver(name: str) -> str:
    return spec(name).name


def loop_defaults(name: str, **given: Any) -> dict[str, Any]:
    """A step loop's options, checked, with defaults: the one place both
    implementations validate what they are called with."""
    return spec(name).defaults(**given)


def nfe(name: str, steps: int) -> int:
    """Denoiser evaluations for ``steps`` steps (Heun-type: 2 per step, 1 on the last)."""
    return spec(name).nfe(steps)


def steps_for_nfe(name: str, n: int) -> int:
    """The step count that spends ``n`` denoiser calls (rounded up for Heun-type solvers)."""
    s = spec(name)
    if n < s.calls_per_step - s.saved_on_last:
        raise EdgediffError(f"{name} needs at least {s.calls_per_step - s.saved_on_last} NFE, "
                            f"got {n}")
    return -(-(n + s.saved_on_last) // s.calls_per_step)
