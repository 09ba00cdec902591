"""Reading an ONNX file's edgediff metadata: with ONNX Runtime, or onnx where it
is absent; overrides on top; one line for anything that is not an edgediff export."""

import pytest

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError
from edgediff.metadata import PREFIX
from edgediff.runtime.backends.ort import read_onnx_metadata


def test_the_metadata_is_the_artifacts(exported):
    _, path = exported["mixture"]
    props = read_onnx_metadata(path)
    info = ArtifactInfo.from_props(props)
    assert info.sample_shape == (2,) and info.default_solver == {"solver": "heun", "steps": 18}
    import onnx

    assert props == {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_overrides_go_on_top_and_are_checked(exported):
    _, path = exported["mixture"]
    props = read_onnx_metadata(path, {"default_solver": {"solver": "euler", "steps": 7}})
    assert props[PREFIX + "default_solver"] == '{"solver": "euler", "steps": 7}'
    with pytest.raises(EdgediffError, match="unknown solver 'rk4'"):
        read_onnx_metadata(path, {"default_solver": {"solver": "rk4"}})


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_text("hello")
    with pytest.raises(EdgediffError, match="not an ONNX model"):
        read_onnx_metadata(bad)
