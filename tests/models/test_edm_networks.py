"""EDM's SongUNet (DDPM++ / NCSN++) and DhariwalUNet (ADM), rebuilt as edgediff modules.

The oracle is NVlabs' own code, through its snapshots (tests/fixtures/edm, written by
NVlabs/edm): their weights load with ``strict=True`` and the denoiser reproduces the
D that NVlabs' forward returned. Configurations no snapshot covers are checked
against closed forms (FIR resampling, sinusoids, multi-head attention), the
architecture's rules, and ONNX Runtime running the traced graph.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgediff.errors import EdgediffError
from edgediff.models.edm.dhariwal import DhariwalUNet
from edgediff.models.edm.layers import (
    Conv2d,
    FourierEmbedding,
    GroupNorm,
    Linear,
    PositionalEmbedding,
    UNetBlock,
)
from edgediff.models.edm.songunet import SongUNet
from edgediff.models.snapshot.unpickle import read_snapshot, state_dict_of
from edgediff.tolerance import EPS32

FIXTURES = Path(__file__).parents[1] / "fixtures" / "edm"
# Two float32 evaluations of one layer (another kernel, another summation order)
# differ by a few ulps of that layer's scale: ½ ulp from each rounding of the
# output, ~3 from reassociating its sums (tolerance.ULPS_PER_CALL's argument).
ULPS_PER_LAYER = 4

SMALL = {"img_resolution": 16, "in_channels": 3, "out_channels": 3, "model_channels": 8}
TINY = {**SMALL, "img_resolution": 8, "channel_mult": [1, 2], "num_blocks": 1,
        "attn_resolutions": [4]}
CONFIGS = {
    "ddpmpp-3-levels": (SongUNet, {**SMALL, "channel_mult": [1, 2, 2], "num_blocks": 1,
                                   "attn_resolutions": [8, 4]}),
    "ddpmpp-4-levels-cond": (SongUNet, {**SMALL, "label_dim": 4, "augment_dim": 9,
                                        "channel_mult": [1, 2, 2, 2], "num_blocks": 1,
                                        "attn_resolutions": [16, 8, 2]}),
    "ncsnpp": (SongUNet, {**SMALL, "channel_mult": [1, 2, 2], "num_blocks": 1,
                          "attn_resolutions": [8], "embedding_type": "fourier",
                          "channel_mult_noise": 2, "encoder_type": "residual",
                          "decoder_type": "skip", "resample_filter": [1, 3, 3, 1]}),
    "song-skip-encoder": (SongUNet, {**SMALL, "img_resolution": 8, "channel_mult": [1, 2],
                                     "num_blocks": 1, "attn_resolutions": [],
                                     "encoder_type": "skip", "decoder_type": "skip"}),
    "adm-4-levels-cond": (DhariwalUNet, {**SMALL, "out_channels": 6, "label_dim": 4,
                                         "model_channels": 16, "channel_mult": [1, 2, 3, 4],
                                         "num_blocks": 1, "attn_resolutions": [4, 2]}),
    # two levels at 8×8: small graphs for the ONNX export
    "ddpmpp-8px-cond": (SongUNet, {**TINY, "label_dim": 4, "augment_dim": 9}),
    "ncsnpp-8px": (SongUNet, {**TINY, "embedding_type": "fourier", "channel_mult_noise": 2,
                              "encoder_type": "residual", "decoder_type": "skip",
                              "resample_filter": [1, 3, 3, 1]}),
    "adm-8px-cond": (DhariwalUNet, {**TINY, "label_dim": 4, "model_channels": 64}),  # 2 heads
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These networks are tiny: intra-op threads only contend on a loaded 2-core runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, seed: int = 0, **change) -> torch.nn.Module:
    """The named configuration in eval mode, its zero-initialised output layers
    perturbed so that F is O(1) and a wrong graph cannot hide behind F ≈ 0."""
    cls, kwargs = CONFIGS[name]
    torch.manual_seed(seed)
    net = cls(**{**kwargs, **change}).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def inputs(net: torch.nn.Module, batch: int, c_noise_max: float, seed: int = 1):
    """x, c_noise in [−c_noise_max, c_noise_max], one-hot labels or None, augment or None."""
    g = torch.Generator().manual_seed(seed)
    res = net.img_resolution
    x = torch.randn(batch, net.in_channels, res, res, generator=g)
    c_noise = c_noise_max * (2 * torch.rand(batch, generator=g) - 1)
    label = net.map_label
    labels = None if label is None else torch.eye(label.in_features)[
        torch.randint(label.in_features, (batch,), generator=g)]
    augment = None if net.map_augment is None else torch.randn(
        batch, net.map_augment.in_features, generator=g)
    return x, c_noise, labels, augment


def depth(net: torch.nn.Module) -> int:
    """The network's weighted layers: no value passes through more of them."""
    return sum(isinstance(m, Conv2d | Linear | GroupNorm) for m in net.modules())


def phase_gain(net: torch.nn.Module, c_noise: torch.Tensor) -> float:
    """max |c_noise·ω|, the largest phase of the noise sinusoids: an ulp of relative
    error in c_noise or in a frequency ω moves cos/sin by this many ulps of 1."""
    emb = net.map_noise
    omega = 2 * math.pi * emb.freqs.abs().max().item() if isinstance(emb, FourierEmbedding) \
        else 1.0  # positional frequencies max_positions^(−i/n) ≤ 1
    return c_noise.abs().max().item() * omega


def f_ulps(net: torch.nn.Module, c_noise: torch.Tensor) -> float:
    """Ulps of |F| two float32 runs of ``net`` may differ by: ULPS_PER_LAYER for each
    layer (errors relative to each layer's scale add; group norms re-normalise, so
    they do not compound) plus two phase-gains of the embedding's rounding."""
    return ULPS_PER_LAYER * depth(net) + 2 * phase_gain(net, c_noise)


# --- NVlabs snapshots: strict load, same D -----------------------------------------------

def vp_coefficients(sigma: torch.Tensor, kw: dict):
    """VPPrecond (Song et al. 2021; Karras et al. 2022 Table 1), in NVlabs' float32 op order."""
    beta_d, beta_min, M = kw.get("beta_d", 19.9), kw.get("beta_min", 0.1), kw.get("M", 1000)
    sigma_inv = ((beta_min**2 + 2 * beta_d * (1 + sigma**2).log()).sqrt() - beta_min) / beta_d
    return 1, -sigma, 1 / (sigma**2 + 1).sqrt(), (M - 1) * sigma_inv


def edm_coefficients(sigma: torch.Tensor, kw: dict):
    """EDMPrecond (Karras et al. 2022 Table 1), in NVlabs' float32 op order."""
    sd = kw.get("sigma_data", 0.5)
    return (sd**2 / (sigma**2 + sd**2), sigma * sd / (sigma**2 + sd**2).sqrt(),
            1 / (sd**2 + sigma**2).sqrt(), sigma.log() / 4)


SNAPSHOTS = {"edm-songunet-vp-tiny": (SongUNet, vp_coefficients),
             "edm-dhariwal-cond-tiny": (DhariwalUNet, edm_coefficients)}


@pytest.mark.parametrize("name", SNAPSHOTS)
def test_nvlabs_snapshot_loads_strictly_and_reproduces_its_D(name):
    cls, coefficients = SNAPSHOTS[name]
    precond = read_snapshot(FIXTURES / f"{name}.pkl")["ema"]
    record = precond.children["model"]
    assert record.class_name == cls.__name__
    net = cls(**record.init_kwargs).eval()
    tensors = {k.removeprefix("model."): v for k, v in state_dict_of(precond).items()}
    assert list(net.state_dict()) == list(tensors)  # names and their order
    net.load_state_dict(tensors, strict=True)  # shapes too

    ref = np.load(FIXTURES / f"{name}.ref.npz")
    x, sigma = torch.from_numpy(ref["x"]), torch.from_numpy(ref["sigma"]).reshape(-1, 1, 1, 1)
    c_skip, c_out, c_in, c_noise = coefficients(sigma, precond.init_kwargs)
    label_dim = precond.init_kwargs.get("label_dim", 0)
    labels = F.one_hot(torch.from_numpy(ref["labels"]).long(), label_dim).float() \
        if label_dim else None
    with torch.no_grad():
        D = (c_skip * x + c_out * net(c_in * x, c_noise.flatten(), labels)).numpy()
    # Per sample: D = c_skip·x + c_out·F. The combination (c_skip, c_out from a few
    # correctly rounded ops, one product, one sum) costs ≤ 4 ulps of its largest term;
    # F itself may differ by f_ulps of its scale, which c_out carries into D. The
    # scales come from the reference: |c_skip·x| and |D_ref − c_skip·x| = |c_out·F|.
    skip_x = (torch.as_tensor(c_skip, dtype=torch.float64) * x.double()).numpy()
    out_f = np.abs(ref["D"] - skip_x).reshape(len(x), -1).max(1)
    big = np.maximum(np.abs(skip_x), np.abs(ref["D"])).reshape(len(x), -1).max(1)
    bound = EPS32 * (4 * big + f_ulps(net, c_noise) * out_f)
    err = np.abs(D - ref["D"]).reshape(len(x), -1).max(1)
    assert np.all(err <= bound), (err, bound)
    assert np.all(out_f > 100 * bound)  # F shows in D: a 1 % error in F would fail


# --- configurations -----------------------------------------------------------------------

@pytest.mark.parametrize("name", CONFIGS)
def test_every_configuration_builds_and_keeps_the_image_shape(name):
    net = build(name)
    x, c_noise, labels, augment = inputs(net, 2, 1.0)
    with torch.no_grad():
        y = net(x, c_noise, labels, augment)
    out = CONFIGS[name][1]["out_channels"]
    assert y.shape == (2, out, *x.shape[2:]) and torch.isfinite(y).all()


def attention_blocks(net) -> set[str]:
    return {k.removesuffix(".qkv.weight") for k in net.state_dict() if k.endswith("qkv.weight")}


def test_ddpmpp_attends_where_asked_and_in_the_decoder_only_after_the_last_block():
    net = build("ddpmpp-3-levels")  # levels 16, 8, 4; attn_resolutions [8, 4]
    assert attention_blocks(net) == {"enc.8x8_block0", "enc.4x4_block0", "dec.4x4_in0",
                                     "dec.4x4_block1", "dec.8x8_block1"}
    keys = net.state_dict()
    assert "dec.16x16_aux_conv.weight" in keys and "dec.8x8_aux_conv.weight" not in keys
    assert keys["enc.8x8_down.conv0.resample_filter"].shape == (1, 1, 2, 2)


def test_ncsnpp_has_fourier_noise_a_residual_encoder_and_a_skip_decoder():
    sd = build("ncsnpp").state_dict()
    assert sd["map_noise.freqs"].shape == (8,)  # model_channels·channel_mult_noise / 2
    fir = torch.tensor([1.0, 3, 3, 1])
    expect = torch.outer(fir, fir)[None, None] / 64
    assert torch.equal(sd["enc.8x8_aux_residual.resample_filter"], expect)
    # the aux path carries the previous level's residual sum: 3, then 8 channels
    assert sd["enc.8x8_aux_residual.weight"].shape == (8, 3, 3, 3)
    assert sd["enc.4x4_aux_residual.weight"].shape == (16, 8, 3, 3)
    assert {k.split(".")[1] for k in sd if "_aux_up" in k} == {"8x8_aux_up", "16x16_aux_up"}
    assert {k.split(".")[1] for k in sd if "_aux_conv" in k} == {
        "4x4_aux_conv", "8x8_aux_conv", "16x16_aux_conv"}


def test_label_and_augment_maps_follow_each_architecture():
    song, adm = build("ddpmpp-4-levels-cond").state_dict(), build("adm-4-levels-cond").state_dict()
    assert song["map_label.weight"].shape == (8, 4) and "map_label.bias" in song
    assert song["map_augment.weight"].shape == (8, 9) and "map_augment.bias" not in song
    assert adm["map_label.weight"].shape == (64, 4) and "map_label.bias" not in adm


def test_adm_heads_are_64_channels_so_narrower_levels_get_no_attention():
    net = build("adm-4-levels-cond")  # channels 16, 32, 48, 64 at 16, 8, 4, 2
    assert attention_blocks(net) == {"enc.2x2_block0", "dec.2x2_in0", "dec.2x2_block0",
                                     "dec.2x2_block1"}
    assert net.dec["2x2_in0"].num_heads == 1 and net.enc["4x4_block0"].num_heads == 0


def test_multi_head_attention_matches_scaled_dot_product_attention():
    torch.manual_seed(0)
    block = UNetBlock(128, 128, 16, attention=True)  # 2 heads of 64 channels
    x = torch.randn(2, 128, 4, 4)
    with torch.no_grad():
        got = block._attend(x)
        # the qkv channels are laid out (head, channel, q|k|v)
        q, k, v = block.qkv(x).reshape(2, 2, 64, 3, 16).permute(3, 0, 1, 4, 2)
        expect = F.scaled_dot_product_attention(q, k, v).permute(0, 1, 3, 2)
        mass = torch.einsum("bhqc,bhkc->bhqk", q.abs(), k.abs()).max().item() / 8
    # A logit is a 64-term dot product: ≤ 64 ulps of its absolute mass Σ|q·k|/√64 apart
    # (worst-case summation), which moves the softmax weights by twice that, relative;
    # the output, a 16-term convex combination of v, adds ≤ 16 ulps of max|v|.
    atol = EPS32 * v.abs().max().item() * (2 * 64 * mass + 16)
    torch.testing.assert_close(got, expect.reshape(2, 128, 4, 4), rtol=0, atol=atol)


# --- layers against closed forms ----------------------------------------------------------

def test_fir_resampling_with_the_box_filter_is_average_pooling_and_nearest_upsampling():
    x = torch.randn(2, 3, 8, 8)
    down, up = Conv2d(3, 3, 0, down=True), Conv2d(3, 3, 0, up=True)
    torch.testing.assert_close(down(x), F.avg_pool2d(x, 2))
    torch.testing.assert_close(up(x), F.interpolate(x, scale_factor=2, mode="nearest"))


@pytest.mark.parametrize("direction", ["up", "down"])
def test_fir_resampling_keeps_a_constant_image_constant_away_from_the_border(direction):
    conv = Conv2d(2, 2, 0, resample_filter=[1, 3, 3, 1], **{direction: True})
    y = conv(torch.full((1, 2, 8, 8), 3.0))
    assert y.shape[-1] == (16 if direction == "up" else 4)
    torch.testing.assert_close(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 3.0))


@pytest.mark.parametrize("endpoint", [False, True])
def test_positional_embedding_is_the_sinusoids_of_its_closed_form(endpoint):
    c = torch.tensor([0.0, 0.5, 37.0, 999.0])
    got = PositionalEmbedding(16, endpoint=endpoint)(c).double().numpy()
    omega = 10000.0 ** -(np.arange(8) / (8 - endpoint))
    phase = c.double().numpy()[:, None] * omega
    # float32 ω and c·ω: 2 ulps of the phase, then ≤ 1 ulp from cos/sin
    assert np.abs(got - np.concatenate([np.cos(phase), np.sin(phase)], 1)).max() \
        <= EPS32 * (2 * 999.0 + 1)


# --- inference semantics --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ddpmpp-4-levels-cond", "adm-4-levels-cond"])
def test_no_class_labels_means_the_zero_row_and_label_dropout_one_drops_all(name):
    net = build(name, dropout=0)
    x, c_noise, labels, _ = inputs(net, 3, 1.0)
    with torch.no_grad():
        none = net(x, c_noise, None)
        assert torch.equal(none, net(x, c_noise, torch.zeros_like(labels)))
        net.train()
        net.label_dropout = 1.0
        assert torch.equal(net(x, c_noise, labels), net(x, c_noise, None))


@pytest.mark.parametrize("name", ["ncsnpp-8px", "adm-8px-cond"])
def test_a_half_network_still_embeds_the_noise_in_float32(name):
    """export's fp16 halves the whole network; c_noise stays float32 and so must its
    sinusoids (Fourier frequencies ≈ 50 would otherwise lose all phase at |c| ≈ 10)."""
    net = build(name)
    x, c_noise, labels, _ = inputs(net, 2, 4.0)
    exact = net.map_noise(c_noise)
    net.to(torch.bfloat16)
    assert torch.equal(net.map_noise(c_noise), exact)
    with torch.no_grad():
        assert net(x.bfloat16(), c_noise, labels).dtype == torch.bfloat16


def test_dropout_acts_only_while_training():
    net = build("ddpmpp-3-levels", dropout=0.5)
    x, c_noise, _, _ = inputs(net, 2, 1.0)
    with torch.no_grad():
        assert torch.equal(net(x, c_noise), net(x, c_noise))
        net.train()
        assert not torch.equal(net(x, c_noise), net(x, c_noise))


# --- user errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("cls, change, words", [
    (SongUNet, {"bogus": 1, "extra_arg": 2}, ["'bogus'", "'extra_arg'", "resample_filter"]),
    (DhariwalUNet, {"embedding_type": "fourier"}, ["'embedding_type'"]),
    (SongUNet, {"embedding_type": "sinusoid"}, ["embedding_type", "'positional'", "'fourier'"]),
    (SongUNet, {"encoder_type": "progressive"}, ["encoder_type", "'residual'"]),
    (SongUNet, {"decoder_type": "residual"}, ["decoder_type", "'standard'", "'skip'"]),
    (DhariwalUNet, {"img_resolution": 24, "channel_mult": [1, 2, 2, 2, 2]},
     ["img_resolution=24", "halved"]),
    (SongUNet, {"channel_mult": []}, ["channel_mult"]),
    (SongUNet, {"model_channels": 2}, ["2 channels", "model_channels"]),
])
def test_bad_arguments_raise_one_error_that_names_them(cls, change, words):
    with pytest.raises(EdgediffError) as info:
        cls(**{**SMALL, **change})
    assert all(w in str(info.value) for w in words), str(info.value)


# --- ONNX: traced with a dynamic batch, ONNX Runtime agrees ------------------------------------

ONNX_CASES = {"ddpmpp-8px-cond": 999.0,  # VP: c_noise = 999·t
              "ncsnpp-8px": 4.0,         # VE: c_noise = ln(σ/2), σ ≤ 80
              "adm-8px-cond": 1.1}       # EDM: c_noise = ln(σ)/4
NAMES = ["x", "c_noise", "class_labels", "augment_labels"]


@pytest.mark.parametrize("name", ONNX_CASES)
def test_traced_onnx_graph_runs_in_onnxruntime_at_another_batch_size(tmp_path, name):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    net = build(name)
    example = inputs(net, 2, ONNX_CASES[name])
    given = [n for n, v in zip(NAMES, example, strict=True) if v is not None]
    assert given == NAMES[:len(given)]  # absent inputs only at the end
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, example[:len(given)], path, input_names=given,
                          output_names=["F"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch"} for n in [*given, "F"]})
    feed = inputs(net, 3, ONNX_CASES[name], seed=2)[:len(given)]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {n: v.numpy() for n, v in zip(given, feed, strict=True)})
    with torch.no_grad():
        expect = net(*feed).numpy()
    # ONNX Runtime's kernels against torch's: f_ulps (per layer, plus the noise
    # sinusoids' phase gain) of F's scale
    scale = np.abs(expect).max()
    assert np.abs(got - expect).max() <= EPS32 * f_ulps(net, feed[1]) * scale
