"""diffusers folders load into the discrete wrappers, and edgediff's torch ddpm /
ddim reproduce diffusers' own DDPMScheduler / DDIMScheduler loops given the same
initial and per-step noise (no hub access: the UNet is random and saved with
save_pretrained), with clip_sample on (diffusers' default) and off.

Each case runs diffusers' loop twice with the UNet in float32:
- *exact*: the scheduler's ᾱ/β tables promoted to float64, so its step arithmetic
  is exact to float32's model output. edgediff differs from it only in how each
  UNet input is rounded to float32 (x̂·s against x), so it must agree within
  ``edgediff.tolerance``'s float32 drift bound for the run's own trajectory
  (float32 resolution × calls × |x| along the way; a random UNet drives |x| to
  ~750 when ε is not clipped). On the machine that wrote this, the differences
  sit 10–1000× below the bound (≤ 7.7e-5; README table).
- *stock*: everything float32, as diffusers ships. Its step arithmetic then rounds
  1 − ᾱ_t near t = 0 (ᾱ ≈ 0.9999) to ~1e-3 relative, so edgediff must be within
  the same bound of stock plus stock's own distance from exact.
"""

import json
import math
import shutil

import pytest
import torch

pytest.importorskip("diffusers", reason="diffusers is not installed (pip install diffusers)")
import diffusers.schedulers.scheduling_ddim as ddim_module
import diffusers.schedulers.scheduling_ddpm as ddpm_module
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from edgediff.errors import EdgediffError
from edgediff.models.readers.diffusers_unet import load_diffusers
from edgediff.samplers import at_precision, ddim, ddpm
from edgediff.sigmas import ddpm_timesteps
from edgediff.tolerance import drift_bound

SHAPE = (3, 1, 8, 8)


def make_folder(tmp_path, prediction_type, spacing="leading", scheduler_cls=DDPMScheduler,
                clip_sample=False, train_steps=1000):
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(16, 32), norm_num_groups=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    folder = tmp_path / f"pipe-{prediction_type}"
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    sched = scheduler_cls(num_train_timesteps=train_steps, beta_schedule="linear",
                          prediction_type=prediction_type, clip_sample=clip_sample,
                          timestep_spacing=spacing)
    sched.save_pretrained(folder / "scheduler")
    return folder, unet.eval(), sched


def diffusers_loop(unet, sched, steps, x_T, noise_seed, *, exact=False, monkeypatch=None):
    """diffusers' own loop; ``exact`` promotes the scheduler's float tables (and the
    state) to float64 while the UNet stays float32 and the noise stays the same draws."""
    sched.set_timesteps(steps)
    x = x_T.clone()
    if exact:
        for name, value in list(vars(sched).items()):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                setattr(sched, name, value.double())
        for module in (ddpm_module, ddim_module):
            draw = module.randn_tensor
            monkeypatch.setattr(module, "randn_tensor", lambda shape, draw=draw, **kw: draw(
                shape, generator=kw.get("generator"), dtype=torch.float32).double())
        x = x.double()
    g = torch.Generator().manual_seed(noise_seed)
    scales = []  # per call: the largest |x| or |model output| (edgediff.tolerance, point 1)
    with torch.no_grad():
        for t in sched.timesteps:
            out = unet(x.float(), t).sample.to(x.dtype)
            scales.append(max(x.abs().max().item(), out.abs().max().item(), 1.0))
            x = sched.step(out, t, x, generator=g).prev_sample
    return x, sched.timesteps, drift_bound(scales)


def compare(edgediff_x, stock, exact, label, bound):
    """Assert the bounds of the module docstring; print the figures."""
    err_exact = (edgediff_x - exact).abs().max().item()
    err_stock = (edgediff_x.float() - stock).abs().max().item()
    stock_rounding = (stock.double() - exact).abs().max().item()
    print(f"\n{label}: vs exact {err_exact:.2e}, vs stock {err_stock:.2e} (stock vs exact "
          f"{stock_rounding:.2e}), max |x| {exact.abs().max().item():.3g}, bound {bound:.2e}")
    assert err_exact <= bound
    assert err_stock <= bound + stock_rounding


def run_both(unet, sched, steps, x_T, noise_seed, monkeypatch):
    """Stock and exact diffusers, and the drift bound of the exact trajectory."""
    stock, timesteps, _ = diffusers_loop(unet, sched, steps, x_T, noise_seed)
    exact, _, bound = diffusers_loop(unet, sched, steps, x_T, noise_seed, exact=True,
                                     monkeypatch=monkeypatch)
    return stock, exact, timesteps, bound


def clip_of(loaded):
    return tuple(loaded.config["data_range"]) if loaded.config["provenance"]["clip_sample"] \
        else None


# Every prediction type on a strided leading grid and on trailing 50, with and
# without clipping (1000 training steps); a whole chain (consecutive indices: Ho et
# al.'s own update) once, for epsilon with clipping (the harder case: the clip is
# applied at every step), on a 250-step training chain: the 1000-step one proves the
# same update and cost 25–40 s on 2 cores.
DDPM_CASES = [pytest.param(p, spacing, steps, clip, 1000, id=f"{p}-{spacing}-{steps}-{name}")
              for p in ("epsilon", "v_prediction", "sample")
              for spacing, steps in (("leading", 100), ("trailing", 50))
              for clip, name in ((True, "clip"), (False, "noclip"))] + [
    pytest.param("epsilon", "leading", 250, True, 250, id="epsilon-whole-chain-of-250-clip")]


@pytest.mark.parametrize("prediction_type,spacing,steps,clip_sample,train_steps", DDPM_CASES)
def test_ddpm_matches_diffusers_ddpmscheduler(tmp_path, monkeypatch, prediction_type, spacing,
                                              steps, clip_sample, train_steps):
    folder, unet, sched = make_folder(tmp_path, prediction_type, spacing,
                                      clip_sample=clip_sample, train_steps=train_steps)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    stock, exact, timesteps, bound = run_both(unet, sched, steps, x_T, 2, monkeypatch)

    loaded = load_diffusers(folder)
    assert timesteps.tolist() == ddpm_timesteps(steps, train_steps, spacing).tolist()
    sigmas = loaded.schedule.sigmas(steps, spacing)
    g = torch.Generator().manual_seed(2)  # diffusers draws one noise per step with t > 0
    z = torch.stack([torch.randn(SHAPE, generator=g) for _ in range(steps)])
    x_hat = x_T.double() * math.sqrt(1 + sigmas[0] ** 2)
    got = ddpm(at_precision(loaded.denoiser), x_hat, sigmas, noise=z, clip=clip_of(loaded))
    compare(got, stock, exact, f"ddpm/{prediction_type}/{spacing}/{steps}/clip={clip_sample}",
            bound)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ddim_eta0_matches_diffusers_ddimscheduler(tmp_path, monkeypatch, prediction_type):
    folder, unet, sched = make_folder(tmp_path, prediction_type, "leading", DDIMScheduler)
    steps = 50
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    stock, exact, _, bound = run_both(unet, sched, steps, x_T, 4, monkeypatch)
    loaded = load_diffusers(folder)
    sigmas = loaded.schedule.sigmas(steps, "leading")
    x_hat = x_T.double() * math.sqrt(1 + sigmas[0] ** 2)
    got = ddim(at_precision(loaded.denoiser), x_hat, sigmas, eta=0.0)
    compare(got, stock, exact, f"ddim/{prediction_type}", bound)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_clipped_ddim_is_diffusers_clipped_ddim_in_float64(tmp_path, prediction_type):
    """DDIM with clip_sample keeps ε̂ but clamps x0, so x_t' = √ᾱ'·clamp(x0) +
    √(1−ᾱ')·ε(x_t): when the clamp binds, nothing damps the random UNet's Jacobian and
    float32 rounding grows ~2.7× per step (stock vs exact diffusers: 0.12 after 50
    steps, ε-prediction). So the algorithms are compared where rounding is 1e-16:
    UNet, tables and state in float64 on both sides (ε-prediction still grows 1e-16
    to ~5e-9 over the run; a different clip rule would be off by O(1))."""
    folder, unet, sched = make_folder(tmp_path, prediction_type, "leading", DDIMScheduler,
                                      clip_sample=True)
    steps, unet = 50, unet.double()
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sched.set_timesteps(steps)
    for name, value in list(vars(sched).items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            setattr(sched, name, value.double())
    x = x_T.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x).prev_sample
    loaded = load_diffusers(folder)
    loaded.denoiser.double()
    sigmas = loaded.schedule.sigmas(steps, "leading")
    got = ddim(loaded.denoiser, x_T * math.sqrt(1 + sigmas[0] ** 2), sigmas, eta=0.0,
               clip=clip_of(loaded))
    err = (got - x).abs().max().item()
    print(f"\nddim/{prediction_type}/clip in float64: max abs diff {err:.2e}")
    # float64 resolution (2.2e-16) × |x| (≲ 3) × the growth the docstring names, 2.7× a
    # step, over at most 20 of the 50 steps that bind the clamp (2.7²⁰ ≈ 4e8): 3e-7
    assert err <= 1e-6


def test_clipping_is_what_diffusers_does(tmp_path):
    """clip_sample changes diffusers' result, and edgediff without its clamp would
    miss it: the oracle above can fail."""
    folder, unet, sched = make_folder(tmp_path, "epsilon", "trailing", clip_sample=True)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    stock, _, bound = diffusers_loop(unet, sched, 50, x_T, 2)
    loaded = load_diffusers(folder)
    assert clip_of(loaded) == (-1.0, 1.0)
    sigmas = loaded.schedule.sigmas(50, "trailing")
    g = torch.Generator().manual_seed(2)
    z = torch.stack([torch.randn(SHAPE, generator=g) for _ in range(50)])
    x_hat = x_T.double() * math.sqrt(1 + sigmas[0] ** 2)
    unclipped = ddpm(at_precision(loaded.denoiser), x_hat, sigmas, noise=z)
    assert (unclipped.float() - stock).abs().max().item() > 10 * bound


def test_loaded_config_records_the_source(tmp_path):
    folder, _, _ = make_folder(tmp_path, "v_prediction", "trailing")
    loaded = load_diffusers(folder)
    assert loaded.config["parameterization"]["name"] == "v_prediction"
    assert loaded.sample_shape == (1, 8, 8)
    assert loaded.config["provenance"]["timestep_spacing"] == "trailing"
    json.dumps(loaded.config)  # serialisable, so export can carry it


@pytest.mark.parametrize("clip_sample,clip_range", [(True, 1.0), (True, 2.5), (False, 1.0)])
def test_clip_sample_travels_into_the_artifact(tmp_path, clip_sample, clip_range):
    """clip_sample and its range become the data range and the exported default
    solver's clip, which the runtime then applies."""
    from edgediff import runtime
    from edgediff.export.onnx import export_onnx

    folder, _, _ = make_folder(tmp_path, "epsilon", "trailing", clip_sample=clip_sample)
    cfg = folder / "scheduler" / "scheduler_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "clip_sample_range": clip_range}))
    loaded = load_diffusers(folder)
    assert tuple(loaded.config["data_range"]) == (-clip_range, clip_range)
    export_onnx(loaded, tmp_path / "m.onnx", source_sha256="0" * 64)
    D = runtime.load(tmp_path / "m.onnx")
    assert D.info.data_range == (-clip_range, clip_range)
    assert D.info.default_solver.get("clip", False) is clip_sample
    x = runtime.sample(D, 2, steps=4)
    if clip_sample:  # a random ε-UNet's samples leave any data range unless clamped
        assert x.min() >= -clip_range and x.max() <= clip_range
    else:
        assert abs(x).max() > clip_range


def test_a_bad_clip_sample_range_is_refused(tmp_path):
    folder, _, _ = make_folder(tmp_path, "epsilon", clip_sample=True)
    cfg = folder / "scheduler" / "scheduler_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "clip_sample_range": -1}))
    with pytest.raises(EdgediffError, match="clip_sample_range must be a number > 0"):
        load_diffusers(folder)


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
    algorithm to rounding: what is left in float32 is precision, not a mismatch.
    250 leading steps (stride 4) keep every branch of the step in play at a
    quarter of the 1000-step chain's cost; that chain runs in float32 above."""
    folder, unet, sched = make_folder(tmp_path, "sample", "leading")
    unet, steps = unet.double(), 250
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
    print(f"\nddpm/sample/leading/{steps} in float64: max abs diff {err:.2e}")
    assert err <= 1e-10


def test_a_class_conditional_unet_exports_and_agrees_with_diffusers_forward(tmp_path):
    """A local, random UNet2DModel with num_class_embeds: the exported graph takes
    class_labels and gives diffusers' own D = x̂ − σ·ε(x̂/√(1+σ²), t, label) at integer
    timesteps, within 64 ulps of |D|·max(σ, 1) (the export tests' network bound)."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnxruntime as ort

    from edgediff.export.onnx import export_onnx
    from edgediff.tolerance import EPS32

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(16, 32), norm_num_groups=8, num_class_embeds=5,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    folder = tmp_path / "cond"
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    loaded = load_diffusers(folder)
    assert (loaded.config["num_classes"], loaded.config["null_label"]) == (4, 4)
    path = tmp_path / "cond.onnx"
    export_onnx(loaded, path, source_sha256="0" * 64)  # validated against torch as well
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x", "sigma", "class_labels"]
    t = torch.tensor([0, 10, 250, 600, 999])
    sigma = torch.from_numpy(loaded.schedule.sigma_table[t.numpy()]).float()
    labels = torch.tensor([0, 1, 2, 3, 4])  # 4: the null label
    x = torch.randn(5, 1, 8, 8) * sigma.reshape(-1, 1, 1, 1).clamp(min=1)
    (got,) = sess.run(None, {"x": x.numpy(), "sigma": sigma.numpy(),
                             "class_labels": labels.numpy()})
    with torch.no_grad():
        c_in = 1 / torch.sqrt(sigma**2 + 1).reshape(-1, 1, 1, 1)
        eps = unet(x * c_in, t, class_labels=labels).sample
        want = (x - sigma.reshape(-1, 1, 1, 1) * eps).numpy()
    scale = np.maximum(np.abs(want).reshape(5, -1).max(1), 1) * np.maximum(sigma.numpy(), 1)
    err = np.abs(got - want).reshape(5, -1).max(1)
    assert np.all(err <= 64 * EPS32 * scale), err / (EPS32 * scale)
    other = sess.run(None, {"x": x.numpy(), "sigma": sigma.numpy(),
                            "class_labels": ((labels + 1) % 5).numpy()})[0]
    assert np.abs(other - got).max() > 64 * EPS32 * scale.max()  # the label matters
