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

    PATH is a checkpoint (NAME.safetensors with NAME.json beside it), a local
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
    """
    p = Path(path)
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
