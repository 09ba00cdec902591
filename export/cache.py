"""A content-addressed cache of exports: a model file exported once, its graph reused.

``sample``, ``bench`` and ``check`` take an NVlabs snapshot where they take an
artifact. Exporting one takes seconds to minutes, so the export is made once and
kept under a name that only its inputs decide:

    key = sha256 of {source sha256, edgediff version, opset, precision, guidance, int8}

— every setting that changes the graph's bytes, and nothing else (validation
tolerances decide whether a file is written, not what it holds). A changed file,
a new edgediff or another precision is another key, so a stale entry is never
read; nothing is ever invalidated in place. Entries are written by ``export_onnx``
through ``fileio.atomic_path``: an interrupted or refused export leaves no file.

The cache lives in ``$EDGEDIFF_CACHE``, else ``$XDG_CACHE_HOME/edgediff``, else
``~/.cache/edgediff`` (the TensorRT execution provider's engine cache shares the
root), under ``exports/<key>.onnx``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgediff import __version__
from edgediff.errors import EdgediffError
from edgediff.fileio import CACHE_ENV, cache_root, sha256_of

if TYPE_CHECKING:
    from edgediff.export.onnx import ExportOptions

log = logging.getLogger(__name__)

EXPORTS = "exports"
# formats exported on use, as modules of edgediff.models.readers; imported only for a
# path that is no artifact, so sampling an .onnx file never imports torch
CACHED_READERS = ("edm_snapshot",)
ARTIFACT_SUFFIXES = (".onnx", ".plan", ".engine")


def export_key(source_sha256: str, options: ExportOptions | None = None,
               version: str = __version__) -> str:
    """The cache key of ``options``' export (None: the defaults) of the source with
    this digest: a sha256 over the settings that change the exported bytes."""
    options = _options(options)
    fields = {"source_sha256": source_sha256, "edgediff": version, "opset": options.opset,
              "precision": "int8" if options.int8 else options.precision,
              "guidance": options.guidance,
              "int8": None if options.int8 is None else asdict(options.int8)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cache_path(key: str, root: Path | None = None) -> Path:
    """Where the export with this key lives."""
    return (cache_root() if root is None else Path(root)) / EXPORTS / f"{key}.onnx"


def needs_export(path: str | Path) -> bool:
    """Is ``path`` a model file that these commands export on use (an NVlabs
    snapshot), rather than an artifact they open as it is?"""
    import importlib

    p = Path(path)
    if p.suffix in ARTIFACT_SUFFIXES:
        return False
    return any(importlib.import_module(f"edgediff.models.readers.{name}").can_read(p)
               for name in CACHED_READERS)


def shown(path: Path) -> str:
    """``path`` for messages, with the home folder as ``~``."""
    try:
        return str(Path("~") / path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def cached_export(source: str | Path, options: ExportOptions | None = None, *,
                  root: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> Path:
    """The cached .onnx export of the model file ``source``, made first if missing.

    On a miss, the model is read (a refused file stops here, before any message or
    folder), ``progress`` hears one line, the export is traced, validated and moved
    into place by ``export_onnx``, and ``progress`` hears the seconds it took. On a
    hit nothing is read but the file's bytes (for the key), and ``progress`` hears
    nothing."""
    from edgediff.export.onnx import export_onnx
    from edgediff.models.readers import reader_for

    options = _options(options)
    source = Path(source)
    reader = reader_for(source)
    digest = sha256_of(reader.weights(source))
    target = cache_path(export_key(digest, options), root)
    if target.is_file():
        log.info("cache hit: %s is %s", source, target)
        return target
    model = reader.read(source)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgediffError(f"cannot create the export cache {target.parent}: {e.strerror}; "
                            f"set {CACHE_ENV} to a writable folder") from None
    say = progress or (lambda line: log.info("%s", line))
    say(f"exporting {source.name} once into the cache: {shown(target)} …")
    start = time.perf_counter()
    # force: another process may have finished the same export meanwhile (same bytes)
    export_onnx(model, target, replace(options, force=True), source_sha256=digest)
    say(f"exported {source.name} in {time.perf_counter() - start:.1f} s")
    return target


def artifact_for(path: str | Path, options: ExportOptions | None = None, *,
                 root: Path | None = None,
                 progress: Callable[[str], None] | None = None) -> Path:
    """``path`` itself when it is an artifact, its cached export when it is a model
    file of ``CACHED_READERS`` (``cached_export``)."""
    if needs_export(path):
        return cached_export(path, options, root=root, progress=progress)
    return Path(path)


def _options(options: ExportOptions | None) -> ExportOptions:
    from edgediff.export.onnx import ExportOptions

    return ExportOptions() if options is None else options
