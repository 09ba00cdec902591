"""The deployable runtime: NumPy step loops over ONNX Runtime or TensorRT.

Nothing here imports torch, onnx or tensorrt; each engine's packages load only
when a file of its kind is opened (``edgediff.runtime.backends``).

    from edgediff import runtime
    D = runtime.load("model.onnx")             # metadata decides everything else
    x = runtime.sample(D, 64, seed=0)          # the artifact's default solver
    x = runtime.sample(D, 64, solver="dpmpp_2m", steps=10)
    x = runtime.sample(D, 10, condition=runtime.Condition(labels=range(10), guidance=3.0),
                       run=runtime.RunOptions(batch=10))
    x = runtime.sample(D, 8, solver="cm",      # a distilled model on its own σ's
                       run=runtime.RunOptions(sigmas=runtime.exact_sigmas(D.info, [80, 1.38])))
    P = runtime.load("bundle/")                # a latent model + its decoder: a Pipeline
    images = P.sample(4, seed=0)               # decoded images [4, 3, H, W]
"""

from edgediff.grids import exact_sigmas, sigma_grid, timestep_sigmas
from edgediff.runtime._call import Denoiser, NonFiniteOutputError
from edgediff.runtime.backends import BackendOptions
from edgediff.runtime.guidance import Condition
from edgediff.runtime.pipeline import Pipeline, load
from edgediff.runtime.sampling import SOLVERS, RunOptions, sample, sample_batch
from edgediff.runtime.tiling import Tiling
from edgediff.settings import SolverSettings
from edgediff.streams import NoiseStreams

__all__ = ["SOLVERS", "BackendOptions", "Condition", "Denoiser", "NoiseStreams",
           "NonFiniteOutputError", "Pipeline", "RunOptions", "SolverSettings", "Tiling",
           "exact_sigmas", "load", "sample", "sample_batch", "sigma_grid", "timestep_sigmas"]
