"""A user's own torch network → the usual artifact (docs/custom-models.md).

``export_denoiser`` wraps the network in the preconditioner its parameterization
names (``models/precond.py``; docs/design.md, "Maths"), calls it once on a probe
batch, and exports it through ``export_onnx``: traced, checked, validated against
torch with ONNX Runtime and moved into place only when all of that passed.

The network is called as ``net(x_in, c_noise)``, or ``net(x_in, c_noise, labels)``
when ``ModuleSpec.num_classes`` is set, and returns F shaped like ``x_in``:

- ``x_in`` [B, *sample_shape]: c_in(σ)·x̂, in the network's dtype;
- ``c_noise`` [B], float32 even under fp16 (cast it where you embed it): the
  fractional DDPM timestep t(σ) ∈ [0, T−1] for discrete ``eps``/``v``/``x0``,
  (M−1)·σ⁻¹(σ) for ``eps`` on a continuous VP schedule, ln(σ)/4 for ``edm``, σ
  itself for ``denoiser``, t·timestep_scale for ``flow`` (x_in is then x_t);
- ``labels``: one-hot rows [B, K] in x_in's dtype, the null id K being the zero
  row (``models.networks.one_hot_labels``), or with ``labels="ids"`` the int64 ids
  [B] as the graph receives them.

Then D(x̂; σ) = c_skip·x̂ + c_out·F (Karras et al. 2022 eq 7).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import numbers
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.export.int8 import Int8Validation
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.export.provenance import state_dict_sha256, write_provenance
from edgediff.export.trace import half_network
from edgediff.export.validation import Validation
from edgediff.fileio import atomic_path
from edgediff.models import precond
from edgediff.models.checkpoint import LoadedModel, make_config
from edgediff.models.networks import one_hot_labels
from edgediff.models.precond import Preconditioner
from edgediff.schedules import EDMSchedule, FlowSchedule, Schedule, VPSchedule

PARAMETERIZATIONS = {  # what F predicts, and the schedules it is defined on
    "eps": "the noise ε, on a DiscreteSchedule (DDPM table) or a continuous VPSchedule",
    "v": "v = (ε − σ·x0)/sqrt(σ²+1) (Salimans & Ho 2022), on a DiscreteSchedule",
    "x0": "the clean sample (diffusers' 'sample'), on a DiscreteSchedule",
    "edm": "EDM's raw F (Karras et al. 2022), any schedule (default EDMSchedule())",
    "denoiser": "D(x̂; σ) itself, any schedule (default EDMSchedule())",
    "flow": "the velocity v = ε − x0 of x_t = (1−t)x0 + tε, on a FlowSchedule (the default)",
    "consistency": "a consistency model's raw F (Song et al. 2023), the boundary condition at "
                   "the schedule's σ_min; an EDMSchedule (default EDMSchedule())",
}
LABELS = ("one_hot", "ids")


@dataclass(frozen=True)
class ModuleSpec:
    """What the artifact says about the network beyond its parameterization: the
    data's std ``sigma_data`` (EDM's preconditioning uses it) and range, and for a
    class-conditional network its ``num_classes`` K, the id of the unconditional
    pass ``null_label`` (default K) and how labels reach it (``labels``: "one_hot"
    rows formed inside the graph, or the "ids" as given). Checked here, once."""

    sigma_data: float = 0.5
    data_range: tuple[float, float] = (-1.0, 1.0)
    num_classes: int = 0
    null_label: int | None = None
    labels: str = "one_hot"

    def __post_init__(self) -> None:
        if not _real(self.sigma_data) or self.sigma_data <= 0:
            raise EdgediffError(f"sigma_data must be a finite number > 0, got "
                                f"{self.sigma_data!r}")
        pair = tuple(self.data_range) if isinstance(self.data_range, Sequence) else ()
        if len(pair) != 2 or not all(map(_real, pair)) or not pair[0] < pair[1]:
            raise EdgediffError(f"data_range must be two finite numbers (lo, hi) with lo < hi, "
                                f"got {self.data_range!r}")
        object.__setattr__(self, "data_range", (float(pair[0]), float(pair[1])))
        k, null = self.num_classes, self.null_label
        if not _integer(k) or k < 0:
            raise EdgediffError(f"num_classes must be an integer ≥ 0 (0: unconditional), got "
                                f"{k!r}")
        if null is not None and not k:
            raise EdgediffError("null_label: this network is not class-conditional; set "
                                "num_classes too")
        if null is not None and (not _integer(null) or not 0 <= null <= k):
            raise EdgediffError(f"null_label must be a class id in 0…{k} ({k}: the zero "
                                f"one-hot row), got {null!r}")
        if self.labels not in LABELS:
            raise EdgediffError(f"labels must be one of {', '.join(LABELS)}, got "
                                f"{self.labels!r}")


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


class _Network(nn.Module):
    """The calling convention of the module docstring, around the user's network."""

    def __init__(self, net: nn.Module, spec: ModuleSpec):
        super().__init__()
        self.net, self.num_classes, self.one_hot = net, spec.num_classes, spec.labels == "one_hot"

    def forward(self, x, c_noise, class_labels=None):
        if not self.num_classes:
            return self.net(x, c_noise)
        if self.one_hot:
            class_labels = one_hot_labels(class_labels, self.num_classes).to(x.dtype)
        return self.net(x, c_noise, class_labels)


class _PassThrough(Preconditioner):
    """``denoiser``: the network computes D itself: c_skip 0, c_out 1, c_in 1,
    c_noise σ (the artifact's parameterization ``denoiser``)."""

    parameterization = "denoiser"

    def coefficients(self, sigma):
        one = torch.ones_like(sigma)
        return torch.zeros_like(sigma), one, one, sigma


def precondition(net: nn.Module, *, parameterization: str, sample_shape: Sequence[int],
                 schedule: Schedule | None = None, spec: ModuleSpec = ModuleSpec(),
                 timestep_scale: float = 1.0) -> LoadedModel:
    """A float32 CPU copy of ``net`` inside its preconditioner, probed once, as the
    ``LoadedModel`` every exporter takes. ``net`` itself is left as it was."""
    if not isinstance(net, nn.Module):
        raise EdgediffError(f"net must be a torch.nn.Module, not {type(net).__name__}")
    if not isinstance(spec, ModuleSpec):
        raise EdgediffError(f"spec takes a ModuleSpec, not {type(spec).__name__}")
    shape = _sample_shape(sample_shape)
    schedule = _schedule(parameterization, schedule)
    network = _Network(copy.deepcopy(net).to("cpu").float().eval(), spec)
    if not _real(timestep_scale) or timestep_scale <= 0 or (
            timestep_scale != 1 and parameterization not in ("flow", "consistency")):
        raise EdgediffError(f"timestep_scale multiplies a flow network's t or a consistency "
                            f"network's ln(σ)/4: a finite number > 0, for parameterizations "
                            f"'flow' and 'consistency' only; got {timestep_scale!r}")
    if parameterization == "flow":
        denoiser = precond.FlowPrecond(network, timestep_scale).eval()
    elif parameterization == "consistency":
        denoiser = precond.ConsistencyPrecond(network, schedule.sigma_min, spec.sigma_data,
                                              timestep_scale).eval()
    else:
        denoiser = _preconditioner(parameterization, network, schedule, spec).eval()
    source = f"module:{type(net).__module__}.{type(net).__qualname__}"
    provenance = {"source": source, "source_sha256": state_dict_sha256(net),
                  "parameterization": parameterization,
                  **({"labels": spec.labels} if spec.num_classes else {})}
    config = make_config(source, {}, denoiser.parameterization, schedule, shape,
                         sigma_data=spec.sigma_data, data_range=spec.data_range,
                         provenance=provenance)
    if spec.num_classes:
        config["num_classes"] = spec.num_classes
        config["null_label"] = spec.num_classes if spec.null_label is None else spec.null_label
    model = LoadedModel(denoiser, config, schedule)
    _probe(model, model.denoiser, "float32")
    return model


def export_denoiser(net: nn.Module, path: str | Path, *, parameterization: str,
                    sample_shape: Sequence[int], schedule: Schedule | None = None,
                    spec: ModuleSpec = ModuleSpec(), options: ExportOptions = ExportOptions(),
                    timestep_scale: float = 1.0) -> Validation | Int8Validation | None:
    """Export a torch network to the artifact at ``path`` (docs/artifact.md), exactly as
    ``edgediff export`` does a checkpoint: ``options`` are its ``ExportOptions``
    (fp16, int8, guidance, tolerances, force). ``parameterization`` says what ``net``
    predicts (``PARAMETERIZATIONS``); ``schedule`` is required for ``eps``, ``v`` and
    ``x0`` (``DiscreteSchedule(alphas_cumprod)``, ``DiscreteSchedule.from_betas(...)``
    or, for ``eps``, ``VPSchedule()``); ``flow`` takes a ``FlowSchedule`` and a
    ``timestep_scale`` (1000 for diffusers' transformers); ``consistency`` an
    ``EDMSchedule`` whose σ_min is the boundary condition's, σ_data from ``spec``, and
    a ``timestep_scale`` on ln(σ)/4 (1000 for openai's consistency models). Returns the
    validation figures.

    The artifact's ``source_sha256`` is ``state_dict_sha256(net)``; the ONNX file's
    ``doc_string`` records the provenance as JSON: source ``module:<class>``, that
    hash, the parameterization and the label mode. Nothing is written on failure."""
    if not isinstance(options, ExportOptions):
        raise EdgediffError(f"options takes an ExportOptions, not {type(options).__name__}")
    model = precondition(net, parameterization=parameterization, sample_shape=sample_shape,
                         schedule=schedule, spec=spec, timestep_scale=timestep_scale)
    if options.fp16:  # the half network must run too (c_noise stays float32)
        _probe(model, half_network(model.denoiser), "float16")
    out = Path(path)
    if out.exists() and not options.force:
        raise EdgediffError(f"{out} exists; pass ExportOptions(force=True) to overwrite it")
    provenance = model.config["provenance"]
    with atomic_path(out) as tmp:  # export_onnx writes tmp atomically; we add provenance
        result = export_onnx(model, tmp, dataclasses.replace(options, force=True),
                             source_sha256=provenance["source_sha256"])
        write_provenance(tmp, provenance)
    return result


def _sample_shape(sample_shape) -> tuple[int, ...]:
    allowed = "one sample's shape without the batch axis, e.g. (1, 8, 8): positive integers"
    try:
        dims = tuple(sample_shape)
        if not dims or any(isinstance(d, bool) or operator.index(d) < 1 for d in dims):
            raise TypeError
    except TypeError:
        raise EdgediffError(f"sample_shape {sample_shape!r} is not allowed: {allowed}") from None
    return tuple(operator.index(d) for d in dims)


def _schedule(parameterization: str, schedule: Schedule | None) -> Schedule:
    if parameterization not in PARAMETERIZATIONS:
        known = "; ".join(f"{k} ({v})" for k, v in PARAMETERIZATIONS.items())
        raise EdgediffError(f"unknown parameterization {parameterization!r}; choose one of: "
                            f"{known}")
    if schedule is not None and not isinstance(schedule, Schedule):
        raise EdgediffError(f"schedule takes an edgediff Schedule (e.g. DiscreteSchedule("
                            f"alphas_cumprod), VPSchedule(), EDMSchedule()), not "
                            f"{type(schedule).__name__}")
    if parameterization in ("edm", "denoiser"):
        return EDMSchedule() if schedule is None else schedule
    if parameterization == "consistency":
        if schedule is None or isinstance(schedule, EDMSchedule):
            return schedule or EDMSchedule()
        raise EdgediffError(f"parameterization 'consistency' needs an EDMSchedule (its σ_min is "
                            f"the boundary's), not {schedule.name!r}")
    if parameterization == "flow":
        if schedule is None or isinstance(schedule, FlowSchedule):
            return schedule or FlowSchedule()
        raise EdgediffError(f"parameterization 'flow' needs a FlowSchedule, not {schedule.name!r}")
    discrete = isinstance(schedule, DiscreteSchedule)
    if discrete or (parameterization == "eps" and isinstance(schedule, VPSchedule)):
        return schedule
    vp = " or a continuous VPSchedule()" if parameterization == "eps" else ""
    given = "none was given" if schedule is None else f"not a {schedule.name!r} schedule"
    raise EdgediffError(f"parameterization {parameterization!r} needs a DDPM table{vp}; "
                        f"{given}: pass schedule=DiscreteSchedule.from_betas('linear') or "
                        f"DiscreteSchedule(alphas_cumprod)")


def _preconditioner(parameterization: str, network: nn.Module, schedule: Schedule,
                    spec: ModuleSpec) -> Preconditioner:
    if parameterization == "edm":
        return precond.EDMPrecond(network, sigma_data=spec.sigma_data)
    if parameterization == "denoiser":
        return _PassThrough(network)
    if isinstance(schedule, VPSchedule):  # eps on the continuous VP schedule
        return precond.VPPrecond(network, beta_min=schedule.beta_min, beta_d=schedule.beta_d)
    cls = {"eps": precond.EpsilonPrecond, "v": precond.VPredictionPrecond,
           "x0": precond.SamplePrecond}
    return cls[parameterization](network, schedule.alphas_cumprod)


def _probe(model: LoadedModel, denoiser: Preconditioner, precision: str) -> None:
    """Call the network once as the graph will (batch 2 at σ_min and σ_max, labels 0
    and null) and refuse what would not export: a signature that cannot take the
    convention's arguments, a failing call, an output not shaped like x_in, or one
    that is not finite."""
    cfg, network = model.config, denoiser.model
    name = cfg["provenance"]["source"].removeprefix("module:")
    k = cfg.get("num_classes", 0)
    args = ("x_in", "c_noise", "labels")[:3 if k else 2]
    try:
        inspect.signature(network.net.forward).bind(*args)
    except TypeError:
        raise EdgediffError(f"{name}.forward must take ({', '.join(args)}): num_classes is "
                            f"{k} (docs/custom-models.md)") from None
    shape = model.sample_shape
    x = torch.randn((2, *shape), generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([cfg["sigma_min"], cfg["sigma_max"]], dtype=torch.float32)
    labels = torch.tensor([0, cfg.get("null_label") or 0]) if k else None
    _, _, c_in, c_noise = denoiser.coefficients(sigma)
    dtype = next((p.dtype for p in network.parameters() if p.is_floating_point()), x.dtype)
    x_in = (c_in.reshape(-1, *[1] * len(shape)) * x).to(dtype)
    try:
        with torch.no_grad():
            out = network(x_in, c_noise, labels)
    except RuntimeError as e:
        raise EdgediffError(f"{name} failed on a probe batch x_in {tuple(x_in.shape)} "
                            f"({precision}): {e}; sample_shape {shape} is one sample's shape, "
                            f"without the batch axis") from e
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x_in.shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EdgediffError(f"{name} returned {got} for x_in of shape {tuple(x_in.shape)}: "
                            f"the network's output must have its input's shape "
                            f"[B, *sample_shape]")
    if not torch.isfinite(out).all():
        raise EdgediffError(f"{name} returned NaN or Inf ({precision}) on a probe batch at "
                            f"σ = {cfg['sigma_min']:g} and {cfg['sigma_max']:g}")
