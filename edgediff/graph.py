"""The exported graph's inputs, from the artifact contract (docs/artifact.md).

``graph_inputs(info)`` is the one list every part reads: the ONNX export's input
names and dynamic axes, the int8 calibration feeds, the TensorRT build profile,
the TensorRT execution provider's profile, and the runtime backends' bindings.
Every input has the batch as its leading, dynamic axis:

- ``x`` float32 [B, *sample_shape], the noisy sample x̂;
- ``sigma`` float32 [B], its noise level σ;
- ``class_labels`` int64 [B], a class-conditional graph's ids (the null id: an
  unconditional pass);
- ``guidance`` float32 [B], a --guidance graph's scale w (1: the conditional model
  alone);
- one float32 [B, *shape] input per declared tensor conditioning
  (``edgediff.tensor_conditioning``), in declaration order, holding its null
  value when a caller leaves it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgediff.artifact import ArtifactInfo

OUTPUT = "denoised"  # the graph's one output, float32 [B, *sample_shape]
_ONNX_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}


@dataclass(frozen=True)
class GraphInput:
    """One input: its name, NumPy dtype, shape per sample (the graph adds the batch
    axis in front), and the value it holds when a caller leaves it out (None: the
    caller always gives it; an array of ``shape``: a tensor's null value)."""

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    fill: float | int | np.ndarray | None = None

    @property
    def onnx_type(self) -> str:
        """The type ONNX Runtime reports for it, e.g. ``tensor(float)``."""
        return _ONNX_TYPES[self.dtype]

    def batch_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.shape)

    def buffer(self, batch: int) -> np.ndarray:
        """A host array for ``batch`` samples, holding ``fill`` (else uninitialised)."""
        if self.fill is None:
            return np.empty(self.batch_shape(batch), self.dtype)
        return np.full(self.batch_shape(batch), self.fill, self.dtype)


def graph_inputs(info: ArtifactInfo) -> tuple[GraphInput, ...]:
    """The graph's inputs, in the order the export declares them."""
    inputs = [GraphInput("x", "float32", tuple(int(n) for n in info.sample_shape)),
              GraphInput("sigma", "float32")]
    if info.num_classes:
        inputs.append(GraphInput("class_labels", "int64", fill=info.null_label))
    if info.guidance_input:
        inputs.append(GraphInput("guidance", "float32", fill=1.0))
    inputs.extend(GraphInput(t.name, "float32", t.shape, fill=t.null) for t in info.tensors)
    return tuple(inputs)


def profile_shapes(inputs: Sequence[GraphInput], batches: Sequence[int]
                   ) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Each input's shape at each batch size: an optimization profile's (min, opt,
    max) shapes when ``batches`` is (min, opt, max)."""
    return {i.name: tuple(i.batch_shape(int(b)) for b in batches) for i in inputs}


def label_cycle(info: ArtifactInfo, num: int) -> np.ndarray | None:
    """Class ids for ``num`` calls that visit every class and the null label in turn
    (calibration and export checks); None for an unconditional graph."""
    if not info.num_classes:
        return None
    if info.null_label is None:  # K real classes and no null one
        return np.arange(num, dtype=np.int64) % info.num_classes
    labels = np.arange(num, dtype=np.int64) % (info.num_classes + 1)
    labels[labels == info.num_classes] = info.null_label
    return labels
