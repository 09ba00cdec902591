import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgediff.cli import main
from edgediff.datasets import load_dataset
from edgediff.errors import EdgediffError
from edgediff.models.checkpoint import make_config
from edgediff.models.readers.native import load_checkpoint
from edgediff.models.training import TrainSettings, loss_weight, sample_sigma, train
from edgediff.schedules import EDMSchedule, VESchedule, VPSchedule

MLP = {"dim": 2, "hidden": 32, "depth": 2}


def config(par="edm"):
    sch = {"edm": EDMSchedule(), "vp": VPSchedule(), "ve": VESchedule()}[par]
    return make_config("mlp", MLP, par, sch, (2,))


def test_resuming_gives_the_same_weights_as_training_straight_through(tmp_path):
    data = load_dataset("mixture2d")[:512]
    s6 = TrainSettings(steps=6, batch=16, checkpoint_every=3, warmup=2)
    straight = train(config(), data, tmp_path / "a", s6)
    train(config(), data, tmp_path / "b", TrainSettings(steps=3, batch=16, checkpoint_every=3,
                                                         warmup=2))
    resumed = train(config(), data, tmp_path / "b", s6, resume=True)
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert load_checkpoint(tmp_path / "b").config["provenance"]["steps"] == 6


@pytest.mark.parametrize("par", ["edm", "vp", "ve"])
def test_training_lowers_the_loss(tmp_path, par):
    data = load_dataset("mixture2d")[:4096]
    losses = []
    train(config(par), data, tmp_path / par, TrainSettings(steps=300, batch=256, lr=3e-3,
                                                            warmup=10, checkpoint_every=300),
          progress=lambda step, loss: losses.append(loss))
    assert losses[-1] < 0.7 * losses[10]


def test_sigma_distributions_follow_the_table():
    g, s = torch.Generator().manual_seed(0), TrainSettings()
    edm = sample_sigma("edm", config("edm"), 100_000, s, g).log()
    assert abs(edm.mean().item() + 1.2) < 0.02 and abs(edm.std().item() - 1.2) < 0.02
    ve = sample_sigma("ve", config("ve"), 100_000, s, g)
    assert ve.min() >= 0.02 and ve.max() <= 100
    vp = sample_sigma("vp", config("vp"), 1000, s, g)
    assert vp.max() <= VPSchedule().sigma(1.0) * (1 + 1e-6)
    sig = torch.tensor([0.1, 1.0])
    torch.testing.assert_close(loss_weight("edm", sig, 0.5), (sig**2 + 0.25) / (sig * 0.5) ** 2)
    with pytest.raises(EdgediffError, match="edm, vp and ve"):
        sample_sigma("epsilon", config(), 4, s, g)


def test_digits_split_is_disjoint_and_in_range():
    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert tr.shape[1:] == (1, 8, 8) and len(tr) + len(te) == 1797
    assert tr.min() >= -1 and tr.max() <= 1
    assert not {a.tobytes() for a in tr[:50]} <= {b.tobytes() for b in te}
    np.testing.assert_array_equal(load_dataset("digits", "test"), te)


def test_train_cli_writes_a_loadable_checkpoint_and_refuses_bad_input(tmp_path):
    r = CliRunner().invoke(main, ["train", "mixture2d", "-o", str(tmp_path / "m"), "--steps", "5",
                                  "--batch", "8", "--channels", "8"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "m").sample_shape == (2,)
    r = CliRunner().invoke(main, ["train", "mixture2d", "-o", str(tmp_path / "no" / "m")])
    assert r.exit_code != 0 and "folder does not exist" in r.output
    r = CliRunner().invoke(main, ["train", "mixture2d", "-o", str(tmp_path / "x"), "--resume"])
    assert r.exit_code != 0 and "no " in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["train", "imagenet", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "digits" in r.output
