"""Writing files so that a failure or interruption never leaves a partial one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgediff.errors import EdgediffError


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[str]:
    """Yield a temp path beside ``target``; on success it replaces ``target`` (with
    the usual umask-derived mode), on any failure it is removed."""
    target = Path(target)
    if not target.parent.is_dir():
        raise EdgediffError(f"cannot write {target}: {target.parent} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise EdgediffError(f"cannot write {target}: {e.strerror}") from None
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
