"""``edgediff info``: what a checkpoint, an NVlabs snapshot, an exported ONNX file or a
TensorRT plan holds."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgediff.errors import EdgediffError


def _table(lines: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        click.echo(f"{k:<{width}}  {v}")


def _artifact_lines(info) -> list[tuple[str, str]]:
    sched = {k: v for k, v in info.schedule.to_dict().items() if k != "alphas_cumprod"}
    return [
        ("parameterization", info.parameterization),
        ("sample shape", " × ".join(map(str, info.sample_shape))),
        ("schedule", json.dumps(sched)),
        ("σ range", f"{info.sigma_min:.4g} … {info.sigma_max:.4g} (σ_data {info.sigma_data:g})"),
        ("data range", f"{info.data_range[0]:g} … {info.data_range[1]:g}"),
        ("default solver", json.dumps(info.default_solver)),
        ("precision", info.precision),
        ("source sha256", info.source_sha256),
        ("quality reference", json.dumps(info.reference) if info.reference else "none"),
        ("conditioning", _conditioning_line(info)),
    ]


def _conditioning_line(info) -> str:
    parts = []
    if info.num_classes:
        parts.append(f"{info.num_classes} classes (0…{info.num_classes - 1}), null label "
                     f"{info.null_label}" + ("; guidance input: classifier-free guidance in "
                                             "one launch" if info.guidance_input else ""))
    for t in info.tensors:
        null = "zeros" if not t.null.any() else "stored"
        parts.append(f"tensor {t.describe()} (null value: {null}; feed with --cond)")
    return "; ".join(parts) or "none (unconditional)"


def _onnx(path: Path, as_json: bool) -> None:
    from edgediff.artifact import ArtifactInfo
    from edgediff.runtime.backends.ort import read_onnx_metadata

    props = read_onnx_metadata(path)
    info = ArtifactInfo.from_props(props, where=str(path))  # checked, --json or not
    if as_json:
        click.echo(json.dumps(props, indent=1))
        return
    _table([("file", f"{path} ({path.stat().st_size / 2**20:.2f} MiB, ONNX)"),
            *_artifact_lines(info)])


def _plan(path: Path, as_json: bool) -> None:
    from edgediff.runtime.backends.tensorrt import plan_info, runs_here

    info, side = plan_info(path)
    if as_json:
        click.echo(json.dumps(side, indent=1))
        return
    profile = side["profiles"][0]["x"]
    _table([
        ("file", f"{path} ({path.stat().st_size / 2**20:.2f} MiB, TensorRT plan)"),
        *_artifact_lines(info),
        ("built by", f"TensorRT {side['tensorrt_version']} on {side['gpu_name']} (compute "
                     f"capability {side['compute_capability']})"),
        ("precision flags", ", ".join(side["precision"]) or "fp32"),
        ("batch profile", f"min {profile[0][0]}, opt {profile[1][0]}, max {profile[2][0]}"),
        ("from", f"{side['onnx_file']} (sha256 {side['onnx_sha256'][:16]}…)"),
        ("runs here", runs_here(side, path)),
    ])


def _snapshot(path: Path, as_json: bool) -> None:
    """What the snapshot's records say, read without building the network."""
    from edgediff.models.snapshot.rebuild import describe, finite_kwargs, sigma_range
    from edgediff.models.snapshot.unpickle import read_snapshot

    found = describe(read_snapshot(path))
    (low, high), enc = sigma_range(found), found.encoder
    summary = {"class": found.class_name, "architecture": found.architecture,
               "kwargs": finite_kwargs(found.kwargs), "parameters": found.parameters,
               "label_dim": found.label_dim, "parameterization": found.parameterization,
               "sample_shape": list(found.sample_shape), "sigma_min": low, "sigma_max": high,
               "schedule": found.schedule.to_dict(), "encoder": enc}
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    _table([
        ("file", f"{path} ({path.stat().st_size / 2**20:.2f} MiB, NVlabs EDM snapshot)"),
        ("class", found.class_name + (" (EDM2)" if found.class_name == "Precond" else "")),
        ("network", f"{found.architecture}, {found.parameters / 1e6:.2f} M parameters "
                    f"({found.parameters:,})"),
        ("network kwargs", json.dumps(summary["kwargs"])),
        ("parameterization", found.parameterization),
        ("sample shape", " × ".join(map(str, found.sample_shape))),
        ("schedule", json.dumps(summary["schedule"])),
        ("σ range", f"{low:.4g} … {high:.4g}"),
        ("conditioning", f"{found.label_dim} classes (label_dim {found.label_dim})"
                         if found.label_dim else "none (unconditional)"),
        ("latent encoder", "none (pixel model)" if enc is None else
         f"{enc['encoder']} {enc['vae_name'] or '(no VAE name)'}; final = raw·scale + bias, "
         f"scale {_numbers(enc['scale'])}, bias {_numbers(enc['bias'])}"),
    ])


def _bundle(path: Path, as_json: bool) -> None:
    """Both stages of a bundle: what each graph takes and returns, and what it costs."""
    from edgediff.artifact import ArtifactInfo
    from edgediff.bundle import read_bundle
    from edgediff.catalogue import nfe
    from edgediff.latent import DecoderInfo
    from edgediff.runtime.backends.ort import read_onnx_metadata
    from edgediff.runtime.decoder import read_props

    b = read_bundle(path)
    den_props, dec_props = read_onnx_metadata(b.path("denoiser")), read_props(b.path("decoder"))
    info = ArtifactInfo.from_props(den_props, where=str(b.path("denoiser")))
    dec = DecoderInfo.from_props(dec_props)
    if as_json:
        click.echo(json.dumps({"bundle": b.to_dict(), "denoiser": den_props,
                               "decoder": dec.to_dict()}, indent=1))
        return
    calls = nfe(info.default_solver["solver"], info.default_solver["steps"])
    total = calls * b.denoiser.flops + dec.flops
    lat, img = " × ".join(map(str, info.sample_shape)), " × ".join(map(str, dec.image_shape))
    m = dec.latent_map
    _table([
        ("bundle", f"{path} (edgediff.bundle format 1; sha256s checked)"),
        ("denoiser", f"{b.denoiser.file} ({b.path('denoiser').stat().st_size / 2**20:.2f} MiB): "
                     f"[B, {lat}] → [B, {lat}], {_count(b.denoiser.params)} parameters, "
                     f"{b.denoiser.flops / 1e9:.3g} GFLOP per call per sample"),
        *[("  " + k, v) for k, v in _artifact_lines(info)],
        ("decoder", f"{b.decoder.file} ({b.path('decoder').stat().st_size / 2**20:.2f} MiB): "
                    f"[B, {lat}] → [B, {img}], {dec.kind}"
                    f"{' ' + dec.vae_name if dec.vae_name else ''}, {_count(dec.params)} "
                    f"parameters, {dec.flops / 1e9:.3g} GFLOP per image"),
        ("  precision", dec.precision),
        ("  latent map", f"raw = (z − bias)/scale from {m.source.get('kind', 'unknown')}; "
                         f"scale {_numbers(m.scale)}, bias {_numbers(m.bias)}"),
        ("  image range", f"{dec.data_range[0]:g} … {dec.data_range[1]:g} (×{dec.upscale} "
                          f"per side; tiles of any latent size)"),
        ("cost per image", f"{total / 1e9:.3g} GFLOP with the default solver ({calls} calls: "
                           f"{calls * b.denoiser.flops / 1e9:.3g} denoising, "
                           f"{dec.flops / 1e9:.3g} decoding)"),
    ])


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}"


def _numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


@click.command("info")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--allow-pickle", is_flag=True,
              help="Read a .pt/.pkl checkpoint with torch.load(weights_only=True). Pickles can "
                   "run code: use only for files you trust.")
@click.option("--json", "as_json", is_flag=True,
              help="Print everything as JSON (config, snapshot summary, ONNX metadata or plan "
                   "sidecar).")
def command(path: str, allow_pickle: bool, as_json: bool) -> None:
    """Print what PATH holds: parameterization, schedule, σ range, sample shape, and more.

    PATH is a bundle folder (both stages: shapes, parameters, GFLOPs per call), a
    checkpoint (NAME.safetensors with NAME.json beside it), a local
    diffusers folder, an NVlabs EDM/EDM2 network snapshot (its class,
    architecture, kwargs, parameter count, classes and latent encoder, read
    without building the network), an exported .onnx file, or a TensorRT .plan
    (then also its build sidecar and whether it can run on this machine).

    \b
    Examples:
      edgediff info digits-edm.safetensors
      edgediff info ./my-ddpm-pipeline --json
      edgediff info network-snapshot.pkl
      edgediff info digits.onnx
      edgediff info digits.plan
      edgediff info bundle/
    """
    p = Path(path)
    from edgediff.bundle import is_bundle

    if is_bundle(p):
        return _bundle(p, as_json)
    if p.suffix in (".onnx", ".plan", ".engine") and not p.is_file():
        raise EdgediffError(f"{p} does not exist")
    if p.suffix == ".onnx":
        return _onnx(p, as_json)
    if p.suffix in (".plan", ".engine"):
        return _plan(p, as_json)
    from edgediff.models.readers import edm_snapshot

    if edm_snapshot.can_read(p):
        return _snapshot(p, as_json)
    from edgediff.models.readers import load_model

    model = load_model(path, allow_pickle=allow_pickle)
    cfg = model.config
    if as_json:
        click.echo(json.dumps(cfg, indent=1))
        return
    n_params = sum(p.numel() for p in model.denoiser.model.parameters())
    sched = {k: v for k, v in cfg["schedule"].items() if k != "alphas_cumprod"}
    lines = [
        ("parameterization", cfg["parameterization"]["name"]),
        ("network", f"{cfg['architecture']['name']}, {n_params / 1e6:.2f} M parameters"),
        ("sample shape", " × ".join(map(str, cfg["sample_shape"]))),
        ("schedule", json.dumps(sched)),
        ("σ range", f"{cfg['sigma_min']:.4g} … {cfg['sigma_max']:.4g}"),
        ("data range", f"{cfg['data_range'][0]:g} … {cfg['data_range'][1]:g}"),
    ]
    prov = cfg.get("provenance", {})
    if "command" in prov:
        lines.append(("trained by", prov["command"]))
    if "steps" in prov:
        lines.append(("training", f"{prov['steps']} steps, {prov.get('train_seconds', '?')} s"))
    if "source" in prov:
        lines.append(("source", str(prov["source"])))
    _table(lines)
