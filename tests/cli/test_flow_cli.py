"""The exact flow oracle through the CLI: ``mixture2d-flow`` (the Gaussian
mixture's closed-form velocity under the flow parameterization) exports, is
found by its hash and checked, and bench scores solvers on it against the exact
distribution, as for the VP/VE/EDM mixtures."""

import json

import pytest
from click.testing import CliRunner

from edgediff.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def flow_mixture(tmp_path_factory):
    path = tmp_path_factory.mktemp("flow") / "mixture-flow.onnx"
    r = run("export", "mixture2d-flow", "-o", path)
    assert r.exit_code == 0, r.output
    return path


def test_the_flow_oracle_exports_and_checks_against_itself(flow_mixture):
    r = run("info", flow_mixture, "--json")
    assert json.loads(r.output)["edgediff.parameterization"] == "flow"
    r = run("check", flow_mixture)  # the shipped source is found by its hash
    assert r.exit_code == 0 and "mixture2d-flow" in r.output, r.output


@pytest.mark.extra("lab")
def test_bench_scores_solvers_on_the_flow_oracle(flow_mixture, tmp_path):
    r = run("bench", flow_mixture, "--solvers", "euler,dpmpp_2m", "--nfe", "4,8",
            "--num", 200, "--batch", 100, "--reference-steps", 16, "-o", tmp_path)
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert len(rows) == 4 and all(row["distance"] > 0 for row in rows)
    by = {(row["solver"], row["nfe"]): row["reference_rms"] for row in rows}
    # more steps, closer to the high-accuracy solution: a solver that ignored the
    # flow schedule's σ(t) would not converge like this
    assert by[("euler", 8)] < by[("euler", 4)] and by[("dpmpp_2m", 8)] < by[("dpmpp_2m", 4)]
