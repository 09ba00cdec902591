"""A diffusers consistency folder (UNet2DModel + CMStochasticIterativeScheduler, the
layout of openai's diffusers-cd_* releases) exports with the boundary condition
folded into the graph, and the torch-free runtime's ``cm`` on it reproduces
diffusers' own ``ConsistencyModelPipeline`` from the same x_T with the same
injected noise, at 1, 2 and 4 steps, unconditional and class-conditional.

Bound, 1e-4 on images in [0, 1]: both sides run the same float32 UNet on the same
float32 σ's (the grid is the scheduler's own table), so they differ by float32
reassociation in the UNet and the coefficients (a few ulps of |F|, |x| ≤ 80·5 at the
first step: c_out ≈ σ_d scales F, and x's own ulps at 80·|z| ≈ 400 are 3e-5) and by
diffusers' float32 σ_min (its last step adds noise of std ≤ 7e-7; see
tests/samplers/test_consistency.py); each step's D is clamped to [−1, 1] (the
scheduler's clip_denoised), which stops any growth.
"""

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="diffusers is not installed (pip install diffusers)")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
import diffusers.schedulers.scheduling_consistency_models as cm_module
from diffusers import CMStochasticIterativeScheduler, ConsistencyModelPipeline, UNet2DModel

from edgediff import runtime
from edgediff.errors import EdgediffError
from edgediff.streams import NoiseStreams

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
UNET = {"sample_size": 8, "in_channels": 3, "out_channels": 3, "layers_per_block": 1,
        "block_out_channels": (8, 16), "norm_num_groups": 4,
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D")}
BOUND = 1e-4


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{"uncond"|"cond": (pipeline, artifact path)}: tiny random consistency folders."""
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.models.loader import resolve_source

    out = {}
    for name, extra in (("uncond", {}), ("cond", {"num_class_embeds": 4})):
        folder = tmp_path_factory.mktemp(name)
        torch.manual_seed(0)
        unet = UNet2DModel(**UNET, **extra)
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(torch.randn_like(p) * 0.05)  # zero-initialised outputs would hide F
        sched = CMStochasticIterativeScheduler(num_train_timesteps=40, sigma_min=0.002,
                                               sigma_max=80.0)
        ConsistencyModelPipeline(unet=unet, scheduler=sched).save_pretrained(
            folder, safe_serialization=True)
        model, sha = resolve_source(str(folder))
        path = folder / "cm.onnx"
        export_onnx(model, path, ExportOptions(validate=False), source_sha256=sha)
        out[name] = (ConsistencyModelPipeline(unet=unet.eval(), scheduler=sched), path)
    return out


def diffusers_images(pipe, n, steps, labels, monkeypatch):
    """The pipeline's images ([0, 1]) from edgediff's x_T and step noise (seed 0)."""
    streams = NoiseStreams(0, range(n), (3, 8, 8))
    x_T = torch.from_numpy(streams.initial().astype(np.float32))
    count = len(steps) if isinstance(steps, list) else steps
    draws = iter([torch.from_numpy(streams(i).astype(np.float32)) for i in range(count)])
    monkeypatch.setattr(cm_module, "randn_tensor", lambda *a, **k: next(draws))
    kwargs = {"num_inference_steps": None, "timesteps": steps} if isinstance(steps, list) \
        else {"num_inference_steps": steps}
    out = pipe(batch_size=n, class_labels=labels, output_type="pt",
               latents=x_T, **kwargs)
    return out.images.numpy(), pipe.scheduler.sigmas.double().tolist()


@pytest.mark.parametrize("name,steps", [("uncond", 1), ("uncond", [22, 0]), ("uncond", 4),
                                        ("cond", [22, 0])])
def test_cm_on_a_consistency_folder_matches_diffusers_pipeline(folders, name, steps,
                                                               monkeypatch):
    pipe, path = folders[name]
    labels = [0, 3, 1] if name == "cond" else None
    want, table = diffusers_images(pipe, 3, steps, labels, monkeypatch)
    D = runtime.load(path)
    assert D.info.parameterization == "consistency" and D.info.default_solver["solver"] == "cm"
    grid = [*table[:-1], 0.0]  # the scheduler's σ's; its last entry is σ_min (no noise)
    x = runtime.sample(D, 3, seed=0, solver="cm", options={"clip": True},
                       condition=runtime.Condition(labels=labels),
                       run=runtime.RunOptions(sigmas=grid))
    got = np.clip(x / 2 + 0.5, 0, 1)
    err = np.abs(got - want).max()
    print(f"{name} {steps}: max abs diff {err:.2e} (images in [0, 1], std {want.std():.3f})")
    assert err <= BOUND and want.std() > 0.05
    if len(grid) > 2:  # teeth: other step noise lands elsewhere
        other = runtime.sample(D, 3, seed=1, solver="cm", options={"clip": True},
                               condition=runtime.Condition(labels=labels),
                               run=runtime.RunOptions(sigmas=grid))
        assert np.abs(np.clip(other / 2 + 0.5, 0, 1) - want).max() > 100 * BOUND


def test_a_consistency_models_classes_are_all_real(folders):
    """openai's class-conditional consistency models have no null class: every sample
    needs a label, classifier-free guidance is refused, and the last class is a class."""
    D = runtime.load(folders["cond"][1])
    assert D.info.num_classes == 4 and D.info.null_label is None
    runtime.sample(D, 2, condition=runtime.Condition(labels=[3, 3]))  # a real class
    with pytest.raises(EdgediffError, match="give every sample a class label"):
        runtime.sample(D, 2)
    with pytest.raises(EdgediffError, match="classifier-free guidance needs an unconditional"):
        runtime.sample(D, 2, condition=runtime.Condition(labels=[1, 2], guidance=2.0))
    with pytest.raises(EdgediffError, match=r"class label 4 is out of range: this model has "
                                            r"classes 0…3$"):
        runtime.sample(D, 2, condition=runtime.Condition(labels=[4, 0]))
