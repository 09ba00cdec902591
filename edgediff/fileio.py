"""Writing files so that a failure or interruption never leaves a partial one, and
where edgediff keeps what it caches."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def _merge(src: Path, dst: Path) -> None:
    """Move ``src``'s entries into the folder ``dst``, each with one atomic rename;
    sub-folders that exist on both sides are merged the same way."""
    for child in sorted(src.iterdir()):
        target = dst / child.name
        if child.is_dir() and target.is_dir():
            _merge(child, target)
        else:
            os.replace(child, target)


@contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target`` to write a run's outputs
    into. Only when the block succeeds do they take their place: a new ``target``
    is the temporary folder renamed; an existing one receives each file by an
    atomic rename (files of earlier runs with other names stay). On any failure —
    an error, a NaN stop, Ctrl-C — the temporary folder is removed and ``target``
    is as it was: no new folder, no new or half-written file."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise EdgediffError(f"the output {target} exists and is not a folder; choose another -o")
    base = _nearest_existing(target.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=base))
    except OSError as e:
        raise EdgediffError(f"cannot create the output folder {target}: {e.strerror}; "
                            f"choose another -o") from None
    try:
        yield tmp
        if target.is_dir():
            _merge(tmp, target)
        else:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise EdgediffError(f"cannot create {target.parent}: {e.strerror}") from None
            os.rename(tmp, target)
            os.chmod(target, 0o777 & ~_umask())  # mkdtemp makes 0700
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def sha256_of(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files in name order (diffusers folders)."""
    p, h = Path(path), hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


CACHE_ENV = "EDGEDIFF_CACHE"


def cache_root(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """$EDGEDIFF_CACHE, else $XDG_CACHE_HOME/edgediff, else ~/.cache/edgediff (an
    empty variable counts as unset, as the XDG spec asks). Exported snapshots and
    TensorRT-EP engines live in folders under it."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    base = env.get("XDG_CACHE_HOME") or (home or Path.home()) / ".cache"
    return Path(base).expanduser() / "edgediff"
