"""The model readers' registry: each path goes to the reader of its format, an
unknown one is refused naming every format, and a new format is one more entry in
``READERS``, reached by ``resolve_source`` (and so the CLI) with nothing else changed."""

from types import SimpleNamespace

import pytest

pytest.importorskip("torch")

from edgediff.errors import EdgediffError
from edgediff.fileio import sha256_of
from edgediff.models import readers
from edgediff.models.analytic import mixture_model
from edgediff.models.bundled import bundled_path
from edgediff.models.loader import resolve_source
from edgediff.models.readers import diffusers_unet, native, reader_for


def test_every_reader_has_the_whole_interface():
    for reader in readers.READERS:
        assert isinstance(reader.DESCRIPTION, str) and reader.DESCRIPTION
        assert all(callable(getattr(reader, f)) for f in ("can_read", "read", "weights"))


def test_each_path_goes_to_the_reader_of_its_format(tmp_path):
    stem = bundled_path()
    for name in (stem, stem.with_suffix(".json"), stem.with_name(stem.name + ".safetensors")):
        assert reader_for(name) is native
        assert native.weights(name) == stem.with_name(stem.name + ".safetensors")
    (tmp_path / "m.pt").write_bytes(b"")
    assert reader_for(tmp_path / "m.pt") is native
    assert native.weights(tmp_path / "m.pt") == tmp_path / "m.pt"
    assert reader_for(tmp_path) is diffusers_unet  # which files it lacks: read says


@pytest.mark.parametrize("make,name,message", [
    (lambda f: None, "nothing.safetensors", "does not exist; give an NVlabs EDM"),
    (lambda f: (f / "m.txt").write_text("hi"), "m.txt", "not a model edgediff reads"),
])
def test_an_unknown_path_is_refused_naming_every_format(tmp_path, make, name, message):
    make(tmp_path)
    with pytest.raises(EdgediffError, match=message) as caught:
        reader_for(tmp_path / name)
    assert all(r.DESCRIPTION in str(caught.value) for r in readers.READERS)


def test_a_new_format_is_one_registry_entry(tmp_path, monkeypatch):
    model = mixture_model()
    fake = SimpleNamespace(
        DESCRIPTION="a test model (.fake)",
        can_read=lambda p: p.suffix == ".fake",
        read=lambda p, *, allow_pickle=False: model,
        weights=lambda p: p)
    monkeypatch.setattr(readers, "READERS", (fake, *readers.READERS))
    path = tmp_path / "m.fake"
    path.write_bytes(b"weights")
    loaded, digest = resolve_source(str(path))
    assert loaded is model and digest == sha256_of(path)
    assert readers.load_model(path) is model
