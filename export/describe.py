"""What an exported graph says about itself: the artifact metadata of
``edgediff.artifact`` (docs/artifact.md) made from a model's checkpoint config,
and written into the ONNX file's ``metadata_props``.
"""

from __future__ import annotations

from pathlib import Path

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError
from edgediff.models.checkpoint import LoadedModel


def artifact_info(model: LoadedModel, source_sha256: str, precision: str = "fp32",
                  guidance: bool = False) -> ArtifactInfo:
    """The metadata of ``model``'s export; ``source_sha256`` names the model it came from."""
    cfg = model.config
    par = cfg["parameterization"]["name"]
    return ArtifactInfo(par, model.schedule, cfg["sigma_min"], cfg["sigma_max"],
                        cfg.get("sigma_data", 0.5), tuple(cfg["sample_shape"]),
                        tuple(cfg.get("data_range", (-1.0, 1.0))), source_sha256,
                        default_solver(cfg), precision, quality_reference(cfg),
                        conditioning(cfg, guidance),
                        latent=cfg.get("provenance", {}).get("latent"))


def default_solver(config: dict) -> dict:
    """Discrete models: DDIM 50 (trailing), clamping x0 when their diffusers scheduler
    did; consistency models: one consistency step (clamping D when their scheduler's
    ``clip_denoised`` did); LCMs: 4 LCM steps on trailing timesteps (the exact
    LCMScheduler ones are ``--preset lcm-4``); the rest: Heun 18 on the EDM grid."""
    if config["parameterization"]["name"] in ("epsilon", "v_prediction", "sample"):
        default = {"solver": "ddim", "steps": 50, "spacing": "trailing", "eta": 0.0}
        if config.get("provenance", {}).get("clip_sample"):
            default["clip"] = True
        return default
    if config["parameterization"]["name"] == "lcm":  # its own steps: --preset lcm-4
        return {"solver": "lcm", "steps": 4, "spacing": "trailing"}
    if config["parameterization"]["name"] == "consistency":
        default = {"solver": "cm", "steps": 1, "sigma_min": float(config["sigma_min"])}
        if config.get("provenance", {}).get("clip_denoised"):
            default["clip"] = True
        return default
    return {"solver": "heun", "steps": 18}


def conditioning(config: dict, guidance: bool = False) -> dict | None:
    """The artifact's conditioning for a conditional checkpoint: its classes
    (``num_classes``; the null id, ``null_label``, defaults to num_classes: the
    all-zero one-hot row) and its tensor conditioning (``conditioning_tensors``:
    the ``tensors`` entries of ``edgediff.tensor_conditioning.declare``)."""
    k = int(config.get("num_classes", 0))
    tensors = config.get("conditioning_tensors")
    if guidance and (not k or tensors):
        raise EdgediffError("--guidance exports classifier-free guidance over class labels, "
                            "which needs a class-conditional model without tensor "
                            "conditioning; guide this one at run time (edgediff sample "
                            "--guidance W) instead")
    out = {"tensors": tensors} if tensors else {}
    if k:
        null = config.get("null_label", k)
        if null is None and guidance:
            raise EdgediffError("--guidance exports classifier-free guidance, which needs an "
                                "unconditional class; this model's classes are all real")
        out.update(num_classes=k, null_label=None if null is None else int(null),
                   guidance_input=guidance)
    return out or None


def quality_reference(config: dict) -> dict | None:
    """What the solver lab scores samples against: the exact mixture, or the
    dataset a model was trained on (when edgediff ships reference statistics)."""
    arch = config.get("architecture", {})
    if arch.get("name") == "analytic.gaussian_mixture":
        return {"kind": "gaussian_mixture", "mixture": arch["args"]}
    dataset = config.get("provenance", {}).get("dataset")
    if dataset == "digits" and tuple(config["sample_shape"]) == (1, 8, 8):
        return {"kind": "dataset", "name": "digits"}
    return None


def stamp(path: str | Path, info: ArtifactInfo, *, full_check: bool = True) -> None:
    """Write ``info`` (an ``ArtifactInfo``, or anything with ``to_props``: a decoder's
    ``DecoderInfo``) into the ONNX file at ``path`` (its ``metadata_props``, replacing
    any there; producer "edgediff"), after ``onnx.checker`` passes it."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in info.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "edgediff"
    onnx.checker.check_model(proto, full_check=full_check)
    onnx.save(proto, str(path))
