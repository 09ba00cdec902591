"""The deployable runtime: NumPy step loops over ONNX Runtime or TensorRT.

Nothing here imports torch, onnx or tensorrt; TensorRT and cuda-python load
only when a ``.plan`` is opened.

    from edgediff import runtime
    D = runtime.load("model.onnx")             # metadata decides everything else
    x = runtime.sample(D, 64, seed=0)          # the artifact's default solver
    x = runtime.sample(D, 64, solver="dpmpp_2m", steps=10)
"""

from edgediff.grids import sigma_grid
from edgediff.runtime._call import Denoiser, NonFiniteOutputError
from edgediff.runtime.sampling import SOLVERS, load, sample, sample_batch
from edgediff.settings import SolverSettings
from edgediff.streams import NoiseStreams

__all__ = ["SOLVERS", "Denoiser", "NoiseStreams", "NonFiniteOutputError", "SolverSettings", "load",
           "sample", "sample_batch", "sigma_grid"]
