"""``edgediff serve --ray``: the same app and scheduler as a Ray Serve deployment of N
replicas, for more than one machine can serve (docs/serve.md, "Scale-out with Ray
Serve").

Each replica is a Ray actor that opens the artifact once — its bytes travel through
Ray's object store, so a replica on any node needs no shared file system — and serves
the app ``make_app`` builds for ``edgediff serve``: one ``Scheduler`` packing the rows
of that replica's requests into its denoiser calls (``SamplerReplica``, wrapped by
``serve.ingress``). Ray Serve's proxy listens on ``ServeOptions.host``:``port``
(loopback unless told otherwise) and routes each request to the less busy of two
replicas drawn at random (Ray Serve's default router); a replica takes at most
``2 × max_batch`` requests at once (``max_ongoing_requests``: a full batch and as many
waiting to join it), the rest wait in Ray's router for a replica with room. A
request's samples are the ones a single server gives (docs/serve.md, "Same samples as
alone"): every replica runs the same artifact with the same backend options.

Stopping (``stop``) deletes the application: each replica stops taking requests,
lets those it holds finish (within ``ServeOptions.deadline``), and drains its
scheduler; Ray Serve itself stays up for the cluster's other applications. Ray is
imported inside the functions: importing this module needs nothing beyond NumPy.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
from pathlib import Path

from edgediff.errors import EdgediffError, missing_extra
from edgediff.runtime.backends import BackendOptions
from edgediff.runtime.serve.app import make_app
from edgediff.runtime.serve.serve_options import ServeOptions

log = logging.getLogger(__name__)

APP_NAME = "edgediff"  # the Ray Serve application
DEPLOYMENT = "edgediff-sampler"


def ray_serve():
    """``ray.serve``, or the line that installs it."""
    try:
        from ray import serve
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "ray":
            raise missing_extra("ray", "ray") from None
        raise EdgediffError(f"Ray Serve is missing a dependency ({e.name}): "
                            f"pip install \"edgediff[ray]\" (it pulls ray[serve])") from None
    return serve


class SamplerReplica:
    """One replica: the artifact opened once with ``backend``, and ``make_app``'s app
    over it (built by Ray Serve when the replica starts, run with its lifespan: the
    scheduler starts then, and drains when the replica stops)."""

    def __init__(self, files: list, backend: BackendOptions, options: ServeOptions):
        import ray

        from edgediff import runtime

        files = ray.get(files[0])  # (in a list: Ray hands it over unresolved)
        folder = Path(tempfile.mkdtemp(prefix="edgediff-replica-"))
        for name, data in files.items():
            (folder / name).write_bytes(data)
        self.denoiser = runtime.load(folder / next(iter(files)), backend)
        self.options = options

    def __serve_build_asgi_app__(self):
        return make_app(self.denoiser, self.options)


def application(files: dict[str, bytes], backend: BackendOptions,
                options: ServeOptions | None = None, replicas: int = 2):
    """The Ray Serve application, not yet running: ``replicas`` replicas of the app,
    each opening ``files`` (name → bytes, the artifact first, as
    ``edgediff.lab.cluster.artifact_files`` reads them) with ``backend`` and serving
    with ``options``. Each asks Ray for ``backend.threads`` CPUs (1 if unset), and one
    GPU on the cuda or tensorrt providers or for a plan."""
    import ray

    serve = ray_serve()
    options = ServeOptions() if options is None else options
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise EdgediffError(f"--replicas must be ≥ 1, got {replicas!r}")
    if backend.metadata:
        raise EdgediffError("--metadata is for local runs; give Ray replicas an artifact "
                            "exported by edgediff")
    first = next(iter(files))
    gpu = backend.provider != "cpu" or Path(first).suffix in (".plan", ".engine")
    replica = serve.deployment(
        serve.ingress()(SamplerReplica), name=DEPLOYMENT, num_replicas=replicas,
        ray_actor_options={"num_cpus": backend.threads or 1, "num_gpus": 1 if gpu else 0},
        max_ongoing_requests=2 * options.max_batch,
        graceful_shutdown_wait_loop_s=0.5, graceful_shutdown_timeout_s=options.deadline)
    return replica.bind([ray.put(files)], backend, options)


def start(files: dict[str, bytes], backend: BackendOptions,
          options: ServeOptions | None = None, replicas: int = 2) -> str:
    """Deploy ``application(...)`` on the Ray cluster this process is connected to
    (``ray.init`` first), its proxy on ``options.host``:``options.port``; returns the
    base URL once every replica is up."""
    serve = ray_serve()
    options = ServeOptions() if options is None else options
    app = application(files, backend, options, replicas)
    serve.start(http_options={"host": options.host, "port": options.port})
    serve.run(app, name=APP_NAME, route_prefix="/")
    log.info("%d replicas of %s serving on %s:%d", replicas, next(iter(files)), options.host,
             options.port)
    return f"http://{options.host}:{options.port}"


def stop() -> None:
    """Delete the application: its replicas finish the requests they hold and drain.
    Ray Serve itself (its controller and proxies) keeps running on the cluster, for any
    other application on it; ``ray.shutdown()`` of a local cluster ends it too."""
    ray_serve().delete(APP_NAME)


def serve_on_ray(files: dict[str, bytes], backend: BackendOptions,
                 options: ServeOptions | None = None, replicas: int = 2) -> None:
    """``start``, then serve until SIGTERM or Ctrl-C (from the start on: the proxy
    answers once the first replica is up), then ``stop``; returns once drained. Call it
    after ``ray.init``, which installs signal handlers of its own."""
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        start(files, backend, options, replicas)
        while not stopping.wait(0.5):
            pass
        log.info("stopping: the replicas finish the requests they hold, then drain")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop()
