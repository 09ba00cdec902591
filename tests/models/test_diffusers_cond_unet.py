"""A diffusers UNet2DConditionModel folder exports as a tensor-conditioned artifact
D(x̂, σ, encoder_hidden_states) (no hub access: a tiny random UNet saved with
save_pretrained).

Parity: diffusers' forward is ε(x_t, t, e) with x_t = x̂·√ᾱ_t and σ² = (1 − ᾱ_t)/ᾱ_t,
so D(x̂; σ, e) = x̂ − σ·ε(x̂/√(1 + σ²), t, e). The graph (ONNX Runtime) and this
formula (torch, float64 around a float32 UNet) differ only by float32 rounding in
the UNet's kernels: a few ulps (eps = 1.2e-7) of its activations, amplified by the
network's depth (~10² for this UNet) and by σ in x̂ − σ·ε. Measured on the call's
scale m = max(1, |x̂|, |D|), as export validation does, the bound is therefore
~1e-5; the test asks ≤ 1e-4 of m and records the figure.
"""

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="diffusers is not installed (pip install diffusers)")
from diffusers import DDPMScheduler, UNet2DConditionModel

from edgediff import runtime
from edgediff.errors import EdgediffError
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.models.readers import load_model, reader_for

SEQ, WIDTH = 5, 16


def make_folder(tmp_path, null: np.ndarray | None = None):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=WIDTH,
        attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    folder = tmp_path / "sd"
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                  beta_start=0.00085, beta_end=0.012, clip_sample=False
                  ).save_pretrained(folder / "scheduler")
    if null is not None:
        np.save(folder / "null_encoder_hidden_states.npy", null)
    return folder, unet.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cond-unet")
    null = np.random.default_rng(5).standard_normal((1, SEQ, WIDTH)).astype(np.float32)
    folder, unet = make_folder(tmp, null)
    model = load_model(folder)
    out = tmp / "unet.onnx"
    result = export_onnx(model, out, ExportOptions(), source_sha256="0" * 64)
    assert result.ok, result  # ONNX Runtime vs torch on the null and random embeddings
    return out, unet, null[0]


def diffusers_D(unet, x, sigma, emb, alphas_cumprod):
    """D from diffusers' own forward, by the formula in the module docstring; the
    timestep is the one whose σ is ``sigma`` (here table entries, so whole numbers)."""
    table = np.sqrt((1 - alphas_cumprod) / alphas_cumprod)
    t = np.array([int(np.argmin(np.abs(table - s))) for s in sigma])
    s = sigma.astype(np.float64).reshape(-1, 1, 1, 1)
    x_t = torch.from_numpy((x / np.sqrt(1 + s ** 2)).astype(np.float32))
    with torch.no_grad():
        eps = unet(x_t, torch.from_numpy(t), encoder_hidden_states=torch.from_numpy(emb),
                   return_dict=False)[0].double().numpy()
    return x - s * eps


def test_the_graph_matches_diffusers_forward_with_and_without_the_embedding(exported):
    path, unet, null = exported
    D = runtime.load(path)
    (spec,) = D.info.tensors
    assert (spec.name, spec.shape) == ("encoder_hidden_states", (SEQ, WIDTH))
    np.testing.assert_array_equal(spec.null, null)
    ac = D.info.schedule.alphas_cumprod
    table = np.sqrt((1 - ac) / ac)
    sigma = table[[0, 250, 500, 999]].astype(np.float32)  # table entries: whole timesteps
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 4, 8, 8)) * np.sqrt(1 + sigma.astype(np.float64) ** 2
                                                    ).reshape(-1, 1, 1, 1)).astype(np.float32)
    emb = rng.standard_normal((4, SEQ, WIDTH)).astype(np.float32)
    worst = 0.0
    for e, fed in ((emb, {"encoder_hidden_states": emb}), (np.broadcast_to(null, emb.shape), {})):
        got = D(x, sigma, **fed).astype(np.float64)
        ref = diffusers_D(unet, x, sigma, np.ascontiguousarray(e), ac)
        m = np.maximum.reduce([np.ones(4), np.abs(x).reshape(4, -1).max(1),
                               np.abs(ref).reshape(4, -1).max(1)]).reshape(-1, 1, 1, 1)
        worst = max(worst, float((np.abs(got - ref) / m).max()))
    print(f"max |D_graph − D_diffusers| / m = {worst:.2e}")
    assert worst <= 1e-4


def test_classifier_free_guidance_runs_against_the_null_embedding(exported):
    from edgediff.runtime.guidance import guided_denoiser
    from edgediff.tensor_conditioning import check_tensors

    path, _, null = exported
    D = runtime.load(path)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    sigma = np.full(2, 2.0, np.float32)
    emb = rng.standard_normal((2, SEQ, WIDTH)).astype(np.float32)
    w = 7.5
    d_c = D(x, sigma, encoder_hidden_states=emb).astype(np.float64)
    d_null = D(x, sigma, encoder_hidden_states=null).astype(np.float64)
    guided = guided_denoiser(D, None, w, tensors=check_tensors(
        D.info.tensors, {"encoder_hidden_states": emb}, 2))
    np.testing.assert_allclose(guided(x, sigma), d_null + w * (d_c - d_null), atol=1e-4)
    samples = runtime.sample(D, 2, steps=3, condition=runtime.Condition(
        guidance=w, tensors={"encoder_hidden_states": emb}))
    assert samples.shape == (2, 4, 8, 8) and np.all(np.isfinite(samples))


def test_without_a_null_file_the_null_is_zeros_of_clips_length(tmp_path, caplog):
    folder, _ = make_folder(tmp_path)
    assert reader_for(folder).__name__.endswith("diffusers_cond_unet")
    model = load_model(folder)
    spec = model.config["conditioning_tensors"]["encoder_hidden_states"]
    assert spec == {"shape": [77, WIDTH], "dtype": "float32", "null": "zeros"}
    assert "null_encoder_hidden_states.npy" in caplog.text
    np.save(folder / "null_encoder_hidden_states.npy", np.zeros((3, 7), np.float32))
    with pytest.raises(EdgediffError, match=r"has shape \[3, 7\].*\[seq, 16\]"):
        load_model(folder)
