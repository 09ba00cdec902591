"""diffusers DiT folders (DiTTransformer2DModel, tiny and random, saved with
save_pretrained; no hub) read, export and sample.

The oracle is diffusers' own forward, turned into a denoiser by the DDPM chain's
algebra, written here independently of ``models/precond.py``: x_t = √ᾱ·(x0 + σ·ε)
with σ = √((1−ᾱ)/ᾱ), so x̂ = x_t/√ᾱ and √ᾱ = 1/√(1+σ²), i.e. the network's input is
x_t = x̂/√(1+σ²) (c_in); ε̂ = first half of its output channels (learned variance);
x0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ = x̂ − σ·ε̂ (c_skip 1, c_out −σ); and the timestep is σ's
fractional index in the σ table, np.interp on log σ (float64).
"""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="diffusers is not installed (pip install diffusers)")
pytest.importorskip("onnxruntime")
import onnx
import onnxruntime as ort
from diffusers import DDIMScheduler, DiTTransformer2DModel

from edgediff import runtime
from edgediff.errors import EdgediffError
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.models.readers import diffusers_dit, diffusers_unet, reader_for
from edgediff.runtime.guidance import guided_denoiser

K = 5  # classes; the null id is K
SIGMAS = np.array([0.0201, 0.5, 3.3, 40.0, 150.0], np.float32)  # σ_min … near σ_max
LABELS = np.array([0, 1, 2, 4, K])
# Parity bound, per element, relative to m = max(1, |x̂|, |D|) of its sample (the
# export's own comparator scale). ONNX Runtime and torch evaluate ε̂ in float32 in
# different orders: ~eps32 (1.2e-7) per op, a few dozen ops deep, so ~1e-6·|ε̂|
# (|ε̂| ≲ 3 here). c_out = −σ amplifies that by up to σ_max ≈ 157, but then |x̂| ≈ σ
# too, so against m it stays ~1e-6; the graph's float32 t(σ) differs from the
# float64 one by ≲ 2e-4 of an index near the top of the table, which moves ε̂ by as
# little again. 1e-4·m leaves 100× headroom; measured ≤ 7e-7·m (σ = 150: ≤ 4.7e-4 abs).
TOL = 1e-4


def make_dit(folder, out_channels=2 * 4, layout="pipeline"):
    torch.manual_seed(0)
    dit = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                out_channels=out_channels, num_layers=2, sample_size=8,
                                patch_size=2, num_embeds_ada_norm=K).eval()
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    if layout == "pipeline":
        dit.save_pretrained(folder / "transformer", safe_serialization=True)
        sched.save_pretrained(folder / "scheduler")
    else:
        dit.save_pretrained(folder, safe_serialization=True)
        sched.save_pretrained(folder)  # scheduler_config.json beside config.json
    return dit


@pytest.fixture(scope="module")
def dit_model(tmp_path_factory):
    """(the diffusers DiT, the loaded model, a folder of exports)."""
    tmp = tmp_path_factory.mktemp("dit")
    dit = make_dit(tmp / "pipe")
    return dit, diffusers_dit.load_dit(tmp / "pipe"), tmp


def reference(dit, loaded, x, sigma, labels):
    """D = x̂ − σ·ε̂(x̂/√(1+σ²), t(σ), label), as the module docstring derives it."""
    s = sigma.astype(np.float64)
    table = loaded.schedule.sigma_table
    t = np.interp(np.log(s), np.log(table), np.arange(table.size))
    x_t = x.astype(np.float64) / np.sqrt(1 + s**2)[:, None, None, None]
    with torch.no_grad():
        out = dit(torch.from_numpy(x_t).float(), torch.from_numpy(t).float(),
                  class_labels=torch.from_numpy(labels)).sample
    eps = out[:, :4].double().numpy()
    return x.astype(np.float64) - s[:, None, None, None] * eps


def inputs(seed=0):
    x = np.random.default_rng(seed).standard_normal((SIGMAS.size, 4, 8, 8))
    return (x * np.maximum(SIGMAS, 1)[:, None, None, None]).astype(np.float32)


def assert_close(got, want, x):
    m = np.maximum(1, np.maximum(np.abs(x), np.abs(want)).reshape(len(x), -1).max(1))
    err = np.abs(got - want).reshape(len(x), -1).max(1)
    print(f"\nmax |err| per σ {np.array2string(err, precision=2)}; / m "
          f"{np.array2string(err / m, precision=2)}")
    assert np.all(err <= TOL * m), err / m


@pytest.mark.parametrize("layout", ["pipeline", "transformer"])
def test_both_layouts_go_to_the_dit_reader(tmp_path, layout):
    make_dit(tmp_path / "m", layout=layout)
    assert reader_for(tmp_path / "m") is diffusers_dit
    loaded = reader_for(tmp_path / "m").read(tmp_path / "m")
    assert (loaded.config["num_classes"], loaded.config["null_label"]) == (K, K)
    assert loaded.sample_shape == (4, 8, 8)
    assert loaded.config["parameterization"]["name"] == "epsilon"
    json.dumps(loaded.config)


def test_a_unet_folder_is_not_read_as_a_dit(tmp_path):
    from diffusers import UNet2DModel

    UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                block_out_channels=(8, 8), norm_num_groups=4,
                down_block_types=("DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D")).save_pretrained(tmp_path / "unet")
    assert not diffusers_dit.can_read(tmp_path)
    assert reader_for(tmp_path) is diffusers_unet


def test_the_graph_is_diffusers_forward_as_a_denoiser(dit_model):
    """Parity of the exported graph with the oracle, over σ_min … σ_max, every class
    and the null id; the label matters. Opset 17; attention is plain ONNX ops."""
    dit, loaded, tmp = dit_model
    path = tmp / "plain.onnx"
    export_onnx(loaded, path, ExportOptions(validate=False), source_sha256="0" * 64)
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    ops = {n.op_type for n in proto.graph.node}
    assert {"MatMul", "Softmax", "LayerNormalization"} <= ops, ops
    assert all(o.domain in ("", "ai.onnx") for o in proto.opset_import)  # no custom ops
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = inputs()
    feed = {"x": x, "sigma": SIGMAS, "class_labels": LABELS}
    got = sess.run(None, feed)[0]
    assert_close(got, reference(dit, loaded, x, SIGMAS, LABELS), x)
    other = sess.run(None, {**feed, "class_labels": (LABELS + 1) % (K + 1)})[0]
    assert np.abs(other - got)[:3].max() > 1e-3  # the label matters


def test_without_learned_variance_the_whole_output_is_epsilon(tmp_path):
    dit = make_dit(tmp_path / "m", out_channels=None)
    loaded = diffusers_dit.load_dit(tmp_path / "m")
    assert loaded.config["provenance"]["learned_variance"] is False
    x = inputs(1)
    with torch.no_grad():
        got = loaded.denoiser(torch.from_numpy(x), torch.from_numpy(SIGMAS),
                              torch.from_numpy(LABELS)).numpy()
    assert_close(got, reference(dit, loaded, x, SIGMAS, LABELS), x)


@pytest.mark.parametrize("w", [0.0, 3.0])
def test_guidance_is_conditional_against_the_null_class(dit_model, w):
    """Both forms of docs/conditioning.md give D_u + w·(D_c − D_u) with the null id K:
    the --guidance graph (one launch) and runtime.Condition on the plain graph."""
    dit, loaded, tmp = dit_model
    guided, plain = tmp / "guided.onnx", tmp / "plain-g.onnx"
    for path, guidance in ((guided, True), (plain, False)):
        if not path.exists():
            export_onnx(loaded, path, ExportOptions(validate=False, guidance=guidance),
                        source_sha256="0" * 64)
    x, labels = inputs(2), np.array([0, 1, 2, 3, 4])
    d_c = reference(dit, loaded, x, SIGMAS, labels)
    d_u = reference(dit, loaded, x, SIGMAS, np.full(5, K))
    want = d_u + w * (d_c - d_u)
    for path in (guided, plain):
        D = runtime.load(path)
        assert (D.info.num_classes, D.info.null_label) == (K, K)
        assert_close(guided_denoiser(D, labels, w)(x, SIGMAS), want, x)


def test_the_runtime_samples_it_with_guidance(dit_model):
    _, _, tmp = dit_model
    path = tmp / "guided.onnx"
    if not path.exists():
        export_onnx(dit_model[1], path, ExportOptions(validate=False, guidance=True),
                    source_sha256="0" * 64)
    D = runtime.load(path)
    x = runtime.sample(D, 2, seed=0, steps=4,
                       condition=runtime.Condition(labels=np.array([1, 3]), guidance=2.0))
    assert x.shape == (2, 4, 8, 8) and np.isfinite(x).all()


def test_pickled_weights_are_refused(tmp_path):
    make_dit(tmp_path / "m")
    (tmp_path / "m" / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(EdgediffError, match="does not unpickle"):
        diffusers_dit.load_dit(tmp_path / "m")
