"""The torch → ONNX trace: the module whose forward is the exported function
D(x, σ[, class_labels[, guidance]][, *tensors]) → denoised, with the
preconditioning folded in (the denoiser is the preconditioner around the
network, ``models/precond.py``), and its half-precision variant.

A tensor-conditioned artifact (``edgediff.tensor_conditioning``) calls its
denoiser as ``denoiser(x, sigma, class_labels, **tensors)`` (``class_labels``
only when it has classes), each declared input by its name, float32 [B, *shape].

Inputs and output follow ``edgediff.graph``: every axis 0 is the dynamic batch.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError
from edgediff.graph import OUTPUT, graph_inputs


class _Graph(nn.Module):
    """The exported function: exactly the preconditioned denoiser, two inputs."""

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x, sigma):
        return self.denoiser(x, sigma)


class _ConditionalGraph(_Graph):
    """D(x, σ, class_labels): integer ids [B], the null id for an unconditional pass;
    the network turns them into its one-hot rows inside the graph."""

    def forward(self, x, sigma, class_labels):
        return self.denoiser(x, sigma, class_labels)


class _GuidedGraph(_Graph):
    """Classifier-free guidance in one launch (export --guidance): the batch is
    doubled inside, the labels on one half and the null id on the other, and
    D = D_u + w·(D_c − D_u) per sample with w the ``guidance`` input [B]
    (classifier-free guidance, Ho & Salimans 2022; docs/conditioning.md)."""

    def __init__(self, denoiser: nn.Module, null_label: int):
        super().__init__(denoiser)
        self.null_label = null_label

    def forward(self, x, sigma, class_labels, guidance):
        both = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]),
                             torch.cat([class_labels, torch.full_like(class_labels,
                                                                      self.null_label)]))
        d_c, d_u = both[: x.shape[0]], both[x.shape[0]:]
        w = guidance.reshape(-1, *[1] * (x.ndim - 1))
        return d_u + w * (d_c - d_u)


class _TensorGraph(_Graph):
    """D(x, σ[, class_labels], *tensors): the declared tensor inputs, in order, go to
    the denoiser by name."""

    def __init__(self, denoiser: nn.Module, names: list[str], labels: bool):
        super().__init__(denoiser)
        self.names, self.labels = names, labels

    def forward(self, x, sigma, *rest):
        labels = rest[:1] if self.labels else ()
        tensors = dict(zip(self.names, rest[len(labels):], strict=True))
        return self.denoiser(x, sigma, *labels, **tensors)


def export_graph(denoiser: nn.Module, info: ArtifactInfo) -> nn.Module:
    """The module whose forward is the exported function, for this artifact's inputs,
    in eval mode: ``torch.onnx.export`` puts the top module back in the mode it
    found it in, and every child with it, so a wrapper left in training mode would
    switch dropout back on in the torch reference the export is validated against."""
    if info.tensors:
        return _TensorGraph(denoiser, [t.name for t in info.tensors],
                            bool(info.num_classes)).eval()
    if info.guidance_input:
        return _GuidedGraph(denoiser, info.null_label).eval()
    if info.num_classes:
        return _ConditionalGraph(denoiser).eval()
    return _Graph(denoiser).eval()


def half_network(denoiser: nn.Module) -> nn.Module:
    """A copy of the denoiser whose network runs in float16; the preconditioning
    (c_skip, c_out, c_in, c_noise) stays float32."""
    denoiser = copy.deepcopy(denoiser).float().eval()
    network = getattr(denoiser, "model", None)
    if network is None or not any(p.is_floating_point() for p in network.parameters()):
        raise EdgediffError("this model has no network weights to run in fp16 (the analytic "
                            "mixture is exact arithmetic); export it without --fp16")
    network.half()
    return denoiser


def trace(graph: nn.Module, info: ArtifactInfo, path: str | Path, opset: int) -> None:
    """``torch.onnx.export`` (TorchScript tracing) of ``graph`` to ``path``, on an
    example batch of two at σ_min and σ_max."""
    inputs = graph_inputs(info)
    names = [i.name for i in inputs]
    example = tuple(torch.from_numpy(i.buffer(2)) for i in inputs)
    example = (torch.zeros(2, *info.sample_shape),
               torch.tensor([info.sigma_min, info.sigma_max], dtype=torch.float32),
               *(torch.zeros(2, dtype=torch.int64) if n == "class_labels" else e
                 for n, e in zip(names[2:], example[2:], strict=True)))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, example, path, input_names=names, output_names=[OUTPUT],
                          opset_version=opset, dynamo=False,
                          dynamic_axes={n: {0: "batch"} for n in [*names, OUTPUT]})
