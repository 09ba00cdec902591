"""The networks' inference path, wrapped in every preconditioner, exports to ONNX
(opset 17, dynamic batch) and ONNX Runtime reproduces torch at another batch size.
The full export pipeline (metadata, validation, fp16) is edgediff.export's job."""

import warnings

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("onnx", reason="onnx is not installed")

from edgediff.discrete import DiscreteSchedule  # noqa: E402
from edgediff.models.networks import MLP, UNet  # noqa: E402
from edgediff.models.precond import make_precond  # noqa: E402
from edgediff.tolerance import EPS32  # noqa: E402

ABAR = DiscreteSchedule.from_betas().alphas_cumprod
DEPTH_ULPS = 64
CASES = {
    "unet-edm": (lambda: UNet(8, 1, 1, model_channels=16, channel_mult=(1, 2), num_blocks=1,
                              attn_resolutions=(4,), embedding="positional"), "edm", (1, 8, 8)),
    "unet-ve-fourier": (lambda: UNet(8, 1, 1, model_channels=16, channel_mult=(1, 2),
                                     num_blocks=1, embedding="fourier"), "ve", (1, 8, 8)),
    "mlp-vp": (lambda: MLP(2, hidden=32, depth=2), "vp", (2,)),
    "mlp-epsilon": (lambda: MLP(2, hidden=32, depth=2), "epsilon", (2,)),
    "mlp-v": (lambda: MLP(2, hidden=32, depth=2), "v_prediction", (2,)),
}


@pytest.mark.parametrize("case", CASES)
def test_preconditioned_networks_export_and_match_onnxruntime(tmp_path, case):
    build, par, shape = CASES[case]
    torch.manual_seed(0)
    kw = {"alphas_cumprod": ABAR} if par in ("epsilon", "v_prediction") else {}
    D = make_precond(par, build(), **kw).eval()
    with torch.no_grad():
        for p in D.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # zero-initialised output layers would hide F
    path = tmp_path / "d.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(D, (torch.randn(3, *shape), torch.tensor([0.01, 1.0, 50.0])), path,
                          input_names=["x", "sigma"], output_names=["denoised"],
                          dynamic_axes={n: {0: "batch"} for n in ("x", "sigma", "denoised")},
                          opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(5, *shape)
    sigma = torch.tensor([0.002, 0.05, 0.7, 9.0, 80.0])
    (got,) = sess.run(None, {"x": x.numpy(), "sigma": sigma.numpy()})
    with torch.no_grad():
        expect = D(x, sigma).numpy()
    # Two float32 implementations of one network: they differ by its reassociation
    # error, a few ulps per layer of each layer's scale. Per sample the scale is the
    # largest of |x|, |D| and |c_out·F| (σ·F for VE and ε: c_out multiplies F's
    # rounding); DEPTH_ULPS allows ~4 ulps for each of the network's ≤ 16 layers.
    with torch.no_grad():
        c_out = D.coefficients(sigma)[1].abs().clamp(min=1).numpy()
    scale = np.maximum(np.abs(expect).reshape(5, -1).max(1), np.abs(x.numpy()).reshape(
        5, -1).max(1)) * c_out
    err = np.abs(got - expect).reshape(5, -1).max(1)
    print(case, "ulps of scale:", (err / (EPS32 * scale)).round(2))
    assert np.all(err <= DEPTH_ULPS * EPS32 * scale), err / (EPS32 * scale)
