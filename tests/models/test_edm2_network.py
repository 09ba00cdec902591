"""edgediff's EDM2 network (Karras et al. 2024) against NVlabs' own numbers.

The oracle is a real snapshot written by NVlabs/edm2's code (``tests/fixtures/edm``):
its state dict loads strictly and the denoiser built around it reproduces the D that
NVlabs' forward returned. That snapshot has no attention (its 32 channels hold no
head of the default 64), so attention, longer channel_mult and unconditional nets
are checked against closed forms of the paper's primitives, an independent
attention (``scaled_dot_product_attention``), NVlabs' module names, folding and
ONNX Runtime.

Tolerances: two float32 evaluations of one network round differently by a few ulps
per layer (reassociated sums, fused ops). Each magnitude-preserving layer passes a
relative error on with gain ≈ 1 (that is what it preserves) and adds its own, so F's
error is at most ULPS_PER_LAYER · layers · eps32 of the activations' scale; the
network's MPConv count bounds the layers on any path.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from edgediff.errors import EdgediffError
from edgediff.models.edm.edm2 import Block, EDM2Network, UNet, fold_weight_norm
from edgediff.models.edm.mp_layers import MPConv, mp_cat, mp_silu, mp_sum, normalize, resample
from edgediff.models.snapshot.unpickle import read_snapshot, state_dict_of
from edgediff.tolerance import EPS32

FIXTURES = Path(__file__).parents[1] / "fixtures" / "edm"
ULPS_PER_LAYER = 4  # ½ ulp per rounding, a few roundings per conv, norm and sum


def layer_bound(net: torch.nn.Module, scale) -> np.ndarray:
    """The argued float32 difference of two evaluations of ``net`` (module docstring)."""
    layers = sum(isinstance(m, MPConv) for m in net.modules())
    return ULPS_PER_LAYER * layers * EPS32 * np.asarray(scale)


def per_sample_max(a) -> np.ndarray:
    return np.abs(np.asarray(a)).reshape(len(a), -1).max(1)


def random_net(**cfg) -> EDM2Network:
    """A fresh network whose zero-initialised gains are set, so that F ≠ 0."""
    torch.manual_seed(0)
    net = EDM2Network(**cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim == 0:
                p.uniform_(0.3, 1.5)
    return net


def inputs(net: EDM2Network, batch: int = 3):
    g = torch.Generator().manual_seed(1)
    res, ch, labels = net.img_resolution, net.img_channels, net.label_dim
    x = torch.randn(batch, ch, res, res, generator=g)
    c_noise = torch.linspace(-1.5, 1.1, batch)  # ln(σ)/4 for σ ≈ 0.002 … 80
    onehot = F.one_hot(torch.arange(batch) % labels, labels).float() if labels else None
    return x, c_noise, onehot


TINY = dict(img_resolution=8, img_channels=3, model_channels=16, num_blocks=1)


# --- the real snapshot ---------------------------------------------------------

def fixture_network():
    record = read_snapshot(FIXTURES / "edm2-cond-tiny.pkl")["ema"]
    assert record.class_name == "Precond"
    kwargs = dict(record.init_kwargs)
    sigma_data = kwargs.pop("sigma_data", 0.5)
    kwargs.pop("use_fp16", None)  # chooses a CUDA dtype; CPU float32 here, as NVlabs ran
    net = EDM2Network(**kwargs).eval()
    state = state_dict_of(record)
    assert list(state) == list(net.state_dict())
    net.load_state_dict(state, strict=True)
    return net, sigma_data


@pytest.mark.parametrize("folded", [False, True], ids=["unfolded", "folded"])
def test_the_nvlabs_snapshot_loads_strictly_and_gives_its_D(folded):
    net, sd = fixture_network()
    if folded:
        fold_weight_norm(net)
    ref = np.load(FIXTURES / "edm2-cond-tiny.ref.npz")
    x = torch.from_numpy(ref["x"])
    sigma = torch.from_numpy(ref["sigma"]).reshape(-1, 1, 1, 1)
    onehot = F.one_hot(torch.from_numpy(ref["labels"]), net.label_dim).float()
    # EDM2 Precond: c_skip, c_out, c_in, c_noise (Karras et al. 2022 table 1)
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
    c_in = 1 / (sigma**2 + sd**2).sqrt()
    c_noise = sigma.flatten().log() / 4
    with torch.no_grad():
        D = (c_skip * x + c_out * net(c_in * x, c_noise, onehot)).numpy()
    err = per_sample_max(D - ref["D"])
    # F's rounding reaches D times c_out, and |c_out·F| = |D − c_skip·x| ≤ |D| + |x|;
    # c_skip·x and the sum add ½ ulp each of that same scale
    scale = per_sample_max(ref["D"]) + per_sample_max(ref["x"])
    print("max |ΔD|:", err.max())
    assert np.all(err <= layer_bound(net, scale)), err / (EPS32 * scale)


def test_a_conditional_network_reads_no_label_as_zeros():
    net, _ = fixture_network()
    x, c_noise, onehot = inputs(net)
    with torch.no_grad():
        assert torch.equal(net(x, c_noise), net(x, c_noise, torch.zeros_like(onehot)))
        assert net.logvar(c_noise).shape == (3, 1, 1, 1)


# --- the magnitude-preserving primitives: the paper's closed forms ----------------

def test_primitives_preserve_unit_magnitude():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 4, 32, 32, 32, generator=g).unbind(0)
    rms = lambda t: t.square().mean().sqrt().item()  # noqa: E731
    # normalize: RMS over the normalised axes is exactly r/(eps + r), r the input RMS
    n = normalize(3 * a, dim=1)
    r = (3 * a).square().mean(1).sqrt()
    torch.testing.assert_close(n.square().mean(1).sqrt(), r / (1e-4 + r))
    # mp_sum, mp_cat: weighted combinations of independent unit inputs stay unit;
    # mp_silu: 0.596 = RMS of silu(z), z ~ N(0, 1). 131k samples: an RMS's sampling
    # error ~1/sqrt(2·131k) ≈ 2e-3, so 0.01 is 5 standard errors (and the seed is fixed)
    for t in (0.3, 0.5, 0.8):
        assert rms(mp_sum(a, b, t)) == pytest.approx(1, abs=0.01)
        assert rms(mp_cat(a[:, :16], b, t=t)) == pytest.approx(1, abs=0.01)
    assert rms(mp_silu(a)) == pytest.approx(1, abs=0.01)
    # MPConv: unit input, unit output whatever the raw weights' scale
    conv = MPConv(32, 16, [3, 3])
    with torch.no_grad():
        conv.weight.mul_(7)
        assert rms(conv(a)[:, :, 1:-1, 1:-1]) == pytest.approx(1, abs=0.03)


def test_box_filter_resampling_is_average_pooling_and_nearest_upsampling():
    x = torch.randn(2, 5, 8, 8)
    torch.testing.assert_close(resample(x, (1, 1), "down"), F.avg_pool2d(x, 2))
    assert torch.equal(resample(x, (1, 1), "up"), F.interpolate(x, scale_factor=2))
    assert resample(x, (1, 1), "keep") is x


def test_attention_is_scaled_dot_product_attention_on_normalised_heads():
    torch.manual_seed(0)
    block = Block(32, 32, 16, attention=True, channels_per_head=8).eval()
    x = torch.randn(2, 32, 4, 4)
    qkv = block.attn_qkv(x).reshape(2, 4, 8, 3, 16)  # (head, channel, q|k|v) per pixel
    q, k, v = (normalize(t, dim=2).transpose(2, 3) for t in qkv.unbind(3))
    expect = block.attn_proj(F.scaled_dot_product_attention(q, k, v).transpose(2, 3)
                             .reshape(x.shape))
    # softmax, two matmuls and the projection, each a layer's ulps of the values' scale
    torch.testing.assert_close(block.attention(x), expect, rtol=0,
                               atol=4 * ULPS_PER_LAYER * EPS32 * expect.abs().max().item())


# --- NVlabs' module tree ------------------------------------------------------

def test_module_names_follow_nvlabs_for_four_levels():
    net = UNet(16, 3, 0, model_channels=16, channel_mult=(1, 2, 2, 2), num_blocks=1,
               attn_resolutions=(8,), channels_per_head=16)
    assert list(net.enc) == ["16x16_conv", "16x16_block0", "8x8_down", "8x8_block0",
                             "4x4_down", "4x4_block0", "2x2_down", "2x2_block0"]
    assert list(net.dec) == ["2x2_in0", "2x2_in1", "2x2_block0", "2x2_block1", "4x4_up",
                             "4x4_block0", "4x4_block1", "8x8_up", "8x8_block0", "8x8_block1",
                             "16x16_up", "16x16_block0", "16x16_block1"]
    attending = sorted(f"{side}.{name}" for side in ("enc", "dec")
                       for name, b in getattr(net, side).items()
                       if isinstance(b, Block) and b.num_heads)
    assert attending == ["dec.2x2_in0", "dec.8x8_block0", "dec.8x8_block1", "enc.8x8_block0"]
    assert net.emb_label is None and net.enc["8x8_block0"].conv_skip.weight.shape == (32, 16, 1, 1)
    assert net.dec["8x8_block0"].conv_res0.weight.shape == (32, 64, 3, 3)  # skip concatenated


@pytest.mark.parametrize("bad", [{"resample_mode": "down"}, {"dropuot": 0.1}, {"sigma_data": 0.5}])
def test_unknown_arguments_are_named(bad):
    with pytest.raises(EdgediffError, match=next(iter(bad))):
        EDM2Network(8, 3, 0, **bad)


# --- folding and export, over configurations -------------------------------------

CONFIGS = {
    "cond-attn4": dict(TINY, label_dim=4, channel_mult=(1, 2), attn_resolutions=(4,),
                       channels_per_head=16),
    "uncond-attn8-4": dict(TINY, label_dim=0, channel_mult=(1, 2), attn_resolutions=(8, 4),
                           channels_per_head=8),
    "uncond-3-levels": dict(TINY, label_dim=0, channel_mult=(1, 2, 2), attn_resolutions=(4, 2),
                            channels_per_head=16, resample_filter=(1, 3, 3, 1)),
    "uncond-4-levels-16px": dict(TINY, img_resolution=16, label_dim=0, channel_mult=(1, 1, 2, 2),
                                 attn_resolutions=(), channels_per_head=16, clip_act=None),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_folding_keeps_forward_and_stops_normalising(name):
    net = random_net(**CONFIGS[name])
    x, c_noise, onehot = inputs(net)
    with torch.no_grad():
        before = net(x, c_noise, onehot).numpy()
        fold_weight_norm(fold_weight_norm(net))  # idempotent
        after = net(x, c_noise, onehot).numpy()
        for m in net.modules():
            if isinstance(m, MPConv):
                assert m.folded and m.used_weight() is m.weight
    # gain-1 layers fold to the very weights forward used; gained ones differ by
    # (w/√n)·g against w·(g/√n), ≤ 1 ulp per weight: within the per-layer allowance
    scale = per_sample_max(before)
    assert np.all(per_sample_max(after - before) <= layer_bound(net, scale))


def export(net, x, c_noise, onehot, path):
    """Opset 17, dynamic batch, and no constant folding: the graph holds what the
    module computes, not what the exporter could precompute from it."""
    args, names = (x, c_noise), ["x", "c_noise"]
    if onehot is not None:
        args, names = (*args, onehot), [*names, "class_labels"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, args, path, input_names=names, output_names=["F"],
                          dynamic_axes={n: {0: "batch"} for n in (*names, "F")},
                          opset_version=17, dynamo=False, do_constant_folding=False)
    return names


@pytest.mark.parametrize("name", ["cond-attn4", "uncond-3-levels"])
def test_folded_network_exports_plain_weights_and_onnxruntime_matches(tmp_path, name):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    onnx = pytest.importorskip("onnx", reason="onnx is not installed")
    net = fold_weight_norm(random_net(**CONFIGS[name]))
    names = export(net, *inputs(net, batch=2), tmp_path / "f.onnx")
    graph = onnx.load(str(tmp_path / "f.onnx")).graph
    # the only norms left are the activations': an encoder block's pixel norm and an
    # attending block's q, k, v norm; an unfolded net would add one per MPConv
    blocks = [m for m in net.modules() if isinstance(m, Block)]
    activation_norms = sum(b.flavor == "enc" for b in blocks) + sum(b.num_heads > 0 for b in blocks)
    assert sum(n.op_type == "ReduceL2" for n in graph.node) == activation_norms
    sess = ort.InferenceSession(str(tmp_path / "f.onnx"), providers=["CPUExecutionProvider"])
    feeds = inputs(net, batch=5)  # another batch size than traced
    (got,) = sess.run(None, {n: t.numpy() for n, t in zip(names, feeds, strict=False)})
    with torch.no_grad():
        expect = net(*feeds).numpy()
    # ONNX Runtime and torch: two float32 evaluations (module docstring), F's scale
    err, scale = per_sample_max(got - expect), per_sample_max(expect)
    assert np.all(err <= layer_bound(net, scale)), err / (EPS32 * scale)
