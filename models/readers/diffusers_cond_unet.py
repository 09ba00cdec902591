"""Reader of a local diffusers ``UNet2DConditionModel`` folder (Stable Diffusion's
UNet and its kin): a tensor-conditioned artifact D(x̂, σ, encoder_hidden_states).

Layouts, weights and the scheduler are read as for ``UNet2DModel``
(``diffusers_unet``): a pipeline folder (``unet/`` and ``scheduler/``) or a UNet
folder with ``scheduler_config.json``; safetensors only; nothing fetched.

The artifact declares ``encoder_hidden_states`` float32 [seq, cross_attention_dim]
(``edgediff.tensor_conditioning``). Text encoders stay outside edgediff, so:

- its null value (classifier-free guidance's unconditional pass) is the array in
  ``null_encoder_hidden_states.npy`` in the folder (or its ``unet/``), for
  Stable Diffusion the text encoder's embedding of the empty prompt, saved by the
  user; without that file it is the zero tensor (logged), which is *not* what
  Stable Diffusion was trained with;
- seq is that file's first axis, else the text encoder's
  ``max_position_embeddings`` (``text_encoder/config.json``), else 77 (CLIP's).

With an ``LCMScheduler`` the folder is a latent consistency model: the graph
returns the scheduler's boundary-conditioned ``denoised`` (``LCMPrecond``), which
the ``lcm`` solver steps on. A w-conditioned LCM (``time_cond_proj_dim`` set)
takes the guidance scale as a second declared input, ``guidance_scale`` [1]: the
scale diffusers' pipeline takes (1: no guidance), whose "null" is the default a
caller who leaves it out gets (8.5, the pipeline's); the graph embeds
w = guidance_scale − 1 as the pipeline does (sinusoidal, 1000·w), so one call
per step carries the guidance.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError, missing_extra
from edgediff.models.checkpoint import LoadedModel, make_config
from edgediff.models.readers.diffusers_unet import (
    PREDICTION_TYPES,
    _find,
    alphas_cumprod_from,
    clip_sample,
    config_names,
    load_pretrained,
    scheduler_settings,
)
from edgediff.tensor_conditioning import declare

log = logging.getLogger(__name__)
DESCRIPTION = ("a local diffusers UNet2DConditionModel folder (unet/ and scheduler/, or "
               "scheduler_config.json beside its config.json)")
INPUT = "encoder_hidden_states"
NULL_FILE = "null_encoder_hidden_states.npy"
DEFAULT_SEQ = 77  # CLIP's context length
W_INPUT, W_DEFAULT = "guidance_scale", 8.5  # a w-conditioned LCM's input; the pipeline's default


class DiffusersCondUNet(nn.Module):
    """F(x, c_noise, encoder_hidden_states) around a diffusers UNet2DConditionModel;
    c_noise is the fractional timestep. The preconditioner passes its third
    argument through to the network, so the embedding rides in that slot."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x, c_noise, encoder_hidden_states):
        return self.unet(x, c_noise, encoder_hidden_states=encoder_hidden_states,
                         return_dict=False)[0]


class WConditionedUNet(DiffusersCondUNet):
    """A w-conditioned LCM's network: the conditioning slot carries
    (encoder_hidden_states, the guidance embedding), the latter as ``timestep_cond``."""

    def forward(self, x, c_noise, conditioning):
        encoder_hidden_states, w_embedding = conditioning
        return self.unet(x, c_noise, encoder_hidden_states=encoder_hidden_states,
                         timestep_cond=w_embedding, return_dict=False)[0]


class TextConditioned(nn.Module):
    """D(x̂, σ, encoder_hidden_states): the export's calling convention
    (``export/trace.py``: tensors by name) around the preconditioned network."""

    def __init__(self, precond: nn.Module):
        super().__init__()
        self.model = precond.model  # half_network (fp16 export) finds the network here
        self.precond = precond

    def forward(self, x, sigma, encoder_hidden_states):
        return self.precond(x, sigma, encoder_hidden_states.to(x.dtype))


class GuidanceEmbedded(TextConditioned):
    """D(x̂, σ, encoder_hidden_states, guidance_scale [B, 1]): a w-conditioned LCM, the
    embedding of w = guidance_scale − 1 computed in the graph, as diffusers' LCM
    pipeline computes it (``get_timestep_embedding`` of 1000·w, sin before cos, the
    frequency ramp over half − 1)."""

    def __init__(self, precond: nn.Module, dim: int):
        super().__init__(precond)
        self.dim = int(dim)

    def forward(self, x, sigma, encoder_hidden_states, guidance_scale):
        from diffusers.models.embeddings import get_timestep_embedding

        w = (guidance_scale.reshape(-1).to(torch.float32) - 1) * 1000
        emb = get_timestep_embedding(w, self.dim, flip_sin_to_cos=False,
                                     downscale_freq_shift=1)
        return self.precond(x, sigma, (encoder_hidden_states.to(x.dtype), emb.to(x.dtype)))


def can_read(path: Path) -> bool:
    """A folder whose (unet's) config.json names UNet2DConditionModel."""
    return config_names(path, "unet", "UNet2DConditionModel")


def read(path: Path, *, allow_pickle: bool = False) -> LoadedModel:
    """``load_cond_unet``; safetensors only, so ``allow_pickle`` is unused."""
    return load_cond_unet(path)


def weights(path: Path) -> Path:
    """The whole folder (its files' sha256 in name order), the null file included."""
    return path


def _null(folder: Path, unet_dir: Path, width: int) -> tuple[np.ndarray | None, int]:
    """The folder's null embedding (None: zeros) and the sequence length."""
    for cand in (folder / NULL_FILE, unet_dir / NULL_FILE):
        if cand.is_file():
            try:
                null = np.load(cand, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise EdgediffError(f"{cand} is not a readable .npy array: {e}") from None
            null = null[0] if null.ndim == 3 and len(null) == 1 else null  # [1, seq, dim]
            if null.ndim != 2 or null.shape[1] != width \
                    or not np.issubdtype(null.dtype, np.floating):
                raise EdgediffError(f"{cand} has shape {list(null.shape)} ({null.dtype}); the "
                                    f"UNet takes a float [seq, {width}] embedding")
            return null.astype(np.float32), int(null.shape[0])
    seq = DEFAULT_SEQ
    text_cfg = folder / "text_encoder" / "config.json"
    if text_cfg.is_file():
        seq = int(json.loads(text_cfg.read_text()).get("max_position_embeddings", seq))
    log.warning("%s has no %s: the unconditional pass of classifier-free guidance feeds "
                "zeros [%d, %d]; for Stable Diffusion save the text encoder's empty-prompt "
                "embedding there", folder, NULL_FILE, seq, width)
    return None, seq


def load_cond_unet(folder: str | Path) -> LoadedModel:
    folder = Path(folder)
    try:
        from diffusers import UNet2DConditionModel
    except ImportError:
        raise missing_extra("diffusers", "diffusers") from None
    unet_dir, sched_path = _find(folder)
    scfg, prediction = scheduler_settings(sched_path)
    clip, clip_range = clip_sample(scfg)
    unet = load_pretrained(UNet2DConditionModel, unet_dir, "UNet")
    c = unet.config
    extra = [k for k in ("num_class_embeds", "class_embed_type", "addition_embed_type",
                         "encoder_hid_dim") if c.get(k) is not None]
    if extra:
        raise EdgediffError(f"{unet_dir}: {', '.join(extra)} set; edgediff reads "
                            f"UNet2DConditionModels conditioned on encoder_hidden_states alone")
    width = c.cross_attention_dim
    if not isinstance(width, int):
        raise EdgediffError(f"{unet_dir}: cross_attention_dim {width!r} varies per block; "
                            f"edgediff reads one embedding width")
    null, seq = _null(folder, unet_dir, width)
    schedule = DiscreteSchedule(alphas_cumprod_from(scfg), {"source": "diffusers"})
    lcm = scfg.get("_class_name") == "LCMScheduler"
    if lcm:
        precond, parameterization = _lcm(unet, scfg, prediction, schedule), "lcm"
        clip = False  # inside the graph
    else:
        precond, parameterization = PREDICTION_TYPES[prediction](
            DiffusersCondUNet(unet), schedule.alphas_cumprod), prediction
    if not lcm and c.get("time_cond_proj_dim") is not None:
        raise EdgediffError(f"{unet_dir}: time_cond_proj_dim is set, which only an LCM "
                            f"(LCMScheduler) reads; its scheduler is "
                            f"{scfg.get('_class_name')!r}")
    size = c.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    config = make_config("diffusers.UNet2DConditionModel",
                         json.loads(json.dumps(dict(c), default=str)), parameterization, schedule,
                         (c.in_channels, *size), data_range=(-clip_range, clip_range),
                         provenance={"source": str(folder), "scheduler": scfg.get("_class_name"),
                                     "timestep_spacing": scfg.get("timestep_spacing"),
                                     "steps_offset": scfg.get("steps_offset", 0),
                                     "clip_sample": clip, "null_embedding":
                                         "file" if null is not None else "zeros"})
    tensors = {INPUT: declare(INPUT, (seq, width), null)}
    denoiser = TextConditioned(precond)
    if lcm and c.get("time_cond_proj_dim") is not None:
        tensors[W_INPUT] = declare(W_INPUT, (1,), np.full(1, W_DEFAULT, np.float32))
        denoiser = GuidanceEmbedded(precond, c.time_cond_proj_dim)
    config["conditioning_tensors"] = tensors
    return LoadedModel(denoiser.eval(), config, schedule)


def _lcm(unet, scfg: dict, prediction: str, schedule: DiscreteSchedule):
    """LCMScheduler's boundary condition around the network (``LCMPrecond``)."""
    from edgediff.models.precond import LCMPrecond

    if scfg.get("thresholding"):
        raise EdgediffError("an LCMScheduler with thresholding (dynamic, per-sample "
                            "quantiles of x̂0) is not read; export it with thresholding off")
    clip, bound = clip_sample(scfg)
    network = WConditionedUNet(unet) if unet.config.get("time_cond_proj_dim") is not None \
        else DiffusersCondUNet(unet)
    return LCMPrecond(network, schedule.alphas_cumprod, prediction,
                      scfg.get("timestep_scaling", 10.0), bound if clip else None)
