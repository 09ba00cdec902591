"""The precision quality gate (edgediff.lab.gate, ``check --precision``, ``bench``'s
verdict): the verdict's branches as pure arithmetic on the documented thresholds, and
the gate on the bundled digits model at fp32 against itself and against int8."""

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgediff.errors import EdgediffError
from edgediff.lab import gate
from edgediff.lab.gate import THRESHOLDS, Thresholds, check_same_model, verdict

T = THRESHOLDS


# -- the verdict: pure --------------------------------------------------------------

@pytest.mark.parametrize("half_range", [1.0, 4.5])
def test_rms_is_judged_in_half_ranges(half_range):
    h = half_range
    assert verdict(0.0, h, None, None, None).level == "pass"
    assert verdict(T.rms_warn * h, h, None, None, None).level == "pass"  # limits included
    assert verdict(1.01 * T.rms_warn * h, h, None, None, None).level == "warn"
    assert verdict(T.rms_fail * h, h, None, None, None).level == "warn"
    v = verdict(1.01 * T.rms_fail * h, h, None, None, None)
    assert v.level == "fail" and "half range" in v.reasons[0]


def test_distance_limits_are_a_relative_margin_plus_a_share_of_the_floor():
    d, floor = 5.0, 2.0
    warn_at, fail_at = T.distance_limits(d, floor)
    assert warn_at == pytest.approx(d * (1 + T.rel_warn) + T.floor_warn * floor)
    assert fail_at == pytest.approx(d * (1 + T.rel_fail) + T.floor_fail * floor)
    assert d < warn_at < fail_at
    assert verdict(0.0, 1.0, d, warn_at, floor).level == "pass"
    assert verdict(0.0, 1.0, d, 0.5 * d, floor).level == "pass"  # better than fp32
    assert verdict(0.0, 1.0, d, warn_at + 1e-9, floor).level == "warn"
    assert verdict(0.0, 1.0, d, fail_at, floor).level == "warn"
    v = verdict(0.0, 1.0, d, fail_at + 1e-9, floor)
    assert v.level == "fail" and "distance to the data" in v.reasons[0]


def test_a_model_at_zero_distance_is_not_judged_on_the_metric_noise():
    # the exact mixture: fp32's distance may sit at (or under) the floor
    assert verdict(0.0, 1.0, 0.0, 0.04, 1.0).level == "pass"
    assert verdict(0.0, 1.0, 0.0, 0.2, 1.0).level == "warn"


def test_the_verdict_is_the_worst_criterion_and_lists_each():
    v = verdict(1.01 * T.rms_warn, 1.0, 1.0, 10.0, 0.1)
    assert v.level == "fail" and len(v.reasons) == 2
    assert verdict(1.01 * T.rms_fail, 1.0, 1.0, 1.0, 0.1).level == "fail"


def test_non_finite_samples_fail():
    v = verdict(math.nan, 1.0, 1.0, math.nan, 0.1, finite=False)
    assert v.level == "fail" and "NaN" in v.reasons[0]


def test_thresholds_can_be_tightened():
    zero = Thresholds(0, 0, 0, 0, 0, 0)
    assert verdict(1e-6, 1.0, None, None, None, thresholds=zero).level == "fail"


# -- on the bundled digits model -------------------------------------------------------

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits model's fp32 export and an int8 one, quantized with the export's own
    tooling on 1 sample's trajectory (35 calls); without the export's validation runs."""
    pytest.importorskip("torch", reason="exporting needs torch")
    pytest.importorskip("onnxruntime.quantization", reason="int8 needs onnxruntime")
    from edgediff import runtime
    from edgediff.export.describe import stamp
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.export.quantize import calibration_inputs, quantize
    from edgediff.models.loader import resolve_source

    folder = tmp_path_factory.mktemp("gate")
    fp32, int8 = folder / "digits.onnx", folder / "digits-int8.onnx"
    model, sha = resolve_source("bundled")
    export_onnx(model, fp32, ExportOptions(validate=False), source_sha256=sha)
    info = runtime.load(fp32).info
    quantize(fp32, int8, calibration_inputs(fp32, info, 1))
    stamp(int8, dataclasses.replace(info, precision="int8", calibration={
        "method": "trajectory", "samples": 1}), full_check=False)
    return fp32, int8


def _check(*args):
    from edgediff.cli import main

    return CliRunner().invoke(main, ["check", *map(str, args)])


def test_fp32_against_itself_passes_with_zero_rms(digits):
    from edgediff import runtime

    a, b = runtime.load(digits[0]), runtime.load(digits[0])
    r = gate.precision_gate(a, b, gate.GateOptions(num=8, solver="euler", steps=4))
    assert r.rms == 0 and r.max_abs == 0 and r.sw2_vs_fp32 == 0
    assert r.distance == r.distance_fp32 and r.verdict.level == "pass"
    assert r.score == "FD" and r.floor > 0


def test_an_int8_export_gets_a_verdict_with_finite_numbers(digits):
    r = _check(digits[0], "--precision", "int8", "--candidate", digits[1], "--num", 4)
    assert r.exit_code == 0, r.output
    assert "RMS vs fp32" in r.output and "FD to data, candidate" in r.output
    line = next(s for s in r.output.splitlines() if s.startswith("verdict: "))
    assert line.split()[1] in gate.LEVELS
    from edgediff import runtime

    result = gate.precision_gate(runtime.load(digits[0]), runtime.load(digits[1]),
                                 gate.GateOptions(num=8, solver="euler", steps=4))
    d = result.as_dict()
    for key in ("rms", "max_abs", "sw2_vs_fp32", "fd_vs_fp32", "distance", "distance_fp32"):
        assert d[key] is not None and np.isfinite(d[key]), key
    assert 0 < result.rms  # int8 is not fp32


def test_the_gate_samples_on_the_sigmas_asked(digits):
    """--sigmas reaches both sides' sampling: the summary names them, and another
    list is another comparison (an int8 model's error depends on where it steps)."""
    args = (digits[0], "--precision", "int8", "--candidate", digits[1], "--num", 4,
            "--solver", "euler")
    r = _check(*args, "--sigmas", "80,2.5,0.3")
    assert r.exit_code == 0, r.output
    assert "euler on σ's 80, 2.5, 0.3" in r.output
    rms = [line.split()[3] for line in r.output.splitlines() if "RMS vs fp32" in line]
    other = _check(*args, "--sigmas", "80,10")
    assert other.exit_code == 0 and "euler on σ's 80, 10" in other.output
    assert len(rms) == 1 and rms != [line.split()[3] for line in other.output.splitlines()
                                     if "RMS vs fp32" in line]
    bad = _check(*args, "--sigmas", "1,80")
    assert bad.exit_code != 0 and "strictly decreasing" in bad.output
    no_gate = _check(digits[0], "--sigmas", "80,1")
    assert no_gate.exit_code != 0 and "--sigmas" in no_gate.output and "--precision" in \
        no_gate.output


def test_strict_exits_1_past_a_threshold(digits, monkeypatch):
    monkeypatch.setattr(gate, "THRESHOLDS", Thresholds(0, 0, 0, 0, 0, 0))
    args = (digits[0], "--precision", "int8", "--candidate", digits[1], "--num", 4)
    loose = _check(*args)
    assert loose.exit_code == 0 and "WARNING" in loose.output and "verdict: fail" in loose.output
    strict = _check(*args, "--strict")
    assert strict.exit_code == 1
    assert strict.output.splitlines()[-1].startswith("Error: --strict: int8 fails")


def test_a_candidate_of_another_model_is_refused(digits, tmp_path):
    from edgediff import runtime
    from edgediff.export.describe import stamp

    info = runtime.load(digits[0]).info
    other = tmp_path / "other.onnx"
    shutil.copy(digits[1], other)
    stamp(other, dataclasses.replace(runtime.load(digits[1]).info, source_sha256="ab" * 32),
          full_check=False)
    r = _check(digits[0], "--precision", "int8", "--candidate", other, "--num", 4)
    assert r.exit_code == 1 and "not the reference's model" in r.output
    assert "source_sha256" in r.output and len(r.output.strip().splitlines()) == 1
    with pytest.raises(EdgediffError, match="sample_shape"):
        check_same_model(info, dataclasses.replace(info, sample_shape=(1, 4, 4)))
    check_same_model(info, dataclasses.replace(info, precision="int8"))  # one model


def test_the_candidates_precision_must_be_the_one_asked(digits):
    r = _check(digits[0], "--precision", "fp16", "--candidate", digits[1])
    assert r.exit_code == 1 and "precision is int8, not fp16" in r.output
    r = _check(digits[0], "--precision", "int8")
    assert r.exit_code == 1 and "--candidate FILE" in r.output
    r = _check(digits[1], "--precision", "int8", "--candidate", digits[1])
    assert r.exit_code == 1 and "must be an fp32 artifact" in r.output


def test_gate_flags_need_precision_and_help_shows_both_modes(digits):
    r = _check(digits[0], "--strict")
    assert r.exit_code == 1 and "add --precision" in r.output
    r = _check(digits[0], "bundled", "--precision", "int8", "--candidate", digits[1])
    assert r.exit_code == 1 and "drop SOURCE" in r.output
    text = _check("--help").output
    assert "SOURCE" in text and "--precision" in text and "--strict" in text


@pytest.mark.extra("openvino")
def test_bf16_is_refused_clearly_without_bf16_units(digits):
    from pathlib import Path

    import edgediff.runtime.backends as backends
    from edgediff.hardware import has_bf16

    if not (Path(backends.__file__).parent / "openvino.py").exists():
        pytest.skip("the OpenVINO backend is not there yet")
    if has_bf16():
        pytest.skip("this CPU has bf16 units: nothing to refuse")
    r = _check(digits[0], "--precision", "bf16", "--num", 4)
    assert r.exit_code == 1 and "no bf16 units" in r.output
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.extra("lab")  # bench writes its figures
def test_bench_prints_the_verdict_beside_the_speed_and_records_it(digits, tmp_path,
                                                                 monkeypatch):
    from edgediff import runtime
    from edgediff.cli import main

    D = runtime.load(digits[1])
    assert gate.needs_gate(D) and not gate.needs_gate(runtime.load(digits[0]))
    result, line = gate.bench_gate(D, digits[1], None)  # no fp32: nothing to judge
    assert result is None and "--reference FILE" in line
    monkeypatch.setattr(gate, "BENCH_NUM", 4)
    out = tmp_path / "bench"
    r = CliRunner().invoke(main, ["bench", str(digits[1]), "--solvers", "euler", "--steps", "2",
                                  "--num", "4", "--reference-steps", "2", "--reference",
                                  str(digits[0]), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert any(s.startswith(("gate: ", "WARNING: gate: ")) for s in r.output.splitlines())
    recorded = json.loads((out / "bench.json").read_text())["gate"]
    assert recorded["verdict"] in gate.LEVELS and recorded["num"] == 4
