"""Model readers: one module per format a user can name by path, behind one list.

A reader module holds:

- ``DESCRIPTION``: what it reads, for messages ("an edgediff checkpoint (...)");
- ``can_read(path) -> bool``: cheap, from the path (suffix, files present) and at
  most a peek at a file's first bytes, never a full read;
- ``read(path, *, allow_pickle=False) -> LoadedModel``: the denoiser D(x, σ) (a
  preconditioner around the network), its checkpoint config (parameterization, σ
  range, sample shape, provenance: ``docs/checkpoint.md``) and its noise schedule;
- ``weights(path) -> Path``: the file or folder whose sha256 names the model (the
  artifact's ``source_sha256``, docs/artifact.md).

A new format is one new module here and one line in ``READERS``, which nothing
else names: the CLI, the export and the lab reach readers through ``load_model``
and ``models.loader.resolve_source``. (One exception: ``edgediff info`` shows an
EDM snapshot's records without building its network, through ``edm_snapshot``'s
``can_read`` and ``models.snapshot``.) The first reader whose ``can_read`` says yes
reads the path, so a format that shares a suffix with a more general one goes
before it (a ``.pkl`` format peeks at its header ahead of ``native``, which takes
any pickle on request).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from edgediff.errors import EdgediffError
from edgediff.models.checkpoint import LoadedModel
from edgediff.models.readers import (
    diffusers_cond_unet,
    diffusers_dit,
    diffusers_unet,
    edm_snapshot,
    native,
)


class Reader(Protocol):
    """What every module in ``READERS`` provides (see the module docstring)."""

    DESCRIPTION: str

    def can_read(self, path: Path) -> bool: ...

    def read(self, path: Path, *, allow_pickle: bool = False) -> LoadedModel: ...

    def weights(self, path: Path) -> Path: ...


READERS: tuple[Reader, ...] = (
    edm_snapshot,    # NVlabs EDM/EDM2 .pkl snapshots, read without running them
    native,          # NAME.safetensors + NAME.json; pickles with allow_pickle
    diffusers_dit,   # a diffusers DiTTransformer2DModel folder (before the UNet's: any folder)
    diffusers_cond_unet,  # a diffusers UNet2DConditionModel folder (before the UNet's)
    diffusers_unet,  # a diffusers UNet2DModel folder
)


def reader_for(path: str | Path) -> Reader:
    """The reader of ``path``, or one error naming every format edgediff reads."""
    p = Path(path)
    for reader in READERS:
        if reader.can_read(p):
            return reader
    formats = ", or ".join(reader.DESCRIPTION for reader in READERS)
    if not p.exists():
        raise EdgediffError(f"{p} does not exist; give {formats}")
    raise EdgediffError(f"{p} is not a model edgediff reads: expected {formats}")


def load_model(path: str | Path, *, allow_pickle: bool = False) -> LoadedModel:
    """The model at ``path``, read by the reader of its format. ``allow_pickle``: a
    pickled checkpoint may be read (with ``torch.load(weights_only=True)``)."""
    p = Path(path)
    return reader_for(p).read(p, allow_pickle=allow_pickle)
