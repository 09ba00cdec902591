"""Tensor conditioning (docs/conditioning.md, "Tensor conditioning"): the contract,
the export of a tensor-conditioned graph, the runtime's feeds and classifier-free
guidance against the stored null value, and ``edgediff sample --cond``.

The oracle is exact: given the embedding e [3, 2], the data are N(μ, I) with
μ = Σ_rows e, whose denoiser is D(x̂; σ) = (x̂ + σ²μ) / (1 + σ²).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from edgediff import runtime
from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError
from edgediff.graph import graph_inputs
from edgediff.runtime.guidance import guided_denoiser
from edgediff.schedules import EDMSchedule
from edgediff.tensor_conditioning import check_tensors, declare, encode_null

NULL = np.array([[0.5, -1.0], [0.0, 0.25], [0.0, 0.0]], np.float32)  # μ_null = (0.5, -0.75)
PLAIN = ArtifactInfo("edm", EDMSchedule(), 0.002, 80.0, 0.5, (2,), (-4.0, 4.0), "0" * 64,
                     {"solver": "heun", "steps": 4}, "fp32")
INFO = dataclasses.replace(PLAIN, conditioning={"tensors": {"emb": declare("emb", [3, 2], NULL)}})


def exact(x, sigma, emb):
    """The Gaussian denoiser given each sample's embedding (float64)."""
    mu = np.broadcast_to(emb, (len(x), 3, 2)).sum(1)
    s2 = np.asarray(sigma, np.float64).reshape(-1, 1) ** 2
    return (x + s2 * mu) / (1 + s2)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    import torch

    from edgediff.export.describe import stamp
    from edgediff.export.trace import export_graph, trace
    from edgediff.export.validation import validate_onnx

    class Denoiser(torch.nn.Module):
        def forward(self, x, sigma, emb):
            s2 = sigma.reshape(-1, 1) ** 2
            return (x + s2 * emb.sum(1)) / (1 + s2)

    path = tmp_path_factory.mktemp("tensor") / "emb.onnx"
    graph = export_graph(Denoiser(), INFO)
    trace(graph, INFO, path, 17)
    stamp(path, INFO)
    result = validate_onnx(path, graph, INFO, 1e-5, 1e-5)
    assert result.ok, result  # the graph fed its null value and random embeddings
    return path


def test_the_contract_round_trips_and_lists_the_inputs():
    info = ArtifactInfo.from_props(INFO.to_props())
    (spec,) = info.tensors
    assert (spec.name, spec.shape) == ("emb", (3, 2)) and np.array_equal(spec.null, NULL)
    assert [(i.name, i.dtype, i.shape) for i in graph_inputs(info)] == [
        ("x", "float32", (2,)), ("sigma", "float32", ()), ("emb", "float32", (3, 2))]
    assert info.num_classes == 0 and info.null_label is None and not info.guidance_input
    assert encode_null(np.zeros((77, 768))) == "zeros"  # zeros cost nothing
    size = len(encode_null(np.ones((77, 768)))["base64"])
    assert size == 4 * ((4 * 77 * 768 + 2) // 3)  # base64: 4/3 of the float32 bytes
    both = {"num_classes": 3, "null_label": 3, "tensors": {"emb": declare("emb", [3, 2])}}
    info = dataclasses.replace(PLAIN, conditioning=both)
    assert [i.name for i in graph_inputs(info)] == ["x", "sigma", "class_labels", "emb"]


@pytest.mark.parametrize("tensors,says", [
    ({"sigma": {"shape": [2], "dtype": "float32", "null": "zeros"}}, "an identifier other"),
    ({"a-b": {"shape": [2], "dtype": "float32", "null": "zeros"}}, "an identifier other"),
    ({"e": {"shape": [0], "dtype": "float32", "null": "zeros"}}, "positive ints"),
    ({"e": {"shape": [2], "dtype": "float16", "null": "zeros"}}, '"float32"'),
    ({"e": {**declare("e", [3], np.ones(3)), "shape": [2]}}, "size and sha256 must match"),
    ({"e": {"shape": [1], "dtype": "float32", "null": {**encode_null(np.ones(1)),
                                                       "sha256": "0" * 64}}}, "sha256"),
    ({}, "NAME an identifier"),
])
def test_bad_declarations_are_refused_with_one_line(tensors, says):
    with pytest.raises(EdgediffError, match=r"edgediff\.conditioning") as e:
        dataclasses.replace(PLAIN, conditioning={"tensors": tensors})
    assert says in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(EdgediffError, match="guidance_input needs classes"):
        dataclasses.replace(PLAIN, conditioning={"tensors": {"e": declare("e", [1])},
                                                 "guidance_input": True})


def test_the_graph_takes_embeddings_and_defaults_to_the_stored_null(artifact):
    D = runtime.load(artifact)
    rng = np.random.default_rng(0)
    x, sigma = rng.standard_normal((4, 2)).astype(np.float32), np.full(4, 1.5, np.float32)
    e = rng.standard_normal((4, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(D(x, sigma, emb=e), exact(x, sigma, e), atol=1e-6)
    np.testing.assert_allclose(D(x, sigma, emb=e[0]), exact(x, sigma, e[0]), atol=1e-6)
    np.testing.assert_allclose(D(x, sigma), exact(x, sigma, NULL), atol=1e-6)  # null value
    assert graph_inputs(D.info)[2].name == "emb"


def test_classifier_free_guidance_uses_the_null_value(artifact):
    D = runtime.load(artifact)
    rng = np.random.default_rng(1)
    x, sigma = rng.standard_normal((3, 2)).astype(np.float32), np.full(3, 0.7, np.float32)
    e = check_tensors(D.info.tensors, {"emb": rng.standard_normal((3, 3, 2))}, 3)
    w = 2.5
    d_c, d_null = exact(x, sigma, e["emb"]), exact(x, sigma, NULL)
    guided = guided_denoiser(D, None, w, tensors=e)
    np.testing.assert_allclose(guided(x, sigma), d_null + w * (d_c - d_null), atol=1e-5)
    # one run, batched per sample, equals each sample drawn alone
    cond = runtime.Condition(guidance=w, tensors={"emb": np.asarray(e["emb"])})
    together = runtime.sample(D, 3, steps=4, condition=cond, run=runtime.RunOptions(batch=3))
    alone = [runtime.sample(D, 1, steps=4, condition=runtime.Condition(
        guidance=w, tensors={"emb": e["emb"][k]}), run=runtime.RunOptions(first=k))
        for k in range(3)]
    np.testing.assert_allclose(together, np.concatenate(alone), atol=1e-6)


@pytest.mark.parametrize("tensors,says", [
    ({"text": np.zeros((3, 2))}, "no conditioning input 'text'; it takes emb [3, 2]"),
    ({"emb": np.zeros((3, 3))}, "emb has shape [3, 3]; this model takes [3, 2]"),
    ({"emb": np.zeros((5, 3, 2))}, "[2, 3, 2] (one per sample)"),
    ({"emb": np.zeros((3, 2), np.int64)}, "emb has dtype int64"),
    ({"emb": np.full((3, 2), np.nan)}, "NaN or Inf"),
])
def test_wrong_tensors_are_one_clear_error(artifact, tensors, says):
    D = runtime.load(artifact)
    with pytest.raises(EdgediffError) as e:
        runtime.sample(D, 2, steps=2, condition=runtime.Condition(tensors=tensors))
    assert says in str(e.value)
    with pytest.raises(EdgediffError, match="no tensor conditioning"):
        check_tensors(PLAIN.tensors, {"emb": np.zeros((3, 2))}, 1)


def test_sample_cond_feeds_npy_files_and_reports_errors_in_one_line(artifact, tmp_path):
    from edgediff.cli import main

    emb = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], np.float32)
    np.save(tmp_path / "emb.npy", emb)
    np.save(tmp_path / "bad.npy", np.zeros((2, 2), np.float32))
    runner = CliRunner()
    ok = runner.invoke(main, ["sample", str(artifact), "--cond", f"emb={tmp_path / 'emb.npy'}",
                              "--guidance", "2", "--num", "2", "--steps", "2",
                              "-o", str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    samples = np.load(tmp_path / "out" / "samples.npz")
    want = runtime.sample(runtime.load(artifact), 2, steps=2, condition=runtime.Condition(
        guidance=2.0, tensors={"emb": emb}))
    np.testing.assert_allclose(next(iter(samples.values())), want, atol=1e-6)
    for arg, says in [(f"emb={tmp_path / 'bad.npy'}", "--cond: emb has shape [2, 2]"),
                      (f"text={tmp_path / 'emb.npy'}", "--cond: this model has no "),
                      ("emb", "--cond takes NAME=FILE.npy"),
                      (f"emb={tmp_path / 'none.npy'}", "--cond emb: cannot read")]:
        r = runner.invoke(main, ["sample", str(artifact), "--cond", arg, "--num", "2",
                                 "--steps", "2", "-o", str(tmp_path / "no")])
        assert r.exit_code == 1 and says in r.output, r.output
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
