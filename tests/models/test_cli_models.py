"""Bad model input through the CLI: one line, non-zero exit, no traceback, nothing written."""

import json

import pytest
import torch
from click.testing import CliRunner

from edgediff.cli import main
from edgediff.models.checkpoint import build_denoiser, make_config, save_checkpoint
from edgediff.schedules import EDMSchedule

CONFIG = make_config("mlp", {"dim": 2, "hidden": 16, "depth": 1}, "edm", EDMSchedule(), (2,),
                     provenance={"command": "edgediff train mixture2d -o m", "steps": 3})


@pytest.fixture
def ckpt(tmp_path):
    D, _ = build_denoiser(CONFIG)
    save_checkpoint(tmp_path / "m", D, CONFIG)
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, list(args))


def listing(folder):
    return sorted((p.name, p.stat().st_size) for p in folder.rglob("*"))


def test_info_prints_the_config(ckpt):
    r = run("info", str(ckpt / "m.safetensors"))
    assert r.exit_code == 0, r.output
    assert "edm" in r.output and "2" in r.output and "edgediff train mixture2d" in r.output
    r = run("info", str(ckpt / "m.json"), "--json")
    assert json.loads(r.output)["sample_shape"] == [2]


def one_line_error(r, match):
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0], r.output
    assert "Traceback" not in r.output


def corrupt_weights(folder):
    w = folder / "m.safetensors"
    w.write_bytes(w.read_bytes()[:40])


def edit_config(**changes):
    def apply(folder):
        cfg = json.loads((folder / "m.json").read_text())
        for key, value in changes.items():
            cfg[key] = value
        (folder / "m.json").write_text(json.dumps(cfg))
    return apply


@pytest.mark.parametrize("damage,target,match", [
    (corrupt_weights, "m.safetensors", "truncated or not a safetensors file"),
    (edit_config(architecture={"name": "vit", "args": {}}), "m.json", "unknown architecture"),
    (edit_config(parameterization={"name": "wavelet", "args": {}}), "m",
     "unknown parameterization"),
    (edit_config(architecture={"name": "mlp", "args": {"dim": 2, "hidden": 32, "depth": 1}}),
     "m", "do not fit"),
    (lambda f: None, "nothing.safetensors", "does not exist"),
    (lambda f: (f / "m.txt").write_text("hi"), "m.txt", "not a model edgediff reads"),
])
def test_bad_checkpoints(ckpt, damage, target, match):
    damage(ckpt)
    before = listing(ckpt)
    one_line_error(run("info", str(ckpt / target)), match)
    assert listing(ckpt) == before


def test_pickles_need_the_flag(ckpt):
    D, _ = build_denoiser(CONFIG)
    torch.save({"config": CONFIG, "state_dict": D.model.state_dict()}, ckpt / "m.pt")
    one_line_error(run("info", str(ckpt / "m.pt")), "--allow-pickle")
    assert run("info", str(ckpt / "m.pt"), "--allow-pickle").exit_code == 0


def test_diffusers_folder_without_scheduler(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    before = listing(tmp_path)
    one_line_error(run("info", str(tmp_path)), "lacks its scheduler config")
    assert listing(tmp_path) == before


def test_a_class_conditional_checkpoint_trains_exports_and_samples_by_class(tmp_path):
    """train --class-conditional → export → the graph takes class_labels, the
    metadata says 3 classes with null label 3, and the label changes the samples."""
    pytest.importorskip("onnxruntime")
    import numpy as np

    from edgediff import runtime

    r = run("train", "mixture2d", "-o", str(tmp_path / "c"), "--class-conditional",
            "--label-dropout", "0.3", "--steps", "30", "--channels", "8")
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "c.json").read_text())
    assert config["num_classes"] == 3 and "--class-conditional --label-dropout 0.3" in \
        config["provenance"]["command"]
    r = run("export", str(tmp_path / "c.safetensors"), "-o", str(tmp_path / "c.onnx"))
    assert r.exit_code == 0, r.output
    D = runtime.load(tmp_path / "c.onnx")
    assert D.info.conditioning == {"num_classes": 3, "null_label": 3, "guidance_input": False}
    a = runtime.sample(D, 4, condition=runtime.Condition(0), solver="euler", steps=4)
    b = runtime.sample(D, 4, condition=runtime.Condition(2), solver="euler", steps=4)
    assert np.abs(a - b).max() > 0  # the label reaches the network
