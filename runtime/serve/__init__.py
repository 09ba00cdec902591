"""``edgediff serve``: an HTTP sampling server with step-level continuous batching
(docs/serve.md). Torch-free, like the rest of the runtime; FastAPI, uvicorn and
prometheus_client (the ``serve`` extra) are imported only when an app is made.

    from edgediff import runtime
    from edgediff.runtime.serve import ServeOptions, make_app, serve
    D = runtime.load("digits.onnx")
    serve(D, ServeOptions(port=8000, max_batch=16))      # blocks; SIGTERM drains
    app = make_app(D, ServeOptions())                     # or mount the ASGI app yourself

Without HTTP (a Ray Serve deployment wraps this), the scheduler alone:

    from edgediff.runtime.serve import Limits, Scheduler, plan_job
    with Scheduler(D, max_batch=16, mode="step") as scheduler:
        job = plan_job(D.info, {"n": 4, "seed": 0, "solver": "heun", "steps": 18}, Limits())
        samples = scheduler.submit(job, job.rows).result()

Modules: ``scheduler`` (the packing loop), ``tickets`` (a request's handle and
``pack``), ``lanes`` (the per-request denoiser the solvers call), ``jobs`` (request
checks), ``schemas`` (the pydantic body), ``encoding`` (PNG, .npy, .npz), ``metrics``
(Prometheus), ``app`` (FastAPI), ``server`` (uvicorn, SIGTERM), ``serve_options``,
``ray_serve`` (the same app as a Ray Serve deployment of N replicas).
"""

from edgediff.runtime.serve.app import make_app
from edgediff.runtime.serve.jobs import InvalidFieldError, Limits, SampleJob, plan_job
from edgediff.runtime.serve.scheduler import Scheduler
from edgediff.runtime.serve.serve_options import MODES, ServeOptions
from edgediff.runtime.serve.server import serve
from edgediff.runtime.serve.tickets import (
    DenoiserCallError,
    RejectedError,
    RequestCancelledError,
    Ticket,
    pack,
)

__all__ = ["MODES", "DenoiserCallError", "InvalidFieldError", "Limits", "RejectedError",
           "RequestCancelledError", "SampleJob", "Scheduler", "ServeOptions", "Ticket",
           "make_app", "pack", "plan_job", "serve"]
