"""``edgediff info``: what a model file holds."""

from __future__ import annotations

import json

import click

from edgediff.errors import missing_extra


@click.command("info")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--allow-pickle", is_flag=True,
              help="Read a .pt/.pkl checkpoint with torch.load(weights_only=True). Pickles can "
                   "run code: use only for files you trust.")
@click.option("--json", "as_json", is_flag=True, help="Print the full config as JSON.")
def command(path: str, allow_pickle: bool, as_json: bool) -> None:
    """Print what PATH holds: parameterization, network, schedule, σ range, provenance.

    PATH is a checkpoint (NAME.safetensors with NAME.json beside it) or a local
    diffusers folder.

    \b
    Examples:
      edgediff info digits-edm.safetensors
      edgediff info ./my-ddpm-pipeline --json
    """
    try:
        from edgediff.models.loader import load_model
    except ImportError:
        raise missing_extra("torch", "torch") from None
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
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        click.echo(f"{k:<{width}}  {v}")
