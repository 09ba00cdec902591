"""Model sources by name: the shipped models, the exact mixture, checkpoints; each
with the digest an export records and ``check`` finds it by."""

import pytest

from edgediff.errors import EdgediffError
from edgediff.fileio import sha256_of
from edgediff.models.bundled import bundled_path
from edgediff.models.loader import SHIPPED, find_shipped_source, resolve_source

pytest.importorskip("torch")


def test_every_shipped_source_resolves_to_its_own_digest():
    digests = {}
    for name in SHIPPED:
        model, digest = resolve_source(name)
        assert len(digest) == 64 and model.config["sample_shape"]
        assert resolve_source(name)[1] == digest  # stable
        assert find_shipped_source(digest) == name
        digests[name] = digest
    assert len(set(digests.values())) == len(SHIPPED)  # conditional ≠ unconditional
    # a checkpoint's digest is its weights file's
    assert digests["bundled"] == sha256_of(bundled_path().with_suffix(".safetensors"))


def test_a_checkpoint_by_path_is_the_bundled_one_by_name(tmp_path):
    by_path, digest = resolve_source(str(bundled_path()) + ".json")
    assert digest == resolve_source("bundled")[1]
    assert by_path.config["parameterization"] == resolve_source("bundled")[0].config[
        "parameterization"]
    assert find_shipped_source("0" * 64) is None


@pytest.mark.parametrize("source,message", [
    ("nope.safetensors", "does not exist"),
    ("{tmp}/model.pt", "with --allow-pickle"),
])
def test_bad_sources_are_refused_in_one_line(tmp_path, source, message):
    (tmp_path / "model.pt").write_bytes(b"not a pickle")
    with pytest.raises(EdgediffError, match=message):
        resolve_source(source.format(tmp=tmp_path))
