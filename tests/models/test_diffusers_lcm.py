"""A diffusers latent consistency folder (UNet2DConditionModel + LCMScheduler)
exports with the scheduler's discrete boundary condition inside the graph, and the
torch-free runtime's ``lcm`` solver on it reproduces diffusers' own LCM loop
(the LCM pipeline's: the UNet's output through ``LCMScheduler.step``, the last
step's ``denoised`` as the sample) from the same x_T with the same injected
noise, at 1, 2 and 4 steps, with and without the guidance-scale embedding
(``time_cond_proj_dim``).

Bound, 1e-4 on samples of |x| ≲ 60 (a random UNet's ε read through
1/√ᾱ_999 ≈ 15; float32's ulp there is 4e-6): both sides run the same float32 UNet
at the same timesteps; they differ by float32 reassociation in the UNet (a few
ulps of its activations times its depth, as tests/models/test_diffusers_cond_unet.py
argues, times that 15) and by the graph's timestep t(σ), interpolated in float32 log σ, which
lands within ~1e-4 of the scheduler's whole timestep (1e-7 relative error of
log σ over table steps of ~3e-3 in log σ): the sinusoidal embedding's
frequencies are ≤ 1, so that moves it by ≤ 1e-4·|∂F/∂emb|.
"""

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="diffusers is not installed (pip install diffusers)")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
import diffusers.schedulers.scheduling_lcm as lcm_module
from diffusers import LCMScheduler, UNet2DConditionModel

from edgediff import runtime
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.models.readers import load_model
from edgediff.models.readers.diffusers_cond_unet import GuidanceEmbedded
from edgediff.streams import NoiseStreams

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
SEQ, WIDTH, W_DIM, BOUND = 5, 16, 8, 1e-4


@pytest.fixture(scope="module", params=[None, W_DIM], ids=["plain", "w-conditioned"])
def lcm(request, tmp_path_factory):
    """(unet, scheduler, artifact path) of a tiny random LCM folder."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=WIDTH,
        attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), time_cond_proj_dim=request.param)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # zero-initialised outputs would hide F
    sched = LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    folder = tmp_path_factory.mktemp("lcm")
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    sched.save_pretrained(folder / "scheduler")
    np.save(folder / "null_encoder_hidden_states.npy", np.zeros((SEQ, WIDTH), np.float32))
    path = folder / "lcm.onnx"
    # no export validation: the tests compare the graph with diffusers' loop itself
    export_onnx(load_model(folder), path, ExportOptions(validate=False), source_sha256="0" * 64)
    return unet.eval(), sched, path


def diffusers_lcm(unet, sched, steps, emb, scale, n, monkeypatch):
    """The LCM pipeline's loop on edgediff's x_T and step noise (seed 0): the final
    ``denoised``, and the timesteps."""
    streams = NoiseStreams(0, range(n), (4, 8, 8))
    latents = torch.from_numpy(streams.initial().astype(np.float32))  # init_noise_sigma 1
    draws = iter([torch.from_numpy(streams(i).astype(np.float32)) for i in range(steps)])
    monkeypatch.setattr(lcm_module, "randn_tensor", lambda *a, **k: next(draws))
    sched.set_timesteps(steps)
    cond = {}
    if unet.config.time_cond_proj_dim is not None:
        cond["timestep_cond"] = w_embedding(torch.full((n,), scale - 1.0), W_DIM)
    with torch.no_grad():
        for t in sched.timesteps:
            out = unet(latents, t, encoder_hidden_states=torch.from_numpy(emb),
                       return_dict=False, **cond)[0]
            latents, denoised = sched.step(out, t, latents, return_dict=False)
    return denoised.numpy(), [int(t) for t in sched.timesteps]


def w_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """The LCM pipeline's guidance embedding, written out (Luo et al. 2023 via VDM):
    [sin(1000·w·f_j), cos(1000·w·f_j)], f_j = 10000^(−j/(dim/2 − 1))."""
    half = dim // 2
    f = torch.exp(-np.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - 1))
    arg = 1000.0 * w[:, None] * f[None]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_lcm_on_an_lcm_folder_matches_diffusers_loop(lcm, steps, monkeypatch):
    unet, sched, path = lcm
    n, scale = 3, 4.5
    emb = np.random.default_rng(1).standard_normal((n, SEQ, WIDTH)).astype(np.float32)
    want, timesteps = diffusers_lcm(unet, sched, steps, emb, scale, n, monkeypatch)
    D = runtime.load(path)
    assert D.info.parameterization == "lcm" and D.info.default_solver["solver"] == "lcm"
    tensors = {"encoder_hidden_states": emb}
    if unet.config.time_cond_proj_dim is not None:
        tensors["guidance_scale"] = np.full((n, 1), scale, np.float32)
    grid = runtime.timestep_sigmas(D.info, timesteps)
    got = runtime.sample(D, n, seed=0, solver="lcm",
                         condition=runtime.Condition(tensors=tensors),
                         run=runtime.RunOptions(sigmas=grid))
    err = np.abs(got - want).max()
    print(f"{steps} steps {timesteps}: max abs diff {err:.2e} (|x| ≤ {np.abs(want).max():.2f})")
    assert err <= BOUND and want.std() > 0.05
    if steps > 1:  # teeth: other step noise lands elsewhere
        other = runtime.sample(D, n, seed=1, solver="lcm",
                               condition=runtime.Condition(tensors=tensors),
                               run=runtime.RunOptions(sigmas=grid))
        assert np.abs(other - want).max() > 100 * BOUND


def test_the_guidance_scale_is_an_input_with_the_pipelines_default(lcm):
    unet, _, path = lcm
    D = runtime.load(path)
    names = [t.name for t in D.info.tensors]
    if unet.config.time_cond_proj_dim is None:
        assert names == ["encoder_hidden_states"]
        return
    assert names == ["encoder_hidden_states", "guidance_scale"]
    np.testing.assert_array_equal(D.info.tensors[1].null, [8.5])
    emb = np.zeros((2, SEQ, WIDTH), np.float32)
    x = runtime.sample(D, 2, seed=0, steps=1, condition=runtime.Condition(
        tensors={"encoder_hidden_states": emb}))
    default = runtime.sample(D, 2, seed=0, steps=1, condition=runtime.Condition(
        tensors={"encoder_hidden_states": emb, "guidance_scale": np.full((2, 1), 8.5,
                                                                         np.float32)}))
    other = runtime.sample(D, 2, seed=0, steps=1, condition=runtime.Condition(
        tensors={"encoder_hidden_states": emb, "guidance_scale": np.full((2, 1), 1.0,
                                                                         np.float32)}))
    np.testing.assert_array_equal(x, default)
    assert np.abs(other - x).max() > 100 * BOUND


def test_the_graphs_embedding_is_the_pipelines():
    """``GuidanceEmbedded`` embeds w = scale − 1 as the written-out formula does, at
    the scale where guidance is off (w = 0) and above it."""

    class Seen(torch.nn.Module):
        model = torch.nn.Identity()

        def forward(self, x, sigma, conditioning):
            self.embedding = conditioning[1]
            return x

    seen, scale = Seen(), torch.tensor([[1.0], [4.5], [8.5]])
    GuidanceEmbedded(seen, W_DIM)(torch.zeros(3, 1), torch.ones(3),
                                  torch.zeros(3, SEQ, WIDTH), scale)
    torch.testing.assert_close(seen.embedding, w_embedding(scale[:, 0] - 1, W_DIM),
                               rtol=0, atol=1e-6)
