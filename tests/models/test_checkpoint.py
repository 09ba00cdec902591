import json

import pytest
import torch

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.models.checkpoint import build_denoiser, make_config, save_checkpoint
from edgediff.models.readers.native import load_checkpoint
from edgediff.schedules import EDMSchedule, VPSchedule

UNET_ARGS = {"img_resolution": 8, "in_channels": 1, "out_channels": 1, "model_channels": 16,
             "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4]}
CONFIGS = {
    "unet-edm": make_config("unet", UNET_ARGS, "edm", EDMSchedule(), (1, 8, 8)),
    "mlp-vp": make_config("mlp", {"dim": 2, "hidden": 32, "depth": 2}, "vp", VPSchedule(), (2,)),
    "mlp-eps": make_config("mlp", {"dim": 2, "hidden": 32, "depth": 2}, "epsilon",
                           DiscreteSchedule.from_betas(), (2,)),
}


def randomised(config):
    torch.manual_seed(0)
    D, _ = build_denoiser(config)
    with torch.no_grad():
        for p in D.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # zero-initialised outputs would hide a mix-up
    return D.eval()


@pytest.mark.parametrize("name", CONFIGS)
def test_round_trip_gives_the_same_denoiser(tmp_path, name):
    config = CONFIGS[name]
    D = randomised(config)
    weights, cfg = save_checkpoint(tmp_path / "m", D, config)
    assert weights.name == "m.safetensors" and cfg.name == "m.json"
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    x = torch.randn(3, *config["sample_shape"])
    s = torch.tensor([0.01, 1.0, 50.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded.denoiser(x, s), D(x, s), rtol=0, atol=0)
    assert loaded.sample_shape == tuple(config["sample_shape"])
    assert loaded.schedule.to_dict() == config["schedule"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    assert weights.stat().st_mode & 0o044 == 0o044  # readable by others, like any file


@pytest.fixture
def saved(tmp_path):
    config = CONFIGS["unet-edm"]
    save_checkpoint(tmp_path / "m", randomised(config), config)
    return tmp_path


def files(folder):
    return sorted((p.name, p.stat().st_size) for p in folder.iterdir())


def test_truncated_safetensors(saved):
    w = saved / "m.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    before = files(saved)
    with pytest.raises(EdgediffError, match="truncated or not a safetensors file"):
        load_checkpoint(w)
    assert files(saved) == before


@pytest.mark.parametrize("edit,match", [
    (lambda c: c["architecture"].update(name="transformer"), "unknown architecture 'transformer'"),
    (lambda c: c["parameterization"].update(name="score"), "unknown parameterization 'score'"),
    (lambda c: c["architecture"]["args"].update(model_channels=32), "do not fit"),
    (lambda c: c["architecture"]["args"].update(widen=2), "bad arguments"),
    (lambda c: c.pop("sample_shape"), "lacks sample_shape"),
    (lambda c: c.update(format_version=99), "newer than"),
    (lambda c: c["parameterization"].update(name="epsilon"), "needs a discrete"),
])
def test_bad_configs_give_one_clear_error(saved, edit, match):
    cfg = saved / "m.json"
    config = json.loads(cfg.read_text())
    edit(config)
    cfg.write_text(json.dumps(config))
    before = files(saved)
    with pytest.raises(EdgediffError, match=match):
        load_checkpoint(saved / "m")
    assert files(saved) == before


def test_missing_config_and_foreign_json(saved):
    (saved / "m.json").unlink()
    with pytest.raises(EdgediffError, match="does not exist"):
        load_checkpoint(saved / "m.safetensors")
    (saved / "m.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(EdgediffError, match="not an edgediff checkpoint config"):
        load_checkpoint(saved / "m.safetensors")


def test_pickles_are_refused_unless_asked_for_and_then_weights_only(saved, tmp_path):
    config = CONFIGS["unet-edm"]
    D = randomised(config)
    pt = tmp_path / "m.pt"
    torch.save({"config": config, "state_dict": D.model.state_dict()}, pt)
    with pytest.raises(EdgediffError, match="--allow-pickle"):
        load_checkpoint(pt)
    loaded = load_checkpoint(pt, allow_pickle=True)
    x, s = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 5.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded.denoiser(x, s), D(x, s))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    torch.save({"config": config, "state_dict": Evil()}, bad)
    with pytest.raises(EdgediffError, match="weights_only=True"):
        load_checkpoint(bad, allow_pickle=True)


def test_saving_into_a_missing_folder_writes_nothing(tmp_path):
    config = CONFIGS["mlp-vp"]
    with pytest.raises(EdgediffError, match="not a folder"):
        save_checkpoint(tmp_path / "nope" / "m", randomised(config), config)
    assert list(tmp_path.iterdir()) == []
