"""The bundle contract (docs/artifact.md, "Bundles"): a latent model as a folder of two
graphs, so that a sample is an image.

    bundle/
      bundle.json     what is here, each file's sha256, parameters and FLOPs per call
      denoiser.onnx   an ordinary artifact: D(x, sigma) -> denoised, on latents
      decoder.onnx    decode(z) -> image, its latent map folded in (edgediff.latent)

``bundle.json`` is the index; each graph keeps its own metadata (the denoiser's
``edgediff.*`` keys, the decoder's ``edgediff.stage``/``edgediff.decoder``), so
either stage is described by the file itself and the index only says which files
belong together and that they have not changed since. Reading checks every value
(one line naming the key), refuses a newer format ("upgrade edgediff") and a file
whose bytes no longer match its sha256; ``check_stages`` checks that the decoder
takes the denoiser's latents. Writing is atomic: the folder is built beside the
target and renamed into place.

Standard library only, like ``edgediff.latent``: ``edgediff info`` and the runtime
read it without torch.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgediff.errors import EdgediffError
from edgediff.fileio import sha256_of

INDEX = "bundle.json"
FORMAT = "edgediff.bundle"
FORMAT_VERSION = 1
STAGES = ("denoiser", "decoder")  # in the order a sample passes through them
FILES = {"denoiser": "denoiser.onnx", "decoder": "decoder.onnx"}  # what export writes
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class BundleError(EdgediffError):
    """One value of a bundle's index is not allowed: names the key and what is."""

    def __init__(self, where: str, key: str, value: Any, allowed: str):
        shown = json.dumps(value, default=repr)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        super().__init__(f"{where}: {key} = {shown} is not allowed: {allowed}")


@dataclass(frozen=True)
class Stage:
    """One graph of a bundle: its file (a plain name inside the folder), the sha256 of
    its bytes, its network's parameter count, and FLOPs of one call on one sample
    (multiply-add = 2; 0 when unknown)."""

    file: str
    sha256: str
    params: int = 0
    flops: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "params": self.params,
                "flops": self.flops}

    @classmethod
    def from_dict(cls, d: Any, stage: str, where: str) -> Stage:
        if not isinstance(d, dict):
            raise BundleError(where, stage, d, 'a JSON object {"file", "sha256", "params", '
                                               '"flops"}')
        unknown = sorted(set(d) - {"file", "sha256", "params", "flops"})
        if unknown:
            raise BundleError(where, f"{stage}.{unknown[0]}", d[unknown[0]], "no such key "
                              "(known: file, sha256, params, flops)")
        file, digest = d.get("file"), d.get("sha256")
        if not isinstance(file, str) or not _NAME.fullmatch(file) or file == INDEX:
            raise BundleError(where, f"{stage}.file", file, "a file name inside the bundle "
                              "folder (no path)")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise BundleError(where, f"{stage}.sha256", digest, "64 lowercase hex digits")
        params, flops = d.get("params", 0), d.get("flops", 0.0)
        if isinstance(params, bool) or not isinstance(params, int) or params < 0:
            raise BundleError(where, f"{stage}.params", params, "an integer ≥ 0")
        if (isinstance(flops, bool) or not isinstance(flops, int | float)
                or not math.isfinite(flops) or flops < 0):
            raise BundleError(where, f"{stage}.flops", flops, "a finite number ≥ 0")
        return cls(file, digest, params, float(flops))


@dataclass(frozen=True)
class Bundle:
    """A bundle as read: its folder and its stages (``denoiser``, ``decoder``)."""

    folder: Path
    denoiser: Stage
    decoder: Stage

    def path(self, stage: str) -> Path:
        return self.folder / getattr(self, stage).file

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION,
                **{s: getattr(self, s).to_dict() for s in STAGES}}


def is_bundle(path: str | os.PathLike) -> bool:
    """A folder with a bundle.json."""
    return (Path(path) / INDEX).is_file()


def read_bundle(folder: str | os.PathLike, *, verify: bool = True) -> Bundle:
    """Read and check ``folder/bundle.json``; with ``verify``, also that each file's
    bytes still hash to the recorded sha256 (a changed file is refused, by name)."""
    folder = Path(folder)
    index = folder / INDEX
    where = str(index)
    if not index.is_file():
        raise EdgediffError(f"{folder} is not a bundle: it has no {INDEX} (write one with "
                            f"'edgediff export MODEL --decoder VAE_FOLDER -o {folder}')")
    try:
        d = json.loads(index.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgediffError(f"{where} is not readable JSON: {e}") from None
    if not isinstance(d, dict):
        raise BundleError(where, "the index", d, "a JSON object")
    if d.get("format") != FORMAT:
        raise BundleError(where, "format", d.get("format"), f'"{FORMAT}"')
    v = d.get("format_version")
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise BundleError(where, "format_version", v, "a positive integer")
    if v > FORMAT_VERSION:
        raise BundleError(where, "format_version", v, f"at most {FORMAT_VERSION}, the newest "
                          f"this build reads; upgrade edgediff")
    unknown = sorted(set(d) - {"format", "format_version", *STAGES})
    if unknown:
        raise BundleError(where, unknown[0], d[unknown[0]], "no such key (known: format, "
                          "format_version, denoiser, decoder)")
    stages = {s: Stage.from_dict(d.get(s), s, where) for s in STAGES}
    if stages["denoiser"].file == stages["decoder"].file:
        raise BundleError(where, "decoder.file", stages["decoder"].file,
                          "a file other than the denoiser's")
    bundle = Bundle(folder, **stages)
    for s in STAGES:
        path = bundle.path(s)
        if not path.is_file():
            raise EdgediffError(f"{folder}: the {s} file {path.name} is missing; re-export "
                                f"the bundle")
        if verify:
            got = sha256_of(path)
            if got != stages[s].sha256:
                raise EdgediffError(
                    f"{folder}: {path.name} has changed since the bundle was written (sha256 "
                    f"{got[:12]}…, {INDEX} records {stages[s].sha256[:12]}…); the {s} and its "
                    f"partner no longer belong together: re-export the bundle")
    return bundle


def check_stages(sample_shape: tuple[int, ...], latent: dict[str, Any] | None, decoder,
                 where: str) -> None:
    """The decoder (``edgediff.latent.DecoderInfo``) takes the denoiser's samples: one
    latent [C, h, w] of its channels and the size it was validated at, and, when the
    denoiser records its own latent map (``edgediff.latent``), the same map."""
    if len(sample_shape) != 3:
        raise EdgediffError(f"{where}: the denoiser's samples have shape {list(sample_shape)}; "
                            f"a decoder takes latents [C, h, w]")
    if tuple(sample_shape) != decoder.latent_shape:
        raise EdgediffError(f"{where}: the decoder takes latents {list(decoder.latent_shape)} "
                            f"but the denoiser samples {list(sample_shape)}; export the decoder "
                            f"for this denoiser (edgediff export MODEL --decoder VAE_FOLDER)")
    if latent is not None:
        m = decoder.latent_map
        for name in ("scale", "bias"):
            want, got = latent[name], getattr(m, name)
            if any(abs(a - b) > 1e-5 * max(1.0, abs(a)) for a, b in zip(want, got, strict=True)):
                raise EdgediffError(f"{where}: the decoder's latent map {name} {list(got)} is "
                                    f"not the denoiser's edgediff.latent {name} {list(want)}; "
                                    f"re-export the bundle")


def write_bundle(out: str | os.PathLike, files: dict[str, str | os.PathLike],
                 stats: dict[str, tuple[int, float]] | None = None, *,
                 force: bool = False) -> Bundle:
    """Move the stage graphs ``files`` (``{"denoiser": path, "decoder": path}``, best on
    ``out``'s file system) into a new bundle at ``out`` with their sha256s and ``stats``
    (``{stage: (params, flops)}``). The folder is built beside ``out`` and renamed into
    place; an existing ``out`` is replaced only with ``force``, and only by a complete
    bundle. On any failure nothing at ``out`` changes."""
    out = Path(out)
    if set(files) != set(STAGES):
        raise ValueError(f"files must name exactly {STAGES}, got {sorted(files)}")
    if out.exists() and not force:
        raise EdgediffError(f"{out} exists; pass --force to overwrite it")
    if out.exists() and not is_bundle(out) and (not out.is_dir() or any(out.iterdir())):
        raise EdgediffError(f"{out} exists and is not a bundle; choose another -o")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        raise EdgediffError(f"cannot write {out}: {e.strerror}") from None
    old = None
    try:
        stages = {}
        for s in STAGES:
            target = tmp / FILES[s]
            shutil.move(os.fspath(files[s]), target)
            params, flops = (stats or {}).get(s, (0, 0.0))
            stages[s] = Stage(FILES[s], sha256_of(target), int(params), float(flops))
        bundle = Bundle(out, **stages)
        (tmp / INDEX).write_text(json.dumps(bundle.to_dict(), indent=1) + "\n", "utf-8")
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():  # swap: the old bundle steps aside, the new one takes its name
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, old)
        os.rename(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.rename(old, out)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and out.exists():
            shutil.rmtree(old, ignore_errors=True)
    return bundle


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
