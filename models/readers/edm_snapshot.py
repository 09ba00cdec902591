"""Reader of NVlabs EDM and EDM2 network snapshots (``network-snapshot-*.pkl``).

Safe by construction, so on by default: the file is read by the restricted
unpickler of ``models/snapshot/unpickle.py``, which resolves only the globals such
snapshots use to data-only stand-ins, never compiles the module source EDM embeds,
and reads each nested tensor payload under the same restrictions. The network is
then rebuilt by edgediff's own modules (``models/snapshot/rebuild.py``).
``allow_pickle`` is not needed and changes nothing here.
"""

from __future__ import annotations

from pathlib import Path

from edgediff.models.checkpoint import LoadedModel

DESCRIPTION = "an NVlabs EDM/EDM2 network snapshot (network-snapshot-*.pkl)"
MARKERS = (b"torch_utils.persistence", b"dnnlib.util")
PEEK_BYTES = 1 << 16


def can_read(path: Path) -> bool:
    """A ``.pkl`` file whose first 64 KiB name EDM's persistence module or dnnlib."""
    if path.suffix != ".pkl" or not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(PEEK_BYTES)
    except OSError:
        return False
    return head[:1] == b"\x80" and any(m in head for m in MARKERS)


def read(path: Path, *, allow_pickle: bool = False) -> LoadedModel:
    from edgediff.models.snapshot.rebuild import build
    from edgediff.models.snapshot.unpickle import read_snapshot

    return build(read_snapshot(path), source=path.name)


def weights(path: Path) -> Path:
    return path
