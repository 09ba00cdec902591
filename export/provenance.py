"""Where an exported network came from: a hash of its weights and the provenance
JSON that ``export_denoiser`` writes into the ONNX file's ``doc_string``."""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn


def state_dict_sha256(net: nn.Module) -> str:
    """sha256 over ``net.state_dict()`` in its order: each entry's name, dtype, shape
    and raw bytes. Equal weights give equal hashes whatever the device."""
    h = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}\0{t.dtype}\0{tuple(tensor.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def write_provenance(path: str, provenance: dict) -> None:
    """The provenance, as JSON, in the ONNX model's ``doc_string`` (ONNX Runtime's
    ``get_modelmeta().description``); the ``edgediff.*`` metadata is untouched."""
    import onnx

    proto = onnx.load(path)
    proto.doc_string = json.dumps(provenance)
    onnx.save(proto, path)
