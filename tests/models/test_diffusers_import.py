"""diffusers folders load into the discrete wrappers, and edgediff's torch ddpm /
ddim reproduce diffusers' own DDPMScheduler / DDIMScheduler loops given the same
initial and per-step noise (float32, no hub access: the UNet is random and saved
with save_pretrained).

Tolerance: max abs diff ≤ 1e-4 · max(1, max |x|). A random ε-predicting UNet drives
samples to |x| ≈ 700, where float32 resolves only ~4e-5 and diffusers' float32 ᾱ
arithmetic differs from edgediff's float64 by ~1e-5 relative (checked in float64
on both sides: 7.6e-3 at |x| ≈ 723); v- and x0-prediction stay near the data
range, where the bound is the absolute 1e-4.
"""

import json
import math
import shutil

import pytest
import torch

pytest.importorskip("diffusers", reason="diffusers is not installed (pip install diffusers)")
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from edgediff.errors import EdgediffError
from edgediff.models.diffusers_import import load_diffusers
from edgediff.samplers import at_precision, ddim, ddpm
from edgediff.schedules import ddpm_timesteps

SHAPE = (3, 1, 8, 8)


def make_folder(tmp_path, prediction_type, spacing="leading", scheduler_cls=DDPMScheduler):
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(16, 32), norm_num_groups=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    folder = tmp_path / f"pipe-{prediction_type}"
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    sched = scheduler_cls(num_train_timesteps=1000, beta_schedule="linear",
                          prediction_type=prediction_type, clip_sample=False,
                          timestep_spacing=spacing)
    sched.save_pretrained(folder / "scheduler")
    return folder, unet.eval(), sched


def tolerance(x):
    return 1e-4 * max(1.0, x.abs().max().item())


def diffusers_loop(unet, sched, steps, x_T, noise_seed):
    sched.set_timesteps(steps)
    g, x = torch.Generator().manual_seed(noise_seed), x_T.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            out = unet(x, t).sample
            x = sched.step(out, t, x, generator=g).prev_sample
    return x, sched.timesteps


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("spacing,steps", [("leading", 1000), ("trailing", 50)])
def test_ddpm_matches_diffusers_ddpmscheduler(request, tmp_path, prediction_type, spacing, steps):
    if (prediction_type, spacing, steps) == ("sample", "leading", 1000):
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=(
            "diffusers' float32 ᾱ arithmetic: 1.8e-4 at |x| ≈ 1.3 over 1000 steps; with its "
            "tables in float64 both agree to 5e-13 (test_ddpm_is_diffusers_ddpm_in_float64)")))
    folder, unet, sched = make_folder(tmp_path, prediction_type, spacing)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    expect, timesteps = diffusers_loop(unet, sched, steps, x_T, noise_seed=2)

    loaded = load_diffusers(folder)
    assert timesteps.tolist() == ddpm_timesteps(steps, 1000, spacing).tolist()
    sigmas = loaded.schedule.sigmas(steps, spacing)
    g = torch.Generator().manual_seed(2)  # diffusers draws one noise per step with t > 0
    z = torch.stack([torch.randn(SHAPE, generator=g) for _ in range(steps)])
    x_hat = x_T.double() * math.sqrt(1 + sigmas[0] ** 2)
    got = ddpm(at_precision(loaded.denoiser), x_hat, sigmas, noise=z)
    err = (got.float() - expect).abs().max().item()
    print(f"\nddpm/{prediction_type}/{spacing}/{steps}: max abs diff {err:.2e}, "
          f"max |x| {expect.abs().max().item():.3g}")
    assert err <= tolerance(expect)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ddim_eta0_matches_diffusers_ddimscheduler(tmp_path, prediction_type):
    folder, unet, sched = make_folder(tmp_path, prediction_type, "leading", DDIMScheduler)
    steps = 50
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    expect, _ = diffusers_loop(unet, sched, steps, x_T, noise_seed=4)
    loaded = load_diffusers(folder)
    sigmas = loaded.schedule.sigmas(steps, "leading")
    x_hat = x_T.double() * math.sqrt(1 + sigmas[0] ** 2)
    got = ddim(at_precision(loaded.denoiser), x_hat, sigmas, eta=0.0)
    err = (got.float() - expect).abs().max().item()
    print(f"\nddim/{prediction_type}: max abs diff {err:.2e}, "
          f"max |x| {expect.abs().max().item():.3g}")
    assert err <= tolerance(expect)


def test_loaded_config_records_the_source(tmp_path):
    folder, _, _ = make_folder(tmp_path, "v_prediction", "trailing")
    loaded = load_diffusers(folder)
    assert loaded.config["parameterization"]["name"] == "v_prediction"
    assert loaded.sample_shape == (1, 8, 8)
    assert loaded.config["provenance"]["timestep_spacing"] == "trailing"
    json.dumps(loaded.config)  # serialisable, so export can carry it


def test_a_folder_without_its_scheduler_config_is_refused(tmp_path):
    folder, _, _ = make_folder(tmp_path, "epsilon")
    shutil.rmtree(folder / "scheduler")
    with pytest.raises(EdgediffError, match="lacks its scheduler config"):
        load_diffusers(folder)


def test_pickled_unet_weights_are_refused(tmp_path):
    folder, _, _ = make_folder(tmp_path, "epsilon")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(EdgediffError, match="does not unpickle"):
        load_diffusers(folder)


def test_unknown_prediction_type_is_refused(tmp_path):
    folder, _, _ = make_folder(tmp_path, "epsilon")
    cfg = folder / "scheduler" / "scheduler_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "prediction_type": "flow"}))
    with pytest.raises(EdgediffError, match="prediction_type 'flow'"):
        load_diffusers(folder)


def test_ddpm_is_diffusers_ddpm_in_float64(tmp_path):
    """With diffusers' ᾱ tables and the UNet in float64, the two loops are the same
    algorithm to rounding: what is left in float32 is precision, not a mismatch."""
    folder, unet, sched = make_folder(tmp_path, "sample", "leading")
    unet, steps = unet.double(), 1000
    sched.set_timesteps(steps)
    for name in ("alphas_cumprod", "betas", "alphas", "one"):
        setattr(sched, name, getattr(sched, name).double())
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g, x = torch.Generator().manual_seed(2), x_T.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x, generator=g).prev_sample
    loaded = load_diffusers(folder)
    loaded.denoiser.double()
    sigmas = loaded.schedule.sigmas(steps, "leading")
    g = torch.Generator().manual_seed(2)
    z = torch.stack([torch.randn(SHAPE, generator=g, dtype=torch.float64) for _ in range(steps)])
    got = ddpm(loaded.denoiser, x_T * math.sqrt(1 + sigmas[0] ** 2), sigmas, noise=z)
    err = (got - x).abs().max().item()
    print(f"\nddpm/sample/leading/1000 in float64: max abs diff {err:.2e}")
    assert err <= 1e-10
