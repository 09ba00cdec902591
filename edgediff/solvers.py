"""The solver catalogue shared by the torch reference and the NumPy runtime.

One frozen ``SolverSpec`` per solver: its NFE for N steps, whether it draws
step noise, whether it steps in the schedule's own time, its default step
count, and its options with their types, defaults and valid ranges. Both
implementations and every front end (settings, presets, the CLI, artifact
metadata) validate options here, so a value the maths does not support is
refused up front, with the reason, before any denoiser call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.schedules import EDMSchedule, Schedule

if TYPE_CHECKING:
    from edgediff.artifact import ArtifactInfo

EDM_IDENTITY = EDMSchedule()  # σ(t) = t, s = 1: stepping in (x̂, σ)


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
CLIP = Option("clip", False, help="ddpm, ddim: clamp D to the model's data range at every step "
                                  "(diffusers' clip_sample)")
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
GRID_OPTIONS = (GRID, SPACING, RHO)


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
               ordered=(("S_tmin", "S_tmax", "the churn window [S_tmin, S_tmax]"),)),
    SolverSpec("ddim", "DDIM(η) (Song et al. 2021, eq 12)", stochastic=True, default_steps=50,
               options=(ETA, CLIP), quiet_at_zero="eta"),
    SolverSpec("dpmpp_2m", "DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2)", default_steps=10),
    SolverSpec("euler_ancestral", "Euler ancestral (k-diffusion; Karras et al. 2022 σ-space)",
               stochastic=True, default_steps=35, options=(ANCESTRAL_ETA,), quiet_at_zero="eta"),
    SolverSpec("dpmpp_2m_sde", "DPM-Solver++(2M) SDE, midpoint (Lu et al. 2022, SDE-DPM-Solver++)",
               stochastic=True, default_steps=20, options=(SDE_ETA,), quiet_at_zero="eta"),
    SolverSpec("dpmpp_3m", "DPM-Solver++(3M), multistep data prediction (Lu et al. 2022)",
               default_steps=10, error_gain=4.0),
    SolverSpec("ipndm", "improved PNDM (Zhang & Chen 2023), Adams–Bashforth in σ",
               default_steps=10, options=(IPNDM_ORDER,), error_gain=160 / 24),
    SolverSpec("deis", "DEIS-tAB (Zhang & Chen 2023), exponential-integrator multistep",
               own_time=True, default_steps=10, options=(DEIS_ORDER, DEIS_BASIS),
               error_gain=4.0),
    SolverSpec("unipc", "UniPC, B(h) = e^h − 1 (bh2), with the UniC corrector (Zhao et al. 2023)",
               default_steps=10, options=(UNIPC_ORDER,), error_gain=4.0),
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


def check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise EdgediffError(f"steps must be an integer ≥ 1, got {steps!r}")
    return int(steps)


@dataclass
class SolverSettings:
    """A solver, its step count, and its options (solver and grid options), checked
    against the catalogue when made."""

    solver: str
    steps: int
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.solver = check_solver(self.solver)
        self.steps = check_steps(self.steps)
        self.options = spec(self.solver).check_options(dict(self.options))

    @property
    def spec(self) -> SolverSpec:
        return CATALOGUE[self.solver]

    @classmethod
    def resolve(cls, info: ArtifactInfo, solver: str | None = None, steps: int | None = None,
                options: dict[str, Any] | None = None) -> SolverSettings:
        """The artifact's default solver, overridden by what the caller gives."""
        default = dict(info.default_solver)
        default_solver = default.pop("solver", "heun")
        default_steps = default.pop("steps", None)
        solver = check_solver(solver or default_solver)
        if solver == default_solver:
            base = default
        else:  # keep only the defaults that make sense for the chosen solver
            names = {o.name for o in CATALOGUE[solver].options + GRID_OPTIONS}
            base = {k: v for k, v in default.items() if k in names}
        if steps is None:
            steps = (default_steps if solver == default_solver and default_steps is not None
                     else CATALOGUE[solver].default_steps)
        return cls(solver, steps, {**base, **(options or {})})


def loop_options(info: ArtifactInfo, settings: SolverSettings) -> dict[str, Any]:
    """The keyword arguments a step loop takes for ``settings`` on this artifact (the
    same for the torch reference): solver options, the schedule for loops in its
    own time, and ``clip`` as the data range."""
    grid = {o.name for o in GRID_OPTIONS}
    kwargs = {k: v for k, v in settings.options.items() if k not in grid}
    if kwargs.pop("clip", False):
        kwargs["clip"] = info.data_range
    if settings.spec.own_time:
        kwargs["schedule"] = info.schedule
    return kwargs


def churn_gamma(S_churn: float, steps: int) -> float:
    """EDM Algorithm 2's γ_i inside the churn window: min(S_churn/N, √2 − 1)."""
    return min(S_churn / steps, math.sqrt(2) - 1)


def ddpm_step(sig: float, sig_next: float, variance: str) -> tuple[float, float]:
    """One DDPM ancestral step from σ_i to σ_j in x̂-coordinates (DESIGN.md §2):
    x̂' = r·x̂ + (1 − r)·D + std·z with r = σ_j²/σ_i² and std² the posterior
    ("small", σ_j²(1 − r)) or the jump's ("large", (σ_i² − σ_j²)(1 + σ_j²)/(1 + σ_i²))
    variance. Returns (r, std)."""
    r = (sig_next / sig) ** 2
    if variance == "small":
        v = sig_next**2 * (1 - r)
    else:
        v = (sig**2 - sig_next**2) * (1 + sig_next**2) / (1 + sig**2)
    return r, v**0.5


def check_sigmas(sigmas) -> list[float]:
    """Validate a σ grid (decreasing, positive, ending in 0) and return float64 scalars."""
    s = np.asarray(sigmas, dtype=np.float64)
    if s.ndim != 1 or s.size < 2:
        raise EdgediffError(f"a σ grid needs at least 2 values (one step), got shape {s.shape}")
    if s[-1] != 0.0 or np.any(s[:-1] <= 0) or np.any(np.diff(s) >= 0) or not np.all(np.isfinite(s)):
        raise EdgediffError("a σ grid must be finite, strictly decreasing, positive, and end in 0")
    return s.tolist()


class GridTable:
    """σ(t), σ̇, s, ṡ, f, g at every grid point but the final σ = 0, as float64
    scalars: what the step loops of both implementations read per step."""

    def __init__(self, schedule: Schedule, sigmas: list[float]):
        t = schedule.sigma_inv(np.asarray(sigmas[:-1]))
        self.t = t.tolist()
        self.sigma = schedule.sigma(t).tolist()
        self.sigma_deriv = schedule.sigma_deriv(t).tolist()
        self.s = schedule.s(t).tolist()
        self.s_deriv = schedule.s_deriv(t).tolist()
        self.f = schedule.f(t).tolist()
        self.g = schedule.g(t).tolist()

    def ode_coefficients(self, i: int) -> tuple[float, float]:
        """(a, b) of the PF-ODE (seed 003 eq 11) at grid point i:
        dx/dt = (σ̇/σ + ṡ/s)·x − (σ̇·s/σ)·D(x/s; σ) = a·x − b·D."""
        sig, dsig, s, ds = self.sigma[i], self.sigma_deriv[i], self.s[i], self.s_deriv[i]
        return dsig / sig + ds / s, dsig * s / sig

    def heun_step(self, i: int) -> tuple[float, float, float, float, float]:
        """Heun's step i → i+1 on dx/dt = a·x − b·D, written as linear combinations:
        the predictor's model input x_e/s_{i+1} = c_x·x + c_d·D_i, where
        x_e = x + Δt·(a_i·x − b_i·D_i), and the corrected state
        x' = x + Δt/2·(a_i·x − b_i·D_i + a_{i+1}·x_e − b_{i+1}·D_e) = α·x + β·D_i + γ·D_e.
        Returns (c_x, c_d, α, β, γ)."""
        (a, b), (a_e, b_e) = self.ode_coefficients(i), self.ode_coefficients(i + 1)
        dt, s_e = self.t[i + 1] - self.t[i], self.s[i + 1]
        return ((1 + dt * a) / s_e, -dt * b / s_e,
                1 + 0.5 * dt * (a + a_e * (1 + dt * a)), -0.5 * dt * b * (1 + dt * a_e),
                -0.5 * dt * b_e)

