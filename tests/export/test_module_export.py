"""``edgediff.export.export_denoiser``: a user's own torch network becomes the usual
artifact. Each parameterization's ONNX output is checked against the closed form of
docs/design.md ("Maths") evaluated in float64 from the network's own weights, within
a float32 rounding bound derived below (``rounding_bound``); each check also shows
that the bound would catch a c_noise off by one unit. The docs page's example runs
in tests/docs/test_doc_commands.py, which runs every ```python block of docs/."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
onnx = pytest.importorskip("onnx", reason="onnx is not installed")

from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402

from edgediff import runtime  # noqa: E402
from edgediff.cli import main  # noqa: E402
from edgediff.discrete import DiscreteSchedule  # noqa: E402
from edgediff.errors import EdgediffError  # noqa: E402
from edgediff.export import ModuleSpec, export_denoiser  # noqa: E402
from edgediff.export.module import state_dict_sha256  # noqa: E402
from edgediff.export.onnx import ExportOptions  # noqa: E402
from edgediff.schedules import EDMSchedule, VPSchedule  # noqa: E402
from edgediff.tolerance import EPS32  # noqa: E402

SHAPE = (2, 2, 2)
N = math.prod(SHAPE)
GAMMA = 1e-3  # F's exact, known dependence on c_noise
DDPM = DiscreteSchedule.from_betas("linear")


class Probe(nn.Module):
    """F = ½·tanh(W·x_in + b [+ label term]) + γ·c_noise: one dot product per element
    (its float32 rounding has Higham's bound γ_n) and a known slope in c_noise."""

    def __init__(self, num_classes: int = 0, ids: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(N, N)
        self.label = (nn.Embedding(num_classes + 1, N) if ids else
                      nn.Linear(num_classes, N, bias=False)) if num_classes else None

    def forward(self, x, c_noise, labels=None):
        h = self.lin(x.flatten(1))
        if self.label is not None:
            h = h + self.label(labels)
        return (0.5 * torch.tanh(h) + GAMMA * c_noise[:, None]).reshape(x.shape)


def closed_form(par, schedule, sigma):
    """(c_skip, c_out, c_in, c_noise) in float64, from the table in docs/design.md, with
    c_noise from the schedule's own NumPy σ⁻¹ (np.interp over log σ_i for DDPM)."""
    s, one = sigma.astype(np.float64), np.ones(len(sigma))
    c_in = 1 / np.sqrt(s**2 + 1)
    if par == "edm":
        sd = 0.5
        return sd**2 / (s**2 + sd**2), s * sd / np.sqrt(s**2 + sd**2), \
            1 / np.sqrt(s**2 + sd**2), np.log(s) / 4
    if par == "denoiser":
        return 0 * one, one, one, s
    if par == "consistency":  # the boundary condition at the schedule's σ_min (0.002)
        sd, above = 0.5, s - schedule.sigma_min
        return sd**2 / (above**2 + sd**2), above * sd / np.sqrt(s**2 + sd**2), \
            1 / np.sqrt(s**2 + sd**2), np.log(s) / 4
    t = 999 * schedule.sigma_inv(s) if isinstance(schedule, VPSchedule) else schedule.sigma_inv(s)
    if par == "eps":
        return one, -s, c_in, t
    if par == "v":
        return c_in**2, -s * c_in, c_in, t
    return 0 * one, one, c_in, t  # x0


def noise_rounding(par, schedule, sigma):
    """How far float32 c_noise may be from the float64 one, in units of EPS32 (×4 ulps):
    DDPM's t = i + (log σ − l_i)/(l_{i+1} − l_i) divides the rounding of log σ and of
    the float32 table by the smallest step Δ of the table, plus t's own ½ ulp (≤ T);
    VP's (M−1)(sqrt(β_min² + 2β_d·log1p σ²) − β_min)/β_d loses the sum's ulps to the
    subtraction; ln σ/4 rounds once; σ itself is exact."""
    s = sigma.astype(np.float64)
    if par == "denoiser":
        return 0 * s
    if par in ("edm", "consistency"):
        return 4 * EPS32 * (np.abs(np.log(s)) + 1)
    if isinstance(schedule, VPSchedule):
        root = np.sqrt(schedule.beta_min**2 + 2 * schedule.beta_d * np.log1p(s**2))
        return 4 * EPS32 * 999 / schedule.beta_d * (root + schedule.beta_min)
    table = np.log(schedule.sigma_table)
    big = np.abs(np.log(s)) + 2 * np.abs(table).max()
    return 4 * EPS32 * (big / np.diff(table).min() + len(table))


def reference(net, par, schedule, x, sigma, labels=None, shift=0.0):
    """D in float64 and its float32 rounding bound, per element."""
    c_skip, c_out, c_in, c_noise = closed_form(par, schedule, sigma)
    c_noise = c_noise + shift
    W, b = (p.detach().double().numpy() for p in (net.lin.weight, net.lin.bias))
    x64 = x.astype(np.float64).reshape(len(x), -1)
    x_in = c_in[:, None] * x64
    h, size = x_in @ W.T + b, np.abs(x_in) @ np.abs(W).T + np.abs(b)
    if labels is not None:
        E = net.label.weight.detach().double().numpy()
        rows = E[labels] if isinstance(net.label, nn.Embedding) else \
            (labels[:, None] == np.arange(E.shape[1])).astype(float) @ E.T  # null: 0
        h, size = h + rows, size + np.abs(rows)
    F = 0.5 * np.tanh(h) + GAMMA * c_noise[:, None]
    D = c_skip[:, None] * x64 + c_out[:, None] * F
    bound = rounding_bound(size, F, x64, c_skip, c_out, c_noise,
                           noise_rounding(par, schedule, sigma))
    return D.reshape(x.shape), bound.reshape(x.shape)


def rounding_bound(size, F, x, c_skip, c_out, c_noise, dc):
    """Float32 against float64, per element (Higham, "Accuracy and stability", §3.1):
    - h = W·x_in + b: a dot product of N terms rounds by γ_{N+1}·Σ|w||x_in| + |b|, and
      x_in = c_in·x̂ brings ~3 ulps more (sqrt, division, product): (N + 4)·eps·size;
    - F = ½tanh(h) + γ·c: tanh has slope ≤ 1 and rounds by ~2 ulps; the c_noise term
      moves by γ·(dc + one ulp of c);
    - D = c_skip·x̂ + c_out·F: each coefficient ~3 ulps, two products and a sum ~3 ulps
      more of the larger term: 4·eps·(|c_skip·x̂| + |c_out·F|) + |c_out|·δF."""
    dF = 0.5 * (N + 4) * EPS32 * size + 2 * EPS32 + GAMMA * (dc + EPS32 * np.abs(c_noise))[:, None]
    return np.abs(c_out)[:, None] * dF + 4 * EPS32 * (np.abs(c_skip[:, None] * x)
                                                       + np.abs(c_out[:, None] * F))


def inputs(schedule, batch=16, seed=0, sigma_data=0.5):
    """x̂ = data-scale signal + σ·noise over σ_min, a log sweep and σ_max."""
    rng = np.random.default_rng(seed)
    sigma = np.geomspace(schedule.sigma_min, schedule.sigma_max, batch).astype(np.float32)
    x = rng.standard_normal((batch, *SHAPE)) * sigma_data + \
        sigma[:, None, None, None] * rng.standard_normal((batch, *SHAPE))
    return x.astype(np.float32), sigma


def run(path, x, sigma, **extra):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x, "sigma": sigma, **extra})[0].astype(np.float64)


CASES = [  # (ours, schedule, what the artifact records)
    ("eps", DDPM, "epsilon"),
    ("eps", VPSchedule(), "vp"),
    ("v", DDPM, "v_prediction"),
    ("x0", DDPM, "sample"),
    ("edm", EDMSchedule(), "edm"),
    ("denoiser", EDMSchedule(), "denoiser"),
    ("consistency", EDMSchedule(), "consistency"),
]


@pytest.mark.parametrize("par,schedule,recorded", CASES, ids=lambda c: getattr(c, "name", c))
def test_each_parameterization_exports_its_closed_form(tmp_path, par, schedule, recorded):
    net, out = Probe(), tmp_path / "m.onnx"
    result = export_denoiser(net, out, parameterization=par, sample_shape=SHAPE,
                             schedule=schedule)
    assert result.ok
    info = runtime.load(out).info
    assert (info.parameterization, info.sample_shape) == (recorded, SHAPE)
    assert info.schedule.to_dict() == schedule.to_dict()
    x, sigma = inputs(schedule)
    got = run(out, x, sigma)
    want, bound = reference(net, par, schedule, x, sigma)
    # float32 ONNX Runtime vs the float64 closed form: within the rounding bound of
    # rounding_bound (Higham's γ_n for the dot product, a few ulps per coefficient, and
    # c_noise's rounding (noise_rounding) times F's slope γ and |c_out|)
    assert np.all(np.abs(got - want) <= bound), np.max(np.abs(got - want) / bound)
    # the bound can fail: c_noise one unit off (one DDPM step) breaks it
    shifted, _ = reference(net, par, schedule, x, sigma, shift=1.0)
    assert np.any(np.abs(got - shifted) > bound)


@pytest.mark.parametrize("ids", [False, True], ids=["one_hot", "ids"])
def test_class_labels_reach_the_network_as_one_hot_rows_or_ids(tmp_path, ids):
    net, out = Probe(num_classes=3, ids=ids), tmp_path / "c.onnx"
    spec = ModuleSpec(num_classes=3, labels="ids" if ids else "one_hot")
    export_denoiser(net, out, parameterization="edm", sample_shape=SHAPE, spec=spec)
    info = runtime.load(out).info
    assert (info.num_classes, info.null_label) == (3, 3)
    x, sigma = inputs(EDMSchedule(), batch=8)
    labels = np.arange(8, dtype=np.int64) % 4  # 0, 1, 2 and the null id 3
    got = run(out, x, sigma, class_labels=labels)
    want, bound = reference(net, "edm", EDMSchedule(), x, sigma, labels)
    # the same float32 rounding bound as above, the label row added to each sum
    assert np.all(np.abs(got - want) <= bound), np.max(np.abs(got - want) / bound)
    wrong, _ = reference(net, "edm", EDMSchedule(), x, sigma, (labels + 1) % 4)
    assert np.any(np.abs(got - wrong) > bound)  # another class is told apart


@pytest.fixture(scope="module")
def eps_artifact(tmp_path_factory):
    net, out = Probe(), tmp_path_factory.mktemp("eps") / "m.onnx"
    net.train()
    export_denoiser(net, out, parameterization="eps", sample_shape=SHAPE, schedule=DDPM)
    return net, out


def test_the_artifact_records_its_provenance_and_leaves_the_net_alone(eps_artifact):
    net, out = eps_artifact
    assert net.training and next(net.parameters()).dtype == torch.float32
    provenance = json.loads(onnx.load(out).doc_string)
    assert provenance == {"source": f"module:{Probe.__module__}.Probe",
                          "source_sha256": state_dict_sha256(net), "parameterization": "eps"}
    D = runtime.load(out)
    assert D.info.source_sha256 == state_dict_sha256(Probe())  # same weights, same hash
    assert D.info.source_sha256 != state_dict_sha256(Probe(seed=1))
    x = runtime.sample(D, 3, seed=0, steps=4)
    assert x.shape == (3, *SHAPE) and np.all(np.isfinite(x))


@pytest.mark.parametrize("args", [
    ["info", "{out}"],
    ["sample", "{out}", "--num", "2", "--steps", "3", "-o", "{tmp}/s"],
    ["bench", "{out}", "--solvers", "ddim", "--nfe", "3", "--num", "2", "--reference-steps",
     "4", "-o", "{tmp}/b"],
], ids=lambda a: a[0])
def test_the_cli_takes_the_artifact_unchanged(eps_artifact, tmp_path, args):
    _, out = eps_artifact
    r = CliRunner().invoke(main, [a.format(out=out, tmp=tmp_path) for a in args])
    assert r.exit_code == 0, r.output


def test_fp16_and_guidance_take_the_cli_options(tmp_path):
    spec = ModuleSpec(num_classes=2)
    export_denoiser(Probe(num_classes=2), tmp_path / "h.onnx", parameterization="edm",
                    sample_shape=SHAPE, spec=spec, options=ExportOptions(fp16=True))
    assert runtime.load(tmp_path / "h.onnx").info.precision == "fp16"
    export_denoiser(Probe(num_classes=2), tmp_path / "g.onnx", parameterization="edm",
                    sample_shape=SHAPE, spec=spec, options=ExportOptions(guidance=True))
    D = runtime.load(tmp_path / "g.onnx")
    assert D.info.guidance_input
    x = runtime.sample(D, 2, steps=3, condition=runtime.Condition(labels=[0, 1], guidance=2.0))
    assert np.all(np.isfinite(x))


class Flat(nn.Module):
    def forward(self, x, c_noise):
        return x.flatten(1)


class Pair(nn.Module):
    def forward(self, x, c_noise):
        return x, c_noise


class NaNs(nn.Module):
    def forward(self, x, c_noise):
        return x * float("nan")


class Mixed(nn.Module):  # concatenates float32 c_noise to its input: fails in float16
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(N + 1, N)

    def forward(self, x, c_noise):
        return self.lin(torch.cat([x.flatten(1), c_noise[:, None]], 1)).reshape(x.shape)


@pytest.mark.parametrize("net,kwargs,match", [
    (Probe(), {"parameterization": "score"}, "unknown parameterization 'score'"),
    (Probe(), {"sample_shape": ()}, "sample_shape"),
    (Probe(), {"sample_shape": (0, 8)}, "sample_shape"),
    (Probe(), {"sample_shape": "2x2x2"}, "sample_shape"),
    (Probe(), {"sample_shape": (4, 4)}, "failed on a probe batch"),
    (Flat(), {}, r"returned \(2, 8\) for x_in of shape \(2, 2, 2, 2\)"),
    (Pair(), {}, "returned tuple"),
    (NaNs(), {}, "NaN or Inf"),
    (Probe(), {"parameterization": "eps", "schedule": None}, "needs a DDPM table"),
    (Probe(), {"parameterization": "v", "schedule": VPSchedule()}, "not a 'vp' schedule"),
    (Probe(), {"parameterization": "x0", "schedule": None}, "none was given"),
    (Probe(), {"parameterization": "eps", "schedule": EDMSchedule()}, "or a continuous VP"),
    (Probe(), {"schedule": DDPM.alphas_cumprod}, "schedule takes an edgediff Schedule"),
    (Flat(), {"spec": ModuleSpec(num_classes=3)}, r"must take \(x_in, c_noise, labels\)"),
    (Flat(), {"spec": {"num_classes": 3}}, "spec takes a ModuleSpec"),
    (lambda x, c: x, {}, "must be a torch.nn.Module"),
    (Mixed(), {"options": ExportOptions(fp16=True)}, r"\(float16\)"),
    (Probe(), {"options": {"fp16": True}}, "options takes an ExportOptions"),
    (Probe(), {"options": ExportOptions(guidance=True)}, "needs a class-conditional model"),
])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, net, kwargs, match):
    args = {"parameterization": "edm", "sample_shape": SHAPE, **kwargs}
    with pytest.raises(EdgediffError, match=match):
        export_denoiser(net, tmp_path / "m.onnx", **args)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs,match", [
    ({"null_label": 3}, "not class-conditional"),
    ({"num_classes": 3, "null_label": 4}, r"class id in 0…3"),
    ({"num_classes": -1}, "num_classes"),
    ({"num_classes": 2, "labels": "embedding"}, "labels must be one of one_hot, ids"),
    ({"sigma_data": 0.0}, "sigma_data"),
    ({"data_range": (1.0, -1.0)}, "data_range"),
    ({"data_range": (0.0,)}, "data_range"),
])
def test_module_spec_is_checked_where_it_is_made(kwargs, match):
    with pytest.raises(EdgediffError, match=match):
        ModuleSpec(**kwargs)


class Branchy(nn.Module):
    """A data-dependent Python branch: tracing bakes in the branch of the trace's
    all-zero example, so the graph differs from the module and validation fails."""

    def forward(self, x, c_noise):
        return x if bool(x.abs().max() > 0) else -x


def test_a_failed_export_leaves_nothing_and_keeps_what_was_there(tmp_path):
    with pytest.raises(EdgediffError, match="failed validation"):
        export_denoiser(Branchy(), tmp_path / "m.onnx", parameterization="denoiser",
                        sample_shape=SHAPE)
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept.onnx"
    kept.write_bytes(b"keep me")
    with pytest.raises(EdgediffError, match="exists"):
        export_denoiser(Probe(), kept, parameterization="edm", sample_shape=SHAPE)
    with pytest.raises(EdgediffError, match="failed validation"):
        export_denoiser(Branchy(), kept, parameterization="denoiser", sample_shape=SHAPE,
                        options=ExportOptions(force=True))
    assert kept.read_bytes() == b"keep me" and list(tmp_path.iterdir()) == [kept]
