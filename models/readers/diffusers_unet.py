"""Reader of a local diffusers ``UNet2DModel`` folder, into edgediff's discrete wrappers.

Accepted layouts: a pipeline folder (``unet/`` and ``scheduler/`` inside) or a
UNet folder with ``scheduler_config.json`` beside its ``config.json``. Weights
load from safetensors only (diffusers' ``.bin`` files are pickles); nothing is
fetched from a hub. The scheduler config decides the σ table (beta schedule,
trained betas), the parameterization (``prediction_type``) and whether the
default solver clamps x0 (``clip_sample``: then the data range is
±``clip_sample_range`` and the exported default solver sets ``clip``).

A consistency folder (``CMStochasticIterativeScheduler``, the layout of openai's
``diffusers-cd_*``/``diffusers-ct_*`` releases) exports with the consistency
boundary condition folded in (``ConsistencyPrecond``: σ_min, σ_max, σ_data and
``clip_denoised`` from the scheduler config; the UNet takes 250·ln σ). Its
``num_class_embeds`` classes are all real, with no null class: such an artifact
refuses classifier-free guidance and needs a label for every sample.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
from torch import nn

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError, missing_extra
from edgediff.models.checkpoint import LoadedModel, make_config
from edgediff.models.precond import (
    ConsistencyPrecond,
    EpsilonPrecond,
    SamplePrecond,
    VPredictionPrecond,
)
from edgediff.schedules import EDMSchedule

log = logging.getLogger(__name__)
PREDICTION_TYPES = {"epsilon": EpsilonPrecond, "v_prediction": VPredictionPrecond,
                    "sample": SamplePrecond}
CLIPPING_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler")
DESCRIPTION = ("a local diffusers folder (a pipeline's, with unet/ and scheduler/, or a "
               "UNet2DModel's with scheduler_config.json beside its config.json)")


class DiffusersUNet(nn.Module):
    """F(x, c_noise) around a diffusers UNet2DModel; c_noise is the fractional timestep."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x, c_noise, class_labels=None):
        return self.unet(x, c_noise, class_labels=class_labels, return_dict=False)[0]


def can_read(path: Path) -> bool:
    """Any folder: ``load_diffusers`` says what a folder lacks to be a diffusers one."""
    return path.is_dir()


def read(path: Path, *, allow_pickle: bool = False) -> LoadedModel:
    """``load_diffusers``; its weights are safetensors only, so ``allow_pickle`` is unused."""
    return load_diffusers(path)


def weights(path: Path) -> Path:
    """The whole folder: its files' sha256 in name order (``fileio.sha256_of``)."""
    return path


def _find(folder: Path) -> tuple[Path, Path]:
    unet_dir = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    if not (unet_dir / "config.json").is_file():
        raise EdgediffError(f"{folder} is not a diffusers folder: no config.json in it or in "
                            f"{folder / 'unet'}")
    for cand in (folder / "scheduler" / "scheduler_config.json",
                 folder / "scheduler_config.json", unet_dir / "scheduler_config.json"):
        if cand.is_file():
            return unet_dir, cand
    raise EdgediffError(f"{folder} lacks its scheduler config: put the scheduler's "
                        f"scheduler_config.json in {folder / 'scheduler'} (save_pretrained of "
                        f"the scheduler writes it)")


def alphas_cumprod_from(scheduler_config: dict) -> np.ndarray:
    """ᾱ exactly as diffusers' DDPMScheduler computes it (float32), as float64."""
    from diffusers import DDPMScheduler

    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
            "rescale_betas_zero_snr")
    try:
        sched = DDPMScheduler(**{k: scheduler_config[k] for k in keys if k in scheduler_config})
    except (NotImplementedError, ValueError, TypeError) as e:
        raise EdgediffError(f"unsupported scheduler config: {e}") from None
    return sched.alphas_cumprod.double().numpy()


def clip_sample(scheduler_config: dict) -> tuple[bool, float]:
    """(clip_sample, its range) as the scheduler would read them: DDPMScheduler and
    DDIMScheduler clip by default, to ±1 unless ``clip_sample_range`` says otherwise."""
    default = scheduler_config.get("_class_name") in CLIPPING_SCHEDULERS
    clip = bool(scheduler_config.get("clip_sample", default))
    bound = scheduler_config.get("clip_sample_range", 1.0)
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound > 0:
        raise EdgediffError(f"clip_sample_range must be a number > 0, got {bound!r}")
    return clip, float(bound)


def config_names(folder: Path, subfolder: str, class_name: str) -> bool:
    """Whether ``folder``'s model config (``subfolder/config.json`` in a pipeline, else
    ``config.json``) names ``class_name``; only the file's first 64 KiB are read."""
    if not folder.is_dir():
        return False
    pattern = re.compile(rb'"_class_name"\s*:\s*"' + class_name.encode() + rb'"')
    for cand in (folder / subfolder / "config.json", folder / "config.json"):
        if cand.is_file():
            with open(cand, "rb") as f:
                return bool(pattern.search(f.read(65536)))
    return False


def scheduler_settings(sched_path: Path) -> tuple[dict, str]:
    """(the scheduler config, its prediction type), refused with one line when the
    file is unreadable or the prediction type is one edgediff does not read."""
    try:
        scfg = json.loads(sched_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EdgediffError(f"{sched_path} is not readable JSON: {e}") from None
    prediction = scfg.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise EdgediffError(f"prediction_type {prediction!r} in {sched_path} is not supported; "
                            f"edgediff reads {', '.join(PREDICTION_TYPES)}")
    return scfg, prediction


def load_pretrained(cls, model_dir: Path, what: str):
    """``cls.from_pretrained`` on a local folder, safetensors only (a ``.bin`` is a
    pickle, and edgediff does not unpickle); any failure is one EdgediffError."""
    if not (model_dir / "diffusion_pytorch_model.safetensors").is_file():
        raise EdgediffError(f"{model_dir} has no diffusion_pytorch_model.safetensors; edgediff "
                            f"does not unpickle .bin weights — convert them to safetensors")
    try:
        return cls.from_pretrained(model_dir, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise EdgediffError(f"could not load the {what} in {model_dir}: {e}") from None


def load_diffusers(folder: str | Path) -> LoadedModel:
    folder = Path(folder)
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise missing_extra("diffusers", "diffusers") from None
    unet_dir, sched_path = _find(folder)
    if '"CMStochasticIterativeScheduler"' in sched_path.read_text(errors="replace")[:65536]:
        return _consistency_folder(folder, unet_dir, sched_path)
    scfg, prediction = scheduler_settings(sched_path)
    if scfg.get("thresholding"):
        log.warning("%s sets thresholding; edgediff's solvers do not threshold x0 "
                    "dynamically, so samples can differ from that scheduler's", sched_path.name)
    clip, clip_range = clip_sample(scfg)
    unet = load_pretrained(UNet2DModel, unet_dir, "UNet")
    schedule = DiscreteSchedule(alphas_cumprod_from(scfg), {"source": "diffusers"})
    denoiser = PREDICTION_TYPES[prediction](DiffusersUNet(unet), schedule.alphas_cumprod).eval()
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    unet_args = json.loads(json.dumps(dict(unet.config), default=str))
    config = make_config("diffusers.UNet2DModel", unet_args, prediction, schedule,
                         (unet.config.in_channels, *size), data_range=(-clip_range, clip_range),
                         provenance={"source": str(folder), "scheduler": scfg.get("_class_name"),
                                     "timestep_spacing": scfg.get("timestep_spacing"),
                                     "steps_offset": scfg.get("steps_offset", 0),
                                     "clip_sample": clip})
    classes = class_embeds(unet)
    if classes:
        # diffusers has no null class of its own: classifier-free-guidance training
        # reserves one embedding for "no label", here the last (export --null-label)
        config["num_classes"] = int(classes) - 1 if classes > 1 else int(classes)
        config["null_label"] = int(classes) - 1
    return LoadedModel(denoiser, config, schedule)


def class_embeds(unet) -> int | None:
    """The UNet's ``num_class_embeds`` (None: unconditional); only integer labels."""
    if unet.config.get("num_class_embeds") and unet.config.get("class_embed_type") is not None:
        raise EdgediffError(f"class_embed_type {unet.config['class_embed_type']!r} is not "
                            f"supported; edgediff reads integer class labels")
    return unet.config.get("num_class_embeds")


def _consistency_folder(folder: Path, unet_dir: Path, sched_path: Path) -> LoadedModel:
    """A UNet2DModel with a CMStochasticIterativeScheduler: f(x, σ) with the boundary
    condition at the scheduler's σ_min, c_noise 250·ln σ (diffusers' ``sigma_to_t``)."""
    from diffusers import UNet2DModel

    try:
        scfg = json.loads(sched_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EdgediffError(f"{sched_path} is not readable JSON: {e}") from None
    sigma_min, sigma_max = scfg.get("sigma_min", 0.002), scfg.get("sigma_max", 80.0)
    sigma_data, rho = scfg.get("sigma_data", 0.5), scfg.get("rho", 7.0)
    clip = bool(scfg.get("clip_denoised", True))
    unet = load_pretrained(UNet2DModel, unet_dir, "UNet")
    schedule = EDMSchedule(sigma_min, sigma_max, rho)
    denoiser = ConsistencyPrecond(DiffusersUNet(unet), sigma_min, sigma_data,
                                  noise_scale=1000.0).eval()
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    unet_args = json.loads(json.dumps(dict(unet.config), default=str))
    config = make_config("diffusers.UNet2DModel", unet_args, "consistency", schedule,
                         (unet.config.in_channels, *size), sigma_data=sigma_data,
                         provenance={"source": str(folder), "scheduler": scfg.get("_class_name"),
                                     "clip_denoised": clip})
    classes = class_embeds(unet)
    if classes:  # openai's consistency models: every embedding is a real class, none is "no label"
        config["num_classes"], config["null_label"] = int(classes), None
    return LoadedModel(denoiser, config, schedule)
