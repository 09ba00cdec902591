"""Reader of a local diffusers ``DiTTransformer2DModel`` folder (DiT, Peebles & Xie
2023), into edgediff's discrete wrappers.

Accepted layouts: a pipeline folder (``transformer/`` and ``scheduler/`` inside) or
a transformer folder with ``scheduler_config.json`` beside its ``config.json``.
Weights load from safetensors only; nothing is fetched from a hub. The scheduler
config decides the σ table and the parameterization exactly as for a UNet
(``diffusers_unet``: DDPM's discrete VP chain, ``prediction_type``, ``clip_sample``).

DiT is always class-conditional: its adaLN-Zero embedding holds
``num_embeds_ada_norm`` classes plus one more row, the "no label" id
``num_embeds_ada_norm`` that classifier-free guidance trains on (diffusers'
``LabelEmbedding`` with a dropout probability). A DiT with learned variance
(``out_channels`` = 2 × ``in_channels``, Nichol & Dhariwal 2021) returns the
prediction and the variance interpolation stacked on channels; the denoiser keeps
the first half, as diffusers' ``DiTPipeline`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError, missing_extra
from edgediff.models.checkpoint import LoadedModel, make_config
from edgediff.models.readers.diffusers_unet import (
    PREDICTION_TYPES,
    alphas_cumprod_from,
    clip_sample,
    config_names,
    load_pretrained,
    scheduler_settings,
)

CLASS_NAME = "DiTTransformer2DModel"
DESCRIPTION = ("a local diffusers DiT folder (a pipeline's, with transformer/ and scheduler/, "
               "or a DiTTransformer2DModel's with scheduler_config.json beside its config.json)")


class DiffusersDiT(nn.Module):
    """F(x, c_noise, class_labels) around a DiTTransformer2DModel: c_noise is the
    fractional timestep; with learned variance, only the first ``in_channels``
    output channels (the prediction) are kept."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer
        self.channels = int(transformer.config.in_channels)

    def forward(self, x, c_noise, class_labels=None):
        out = self.transformer(x, c_noise, class_labels=class_labels, return_dict=False)[0]
        return out[:, : self.channels]


def _config_of(path: Path) -> Path | None:
    for cand in (path / "transformer" / "config.json", path / "config.json"):
        if cand.is_file():
            return cand
    return None


def can_read(path: Path) -> bool:
    """A folder whose (transformer's) config.json names DiTTransformer2DModel."""
    return config_names(path, "transformer", CLASS_NAME)


def read(path: Path, *, allow_pickle: bool = False) -> LoadedModel:
    """``load_dit``; its weights are safetensors only, so ``allow_pickle`` is unused."""
    return load_dit(path)


def weights(path: Path) -> Path:
    """The whole folder: its files' sha256 in name order (``fileio.sha256_of``)."""
    return path


def _scheduler_config(folder: Path, model_dir: Path) -> tuple[Path, dict]:
    for cand in (folder / "scheduler" / "scheduler_config.json",
                 folder / "scheduler_config.json", model_dir / "scheduler_config.json"):
        if cand.is_file():
            try:
                return cand, json.loads(cand.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise EdgediffError(f"{cand} is not readable JSON: {e}") from None
    raise EdgediffError(f"{folder} lacks its scheduler config: put the scheduler's "
                        f"scheduler_config.json in {folder / 'scheduler'} (save_pretrained of "
                        f"the scheduler writes it)")


def _null_label(transformer: nn.Module) -> int:
    """``num_embeds_ada_norm``, after checking that the label table has that extra row."""
    k = int(transformer.config.num_embeds_ada_norm)
    table = transformer.transformer_blocks[0].norm1.emb.class_embedder.embedding_table
    if table.num_embeddings != k + 1:
        raise EdgediffError(f"this DiT's label table has {table.num_embeddings} rows for {k} "
                            f"classes: no null class to guide against (expected {k + 1})")
    return k


def load_dit(folder: str | Path) -> LoadedModel:
    folder = Path(folder)
    try:
        from diffusers import DiTTransformer2DModel
    except ImportError:
        raise missing_extra("diffusers", "diffusers") from None
    cfg = _config_of(folder)
    if cfg is None:
        raise EdgediffError(f"{folder} is not a diffusers folder: no config.json in it or in "
                            f"{folder / 'transformer'}")
    model_dir = cfg.parent
    sched_path, _ = _scheduler_config(folder, model_dir)
    scfg, prediction = scheduler_settings(sched_path)
    clip, clip_range = clip_sample(scfg)
    dit = load_pretrained(DiTTransformer2DModel, model_dir, "DiT")
    c = dit.config
    out_channels = c.out_channels or c.in_channels
    if out_channels not in (c.in_channels, 2 * c.in_channels):
        raise EdgediffError(f"out_channels {out_channels} is neither in_channels "
                            f"({c.in_channels}) nor twice it (learned variance)")
    null = _null_label(dit)
    schedule = DiscreteSchedule(alphas_cumprod_from(scfg), {"source": "diffusers"})
    denoiser = PREDICTION_TYPES[prediction](DiffusersDiT(dit), schedule.alphas_cumprod).eval()
    args = json.loads(json.dumps(dict(c), default=str))
    config = make_config(f"diffusers.{CLASS_NAME}", args, prediction, schedule,
                         (c.in_channels, c.sample_size, c.sample_size),
                         data_range=(-clip_range, clip_range),
                         provenance={"source": str(folder), "scheduler": scfg.get("_class_name"),
                                     "timestep_spacing": scfg.get("timestep_spacing"),
                                     "steps_offset": scfg.get("steps_offset", 0),
                                     "clip_sample": clip,
                                     "learned_variance": out_channels == 2 * c.in_channels})
    config["num_classes"], config["null_label"] = null, null
    return LoadedModel(denoiser, config, schedule)
