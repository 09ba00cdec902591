"""Artifact metadata is checked when it is loaded: every key of docs/artifact.md,
refused in one line that names the key, the value and what is allowed. Then
Hypothesis throws generated and mutated metadata at the parser: each dict either
loads or raises EdgediffError, never anything else."""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgediff.artifact import ArtifactInfo
from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.grids import settings_grid
from edgediff.metadata import FORMAT_VERSION, KEYS, PREFIX, props_with_overrides
from edgediff.mixture import default_mixture_2d
from edgediff.schedules import EDMSchedule
from edgediff.settings import SolverSettings


def edm_info(**change) -> ArtifactInfo:
    fields = dict(parameterization="analytic", schedule=EDMSchedule(), sigma_min=0.002,
                  sigma_max=80.0, sigma_data=0.5, sample_shape=(2,), data_range=(-3.0, 3.0),
                  source_sha256="0" * 64, default_solver={"solver": "heun", "steps": 18},
                  precision="fp32", reference={"kind": "gaussian_mixture",
                                               "mixture": default_mixture_2d().to_dict()})
    return ArtifactInfo(**{**fields, **change})


def ddpm_info() -> ArtifactInfo:
    sch = DiscreteSchedule.from_betas()
    return ArtifactInfo("epsilon", sch, float(sch.sigma_table[0]), float(sch.sigma_table[-1]),
                        0.5, (1, 8, 8), (-1.0, 1.0), "unknown",
                        {"solver": "ddim", "steps": 50, "spacing": "trailing", "eta": 0.0,
                         "clip": True}, "fp16")


REAL = {"edm": edm_info().to_props(), "ddpm": ddpm_info().to_props(),
        "conditional": edm_info(conditioning={"num_classes": 3, "null_label": 3,
                                              "guidance_input": True}).to_props()}


def test_real_metadata_round_trips():
    for props in REAL.values():
        info = ArtifactInfo.from_props(props)
        assert info.to_props() == props


def test_format_1_artifacts_still_load_as_unconditional():
    info = ArtifactInfo.from_props({**REAL["edm"], PREFIX + "format_version": "1"})
    assert info.conditioning is None and info.num_classes == 0 and not info.guidance_input
    cond = ArtifactInfo.from_props(REAL["conditional"])
    assert (cond.num_classes, cond.null_label, cond.guidance_input) == (3, 3, True)


def test_a_model_whose_classes_are_all_real_has_no_null_label():
    """openai's consistency models: K real classes and no unconditional one."""
    props = edm_info(conditioning={"num_classes": 4, "null_label": None}).to_props()
    info = ArtifactInfo.from_props(props)
    assert (info.num_classes, info.null_label, info.guidance_input) == (4, None, False)
    assert info.to_props() == props


def old_names(props: dict[str, str]) -> dict[str, str]:
    """The metadata as formats 1 and 2 wrote it: default_sampler, not default_solver."""
    out = dict(props)
    out[PREFIX + "default_sampler"] = out.pop(PREFIX + "default_solver")
    return out


@pytest.mark.parametrize("version", ["1", "2"])
def test_files_written_before_the_rename_still_load(version):
    old = {**old_names(REAL["ddpm"]), PREFIX + "format_version": version}
    info = ArtifactInfo.from_props(old)
    assert info.default_solver == ArtifactInfo.from_props(REAL["ddpm"]).default_solver
    assert PREFIX + "default_sampler" not in info.to_props()  # written under the new name


def test_both_names_with_different_values_are_refused():
    both = {**REAL["edm"], PREFIX + "default_sampler": '{"solver": "euler", "steps": 9}'}
    with pytest.raises(EdgediffError, match=r"edgediff\.default_sampler = .* old name of "
                                            r"edgediff\.default_solver"):
        ArtifactInfo.from_props(both)
    same = {**REAL["edm"], PREFIX + "default_sampler": REAL["edm"][PREFIX + "default_solver"]}
    assert ArtifactInfo.from_props(same).to_props() == REAL["edm"]


def test_a_metadata_file_may_use_the_old_name():
    props = props_with_overrides(REAL["edm"], {"default_sampler": {"solver": "euler",
                                                                   "steps": 7}})
    assert ArtifactInfo.from_props(props).default_solver == {"solver": "euler", "steps": 7}


# (key, bad value as it would stand in the file, what the message must say is allowed)
BAD = [
    ("format_version", str(FORMAT_VERSION + 1), "upgrade edgediff"),
    ("format_version", "one", "an integer from 1 to"),
    ("format_version", "0", "an integer from 1 to"),
    ("parameterization", "eps", "one of edm, vp, ve, epsilon"),
    ("sigma_min", "nan", "a finite number > 0"),
    ("sigma_min", "-0.1", "a finite number > 0"),
    ("sigma_min", "100.0", "need sigma_min < sigma_max"),
    ("sigma_max", "inf", "a finite number > 0"),
    ("sigma_max", "0.001", "need sigma_min < sigma_max"),
    ("sigma_data", "0", "a finite number > 0"),
    ("sigma_data", "abc", "a finite number > 0"),
    ("sample_shape", "[1, 0, 8]", "positive integers"),
    ("sample_shape", "[1, 8.5, 8]", "positive integers"),
    ("sample_shape", "[]", "non-empty"),
    ("sample_shape", "[1, 8", "not valid JSON"),
    ("data_range", "[1, -1]", "lo < hi"),
    ("data_range", "[-1, NaN]", "two finite numbers"),
    ("data_range", "[-1, 0, 1]", "two finite numbers"),
    ("source_sha256", "xyz", "64 lowercase hex digits"),
    ("default_solver", '{"solver": "rk4"}', "unknown solver 'rk4'"),
    ("default_solver", '{"solver": "ddim", "eta": 3}', "eta = 3 is not allowed"),
    ("default_solver", '{"solver": "heun", "steps": 0}', "steps must be an integer ≥ 1"),
    ("default_solver", '{"solver": "heun", "rho": 0.5}', "rho = 0.5 is not allowed"),
    ("default_solver", '"heun"', "a JSON object"),
    ("precision", "fp8", "one of fp32, fp16"),
    ("schedule", '{"name": "cosine"}', "unknown schedule 'cosine'"),
    ("schedule", '{"name": "edm", "sigma_min": 0.002, "sigma_max": 80, "rho": Infinity}',
     "rho must be a finite number"),
    ("schedule", '{"name": "vp", "beta_min": -1}', "VP schedule needs beta_min > 0"),
    ("schedule", "[1, 2]", "a JSON object"),
    ("reference", '{"kind": "photos"}', "one of dataset, gaussian_mixture"),
    ("conditioning", '{"num_classes": 0, "null_label": 0}', '"num_classes": K ≥ 1'),
    ("conditioning", '{"num_classes": 10, "null_label": 11}', "an id in 0…K"),
    ("conditioning", '{"num_classes": 10, "null_label": 10, "cfg": 1}', "a JSON object"),
    ("conditioning", '{"num_classes": 10, "null_label": 10, "guidance_input": 1}',
     "true or false"),
    ("conditioning", '{"num_classes": 10, "null_label": null, "guidance_input": true}',
     "or null (none"),
    ("conditioning", '{"num_classes": 10}', "an id in 0…K"),
    ("reference", '{"kind": "gaussian_mixture", "mixture": {"weights": [1], "means": [[0, 0]],'
                  ' "stds": [-1]}}', "positive weights and stds"),
    ("reference", '{"kind": "gaussian_mixture", "mixture": {"weights": [1], "means": '
                  '[[0, 0, 0]], "stds": [1]}}', "sample shape"),
]


@pytest.mark.parametrize("key,value,allowed", BAD, ids=[f"{k}={v[:20]}" for k, v, _ in BAD])
def test_a_bad_value_is_refused_with_key_value_and_what_is_allowed(key, value, allowed):
    props = {**REAL["edm"], PREFIX + key: value}
    with pytest.raises(EdgediffError) as e:
        ArtifactInfo.from_props(props, where="m.onnx")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("m.onnx: ")
    assert f"{PREFIX}{key} = " in msg and allowed in msg, msg


@pytest.mark.parametrize("key", ["parameterization", "format_version", "precision"])
@pytest.mark.parametrize("value", ["\n", "edm\r\nfp32", "\x1b[2J"])
def test_a_value_with_control_characters_is_shown_escaped_on_one_line(key, value):
    """Found by the Hypothesis run below: a hand-edited '\\n' was printed raw."""
    with pytest.raises(EdgediffError) as e:
        ArtifactInfo.from_props({**REAL["edm"], PREFIX + key: value})
    msg = str(e.value)
    assert msg.isprintable(), msg
    assert json.dumps(value) in msg


def test_unknown_override_keys_are_quoted_on_one_line():
    with pytest.raises(EdgediffError, match="unknown metadata keys") as e:
        props_with_overrides(REAL["edm"], {"bad\nkey": 1})
    assert str(e.value).isprintable()


@pytest.mark.parametrize("mutate,allowed", [
    (lambda t: t.__setitem__(500, float("nan")), "alphas_cumprod must be"),
    (lambda t: t.__setitem__(500, t[400]), "strictly decreasing"),
    (lambda t: t.__setitem__(0, 1.5), "in (0, 1)"),
    (lambda t: t.__setitem__(999, 0.0), "in (0, 1)"),
], ids=["nan", "not-increasing-sigma", "above-one", "zero"])
def test_a_bad_discrete_sigma_table_is_refused(mutate, allowed):
    props = dict(REAL["ddpm"])
    schedule = json.loads(props[PREFIX + "schedule"])
    mutate(schedule["alphas_cumprod"])
    props[PREFIX + "schedule"] = json.dumps(schedule)
    with pytest.raises(EdgediffError, match=r"edgediff\.schedule = .*not allowed") as e:
        ArtifactInfo.from_props(props)
    assert allowed in str(e.value)


def test_a_default_solver_whose_grid_leaves_the_sigma_range_is_refused_at_load():
    props = {**REAL["edm"], PREFIX + "sigma_max": "40.0"}  # the EDM schedule's grid reaches 80
    with pytest.raises(EdgediffError, match=r"edgediff\.default_solver = .* the model knows "
                                            r"\[0\.002, 40\]"):
        ArtifactInfo.from_props(props)


# -- generated metadata ----------------------------------------------------------------

json_leaf = (st.none() | st.booleans() | st.integers(-10**6, 10**6)
             | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                          max_leaves=12)


def as_stored(value):
    """What a file or a hand edit may hold: a string (JSON or not), or a raw value."""
    return st.sampled_from(["json", "str", "raw"]).map(
        lambda how: json.dumps(value) if how == "json" else str(value) if how == "str"
        else value)


def near(text: str):
    """Small edits of a real value: digits, signs, brackets changed or dropped."""
    return st.lists(st.tuples(st.integers(0, max(len(text) - 1, 0)),
                              st.sampled_from([*list('0123456789-.,[]{}e"'), "", "NaN"])),
                    min_size=1, max_size=3).map(lambda edits: _apply(text, edits))


def _apply(text, edits):
    for pos, new in edits:
        text = text[:pos] + new + text[pos + 1:]
    return text


SCHEDULE_PARAMS = {"edm": ["sigma_min", "sigma_max", "rho"], "ddpm": ["alphas_cumprod"]}


@st.composite
def mutated(draw):
    """A real artifact's metadata with one to three keys edited, replaced or dropped."""
    kind = draw(st.sampled_from(sorted(REAL)))
    props = dict(REAL[kind])
    keys = draw(st.lists(st.sampled_from([*KEYS, "reference", "conditioning", "colour"]),
                         min_size=1,
                         max_size=3, unique=True))
    for key in keys:
        full = PREFIX + key
        how = draw(st.sampled_from(["edit", "replace", "drop", "inner"]))
        if how == "drop":
            props.pop(full, None)
        elif how == "edit" and full in props and len(props[full]) < 200:
            props[full] = draw(near(props[full]))
        elif how == "inner" and key in ("schedule", "default_solver", "reference",
                                        "conditioning") \
                and full in props:
            inner = json.loads(props[full])
            field = draw(st.sampled_from([*sorted(inner), "solver", "steps", "eta", "name"]))
            inner[field] = draw(json_value)
            props[full] = json.dumps(inner)
        else:
            props[full] = draw(json_value.flatmap(as_stored))
    return props


def either_loads_or_refuses(props):
    try:
        info = ArtifactInfo.from_props(props)
    except EdgediffError as e:
        assert str(e) and "\n" not in str(e)
        return None
    # what loads can be sampled: its default solver resolves onto a grid in range
    grid = settings_grid(info, SolverSettings.resolve(info))
    assert all(math.isfinite(s) for s in grid) and grid[-1] == 0
    assert info.to_props() is not None
    return info


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_metadata_loads_or_is_refused(props):
    either_loads_or_refuses(props)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([PREFIX + k for k in KEYS] + ["other", PREFIX]),
                       json_value.flatmap(as_stored), max_size=12))
def test_generated_metadata_loads_or_is_refused(props):
    either_loads_or_refuses(props)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*KEYS, "reference", "colour", PREFIX + "precision"]),
                       json_value, max_size=5))
def test_metadata_overrides_load_or_are_refused(overrides):
    """The --metadata path: a user's JSON on top of a real artifact's metadata."""
    try:
        props = props_with_overrides(REAL["edm"], overrides)
    except EdgediffError:
        return
    either_loads_or_refuses(props)


def test_the_generators_reach_both_outcomes():
    """The properties above are not vacuous: mutations both load and get refused."""
    outcomes = set()

    @settings(max_examples=200, deadline=None, database=None)
    @given(mutated())
    def collect(props):
        outcomes.add(either_loads_or_refuses(props) is not None)

    collect()
    assert outcomes == {True, False}


def test_version_is_the_current_format():
    assert REAL["edm"][PREFIX + "format_version"] == str(FORMAT_VERSION)
    assert np.isfinite(float(REAL["ddpm"][PREFIX + "sigma_max"]))
