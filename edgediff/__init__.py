"""edgediff: trained diffusion denoisers to fast, portable inference.

The core (this package's top level) is NumPy-only: schedules, the exact
Gaussian-mixture oracle, artifact metadata, errors and the CLI. Torch lives in
``edgediff.models``, ``edgediff.samplers`` and ``edgediff.export``; the
deployable runtime in ``edgediff.runtime`` never imports it.
"""

__version__ = "0.1.0"

from edgediff.errors import EdgediffError

__all__ = ["EdgediffError", "__version__"]
