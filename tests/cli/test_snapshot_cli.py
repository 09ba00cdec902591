"""NVlabs snapshots through the CLI: ``info`` describes one without building its network;
``sample``, ``bench`` and ``check`` export it once into the content-addressed cache of
``edgediff.export.cache`` and reuse the cached graph."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgediff import __version__, fileio
from edgediff.cli import main
from edgediff.export import cache
from edgediff.export.onnx import ExportOptions
from edgediff.fileio import sha256_of
from edgediff.schedules import VPSchedule

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "edm"
VP = FIXTURES / "edm-songunet-vp-tiny.pkl"
EDM2 = FIXTURES / "edm2-cond-tiny.pkl"
# fixture: (class, architecture, parameterization, label_dim, σ_min, σ_max)
EXPECTED = {
    "edm-songunet-vp-tiny.pkl": ("VPPrecond", "SongUNet", "vp", 0,
                                 VPSchedule().sigma_min, VPSchedule().sigma_max),
    "edm-dhariwal-cond-tiny.pkl": ("EDMPrecond", "DhariwalUNet", "edm", 4, 0.002, 80.0),
    "edm2-cond-tiny.pkl": ("Precond", "UNet", "edm", 4, 0.002, 80.0),
}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("EDGEDIFF_CACHE", str(folder))
    return folder


def refuse(*_a, **_k):
    raise AssertionError("info built a network")


@pytest.fixture
def nothing_built(monkeypatch):
    """Building the snapshot, or any torch module, fails the test."""
    monkeypatch.setattr("edgediff.models.snapshot.rebuild.build", refuse)
    monkeypatch.setattr("edgediff.models.readers.edm_snapshot.read", refuse)
    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)


def cached_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("name", EXPECTED)
def test_info_describes_a_snapshot_without_building_it(name, nothing_built):
    r = run("info", FIXTURES / name)
    assert r.exit_code == 0, r.output
    cls, arch, param, label_dim, lo, hi = EXPECTED[name]
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in r.output.splitlines())
    assert rows["class"].split()[0] == cls and rows["parameterization"] == param
    assert rows["network"].startswith(f"{arch}, ") and "M parameters" in rows["network"]
    assert rows["sample shape"] == "3 × 8 × 8"
    assert rows["σ range"] == f"{lo:.4g} … {hi:.4g}"
    assert (f"{label_dim} classes" if label_dim else "unconditional") in rows["conditioning"]
    assert json.loads(rows["network kwargs"])["model_channels"] in (8, 16)
    assert rows["latent encoder"].startswith("none")


@pytest.mark.parametrize("name", EXPECTED)
def test_info_json_holds_the_same(name, nothing_built):
    r = run("info", FIXTURES / name, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    cls, arch, param, label_dim, lo, hi = EXPECTED[name]
    assert (got["class"], got["architecture"], got["parameterization"], got["label_dim"]) == \
        (cls, arch, param, label_dim)
    assert got["sample_shape"] == [3, 8, 8] and got["encoder"] is None
    assert got["sigma_min"] == pytest.approx(lo) and got["sigma_max"] == pytest.approx(hi)
    assert got["schedule"]["name"] == param and got["kwargs"]["label_dim"] == label_dim
    assert got["parameters"] > 10_000


def test_info_shows_an_edm2_latent_encoder(tmp_path, monkeypatch):
    from edgediff.models.edm.edm2 import EDM2Network
    from edgediff.models.snapshot import writer

    kwargs = {"img_resolution": 8, "img_channels": 4, "label_dim": 0, "model_channels": 16,
              "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4]}
    enc = writer.vae_encoder_record(raw_mean=(1.0, 2.0, 3.0, 4.0), raw_std=(2.0, 4.0, 5.0, 8.0))
    snap = writer.write_snapshot(tmp_path / "latent.pkl",
                                 writer.edm2_record(EDM2Network(**kwargs), kwargs), encoder=enc)
    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)  # nothing is built from here on
    r = run("info", snap)
    assert r.exit_code == 0, r.output
    assert "StabilityVAEEncoder stabilityai/sd-vae-ft-mse" in r.output
    assert "scale [0.25, 0.125, 0.1, 0.0625]" in r.output
    got = json.loads(run("info", snap, "--json").output)
    assert got["encoder"]["vae_name"] == "stabilityai/sd-vae-ft-mse"
    np.testing.assert_allclose(got["encoder"]["bias"], [-0.25, -0.25, -0.3, -0.25], rtol=1e-6)
    assert got["sample_shape"] == [4, 8, 8]


def test_a_snapshot_is_exported_once_then_sample_and_bench_reuse_it(cache_dir, tmp_path,
                                                                      monkeypatch):
    args = ("--num", 2, "--batch", 2, "--steps", 2, "--threads", 1)
    first = run("sample", VP, *args, "-o", tmp_path / "a")
    assert first.exit_code == 0, first.output
    entry, = cached_files(cache_dir)
    assert entry.parent == cache_dir / "exports" and entry.suffix == ".onnx"
    lines = [ln for ln in first.stderr.splitlines() if "export" in ln]
    assert lines[0] == f"exporting {VP.name} once into the cache: {entry} …"
    assert lines[1].startswith(f"exported {VP.name} in ") and lines[1].endswith(" s")
    stamp = entry.stat().st_mtime_ns

    def no_export(*_a, **_k):
        raise AssertionError("exported again")
    monkeypatch.setattr("edgediff.export.onnx.export_onnx", no_export)
    second = run("sample", VP, *args, "-o", tmp_path / "b")
    assert second.exit_code == 0, second.output
    assert "export" not in second.stderr
    assert cached_files(cache_dir) == [entry] and entry.stat().st_mtime_ns == stamp
    with np.load(tmp_path / "a" / "samples.npz") as a, np.load(tmp_path / "b" / "samples.npz") \
            as b:
        assert a["samples"].shape == (2, 3, 8, 8)
        np.testing.assert_array_equal(a["samples"], b["samples"])
        assert json.loads(str(a["meta"]))["artifact"] == str(VP)
    # bench takes the same export from the cache
    r = run("bench", VP, "--solvers", "euler", "--steps", 2, "--num", 2, "--batch", 2,
            "--reference-steps", 2, "-o", tmp_path / "bench")
    assert r.exit_code == 0, r.output
    assert "export" not in r.stderr and r.stdout.startswith(f"{VP.name}: 2 samples per run")
    assert json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"][0]["nfe"] == 2


def test_check_exports_a_snapshot_and_compares_it_with_itself(cache_dir, tmp_path):
    r = run("check", EDM2)
    assert r.exit_code == 0, r.output
    entry, = cached_files(cache_dir)
    assert f"{entry} vs {EDM2} (torch)" in r.stdout and "pass" in r.stdout
    assert r.stderr.startswith(f"exporting {EDM2.name} once")
    # a snapshot is a --guide too (autoguidance; here the model guides itself)
    r = run("sample", EDM2, "--class", 1, "--guidance", 2, "--guide", EDM2, "--num", 2,
            "--steps", 2, "-o", tmp_path / "guided")
    assert r.exit_code == 0, r.output
    assert "export" not in r.stderr and cached_files(cache_dir) == [entry]
    with np.load(tmp_path / "guided" / "samples.npz") as z:
        assert z["samples"].shape == (2, 3, 8, 8)


def test_a_refused_snapshot_stops_sample_with_one_line_and_no_cache_file(cache_dir, tmp_path):
    truncated = tmp_path / "network-snapshot-000000.pkl"
    truncated.write_bytes(VP.read_bytes()[:100_000])
    r = run("sample", truncated, "--steps", 2, "-o", tmp_path / "out")
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "truncated" in lines[0]
    assert cached_files(cache_dir) == [] and not (tmp_path / "out").exists()


def test_an_interrupted_export_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    def interrupt(*_a, **_k):
        raise KeyboardInterrupt
    monkeypatch.setattr("edgediff.export.onnx.validate_onnx", interrupt)
    with pytest.raises(KeyboardInterrupt):
        cache.cached_export(VP, root=tmp_path)
    assert cached_files(tmp_path) == []


def test_the_key_follows_the_file_bytes_and_the_settings_that_change_the_graph(tmp_path):
    copy = tmp_path / "net.pkl"
    shutil.copyfile(VP, copy)
    key = cache.export_key(sha256_of(copy))
    assert key == cache.export_key(sha256_of(VP))  # the content, not the name
    with open(copy, "ab") as f:
        f.write(b"\0")
    assert cache.export_key(sha256_of(copy)) != key
    digest = sha256_of(VP)
    assert cache.export_key(digest, ExportOptions(opset=18)) != key
    assert cache.export_key(digest, ExportOptions(fp16=True)) != key
    assert cache.export_key(digest, ExportOptions(guidance=True)) != key
    assert cache.export_key(digest, version=__version__ + ".1") != key
    # tolerances decide whether a file is written, not what it holds
    assert cache.export_key(digest, ExportOptions(atol=1e-2, validate=False)) == key
    assert cache.cache_path(key, tmp_path) == tmp_path / "exports" / f"{key}.onnx"


def test_the_cache_folder_follows_the_environment(tmp_path):
    home = tmp_path / "home"
    assert fileio.cache_root({}, home) == home / ".cache" / "edgediff"
    assert fileio.cache_root({"XDG_CACHE_HOME": "/x"}, home) == Path("/x/edgediff")
    assert fileio.cache_root({"XDG_CACHE_HOME": "", "EDGEDIFF_CACHE": ""}, home) == \
        home / ".cache" / "edgediff"
    assert fileio.cache_root({"XDG_CACHE_HOME": "/x", "EDGEDIFF_CACHE": "/mine"}, home) == \
        Path("/mine")


def test_only_snapshots_are_exported_on_use_and_an_artifact_path_imports_no_torch(tmp_path):
    assert cache.needs_export(VP)
    assert not cache.needs_export(tmp_path / "model.onnx")
    (tmp_path / "m.pkl").write_bytes(b"\x80\x04not a snapshot")
    assert not cache.needs_export(tmp_path / "m.pkl")
    code = ("import sys; from edgediff.export.cache import artifact_for; "
            "p = artifact_for('digits.onnx'); assert str(p) == 'digits.onnx'; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
