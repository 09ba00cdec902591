"""The EDM snapshot reader runs nothing from the file.

Hostile snapshots are made here with pickle's own ``__reduce__``: each names a
callable that would leave a flag file behind if anything called it. Every case
must stop ``edgediff export`` with exit status 2 and one line without a
traceback, write no output file, and leave no flag. The real NVlabs snapshots
(``tests/fixtures/edm``, copied from ``shared/fixtures/edm``) read into records
whose tensors are the very bytes their payloads hold.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgediff.cli import main
from edgediff.errors import EdgediffError
from edgediff.models.readers import edm_snapshot, reader_for
from edgediff.models.snapshot import writer
from edgediff.models.snapshot.rebuild import IDDPM_REASON, describe, network_record
from edgediff.models.snapshot.unpickle import read_snapshot, state_dict_of

FIXTURES = Path(__file__).parents[1] / "fixtures" / "edm"


class _Call:
    """Pickles as ``func(*args)``: what a hostile file asks the unpickler to run."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _flag_source(flag: Path) -> str:
    return f"open({str(flag)!r}, 'w').write('ran')\n"


def _hostile_source(tmp_path: Path, flag: Path) -> Path:
    """A record of an unknown class whose embedded source writes the flag; EDM's
    own loader would exec that source to find the class."""
    record = writer._Record("Exploit", writer.module_state(torch.nn.Module(), {}))
    record.state["_orig_module_src"] = _flag_source(flag)
    path = tmp_path / "source.pkl"
    with writer._persistence_module():
        writer.SOURCE, saved = _flag_source(flag), writer.SOURCE
        try:
            writer.write_snapshot(path, record)
        finally:
            writer.SOURCE = saved
    assert _flag_source(flag).encode() in path.read_bytes()
    return path


def _hostile_payload(tmp_path: Path, flag: Path) -> Path:
    """A tensor payload (the nested pickle) that calls ``os.system``."""
    payload = pickle.dumps(_Call(os.system, f"touch {flag}"), protocol=2)
    record = writer._Record("VPPrecond", writer.module_state(torch.nn.Module(), {}))
    data = {"ema": record, "w": _Call(torch.storage._load_from_bytes, payload)}
    path = tmp_path / "payload.pkl"
    with writer._persistence_module():
        path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def _hostile_global(tmp_path: Path, flag: Path) -> Path:
    record = writer._Record("VPPrecond", writer.module_state(torch.nn.Module(), {}))
    path = tmp_path / "global.pkl"
    with writer._persistence_module():
        path.write_bytes(pickle.dumps({"ema": record, "x": _Call(os.system, f"touch {flag}")},
                                      protocol=4))
    return path


def _truncated(tmp_path: Path, flag: Path) -> Path:
    data = (FIXTURES / "edm-songunet-vp-tiny.pkl").read_bytes()
    path = tmp_path / "truncated.pkl"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("make, says", [
    (_hostile_source, "'Exploit'"),
    (_hostile_payload, "os.system (inside a tensor payload)"),
    (_hostile_global, "references posix.system"),
    (_truncated, "truncated"),
], ids=["embedded-source", "nested-payload", "unknown-global", "truncated"])
def test_a_hostile_snapshot_is_refused_without_running_anything(tmp_path, make, says):
    flag = tmp_path / "ran"
    path = make(tmp_path, flag)
    assert reader_for(path) is edm_snapshot
    out = tmp_path / "model.onnx"
    r = CliRunner().invoke(main, ["export", str(path), "-o", str(out)])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    assert says.split()[-1].replace("posix", "") in lines[0], lines[0]
    assert not flag.exists()
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] \
        == []


def test_os_system_is_refused_by_name_whatever_the_platform_calls_it(tmp_path):
    """``os.system`` pickles as ``posix.system`` (``nt.system`` on Windows): the
    refusal names whichever global the file holds."""
    path = _hostile_global(tmp_path, tmp_path / "ran")
    with pytest.raises(EdgediffError, match=r"references (posix|nt)\.system, which no EDM"):
        read_snapshot(path)


@pytest.mark.parametrize("name", ["edm-songunet-vp-tiny", "edm-dhariwal-cond-tiny",
                                  "edm2-cond-tiny"])
def test_the_nvlabs_fixtures_read_into_records(name):
    snapshot = read_snapshot(FIXTURES / f"{name}.pkl")
    info = describe(snapshot)
    state = state_dict_of(network_record(snapshot))
    assert info.parameters == sum(t.numel() for t in state.values()) > 10_000
    assert info.sample_shape == (3, 8, 8)
    assert info.label_dim == (0 if "vp" in name else 4)
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in state.values())


def test_tensors_are_the_bytes_of_their_payloads(tmp_path):
    """Written by torch (strided views, fp16, a non-contiguous transpose), read back
    equal, bit for bit."""
    net = torch.nn.Module()
    net.register_buffer("fp16", torch.linspace(-2, 2, 12, dtype=torch.float16))
    net.register_buffer("view", torch.arange(24.0).reshape(4, 6).t())
    net.weight = torch.nn.Parameter(torch.randn(3, 5))
    path = tmp_path / "t.pkl"
    writer.write_snapshot(path, writer.edm_record("EDMPrecond", net, {
        "img_resolution": 8, "in_channels": 3, "out_channels": 3}))
    state = state_dict_of(read_snapshot(path)["ema"])
    for key, value in net.state_dict().items():
        assert state[f"model.{key}"].dtype == value.dtype
        assert torch.equal(state[f"model.{key}"], value)


def test_a_storage_cannot_be_read_past_its_end(tmp_path):
    """A tensor that claims more elements than its storage holds is refused, not
    read out of bounds."""
    from edgediff.models.snapshot import unpickle

    # torch pickles a tensor as _rebuild_tensor_v2(_load_from_bytes(payload), ...)
    storage = unpickle._read_storage(_payload_of(torch.zeros(4)))
    assert storage.numel == 4
    with pytest.raises(EdgediffError, match="reads past its storage"):
        unpickle._rebuild_tensor(storage, 0, (3, 3), (3, 1))


def _payload_of(tensor) -> bytes:
    """The nested torch.save payload of a pickled tensor, found with pickletools
    (nothing is unpickled)."""
    import pickletools

    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(pickle.dumps(tensor, 4))]
    return next(arg for name, arg in ops if name in ("BINBYTES", "SHORT_BINBYTES"))


def test_iddpm_is_refused_with_its_reason(tmp_path):
    record = writer._Record("iDDPMPrecond", writer.module_state(torch.nn.Module(), {}))
    path = tmp_path / "iddpm.pkl"
    writer.write_snapshot(path, record)
    r = CliRunner().invoke(main, ["export", str(path), "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2 and IDDPM_REASON[:40] in r.output
    assert not (tmp_path / "m.onnx").exists()


def test_fixtures_are_the_shared_ones():
    shared = Path(__file__).parents[3] / "shared" / "fixtures" / "edm"
    if not shared.is_dir():
        pytest.skip("../shared/fixtures/edm is not beside this checkout")
    for ours in FIXTURES.iterdir():
        assert ours.read_bytes() == (shared / ours.name).read_bytes(), ours.name


def test_the_reader_claims_snapshots_only(tmp_path):
    plain = tmp_path / "state.pkl"
    torch.save({"w": torch.zeros(2)}, plain)
    assert not edm_snapshot.can_read(plain)
    assert edm_snapshot.can_read(FIXTURES / "edm2-cond-tiny.pkl")
    shutil.copy(FIXTURES / "edm2-cond-tiny.pkl", tmp_path / "snap.pt")
    assert not edm_snapshot.can_read(tmp_path / "snap.pt")


def _written_songunet(tmp_path, name="net.pkl", edit=None):
    from edgediff.models.edm.songunet import SongUNet

    kwargs = {"img_resolution": 8, "in_channels": 3, "out_channels": 3, "model_channels": 8,
              "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": []}
    net = SongUNet(**kwargs)
    if edit:
        edit(net)
    return writer.write_snapshot(tmp_path / name, writer.edm_record("EDMPrecond", net, kwargs))


def test_embedded_source_is_never_run_even_when_the_snapshot_is_good(tmp_path, monkeypatch):
    """A readable snapshot whose every record carries source that writes the flag:
    it exports (exit 0), and the flag never appears."""
    flag = tmp_path / "ran"
    monkeypatch.setattr(writer, "SOURCE", _flag_source(flag))
    path = _written_songunet(tmp_path)
    assert _flag_source(flag).encode() in path.read_bytes()
    r = CliRunner().invoke(main, ["export", str(path), "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.onnx").is_file() and not flag.exists()


@pytest.mark.parametrize("edit, says", [
    (lambda net: net._parameters.update(extra=torch.nn.Parameter(torch.zeros(2))),
     "unexpected extra"),
    (lambda net: net.enc["8x8_conv"]._parameters.pop("bias"), "missing enc.8x8_conv.bias"),
    (lambda net: net.enc["8x8_conv"]._parameters.update(
        bias=torch.nn.Parameter(torch.zeros(9))), "enc.8x8_conv.bias is (9,) in the snapshot"),
], ids=["unexpected", "missing", "shape"])
def test_weights_load_strictly_and_a_misfit_names_the_tensor(tmp_path, edit, says):
    from edgediff.models.readers import load_model

    path = _written_songunet(tmp_path, edit=edit)
    with pytest.raises(EdgediffError, match=re.escape(says)):
        load_model(path)
