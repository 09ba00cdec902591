"""``edgediff serve``: an HTTP sampling server over one artifact (docs/serve.md)."""

from __future__ import annotations

from pathlib import Path

import click

from edgediff.cli._sampling import backend_options

MODES = ("step", "request", "single")  # edgediff.runtime.serve.MODES (--help imports no runtime)


@click.command("serve")
@click.argument("artifact", type=click.Path(exists=True, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default, loopback, is reachable from this "
                   "machine only; 0.0.0.0 listens on every interface (then set --api-key).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port.")
@click.option("--max-batch", type=click.IntRange(1), default=16, show_default=True,
              help="Most rows one denoiser call packs, across all running requests "
                   "(classifier-free guidance takes two rows per sample).")
@click.option("--queue", type=click.IntRange(1), default=256, show_default=True,
              help="Most accepted requests waiting to start; past it: 503 with Retry-After.")
@click.option("--deadline", type=click.FloatRange(0, min_open=True), default=300.0,
              show_default=True, help="Seconds a request may take (a request's own "
                                      "'deadline' may only shorten it); past it: 504.")
@click.option("--max-n", type=click.IntRange(1), default=64, show_default=True,
              help="Most samples one request may ask for.")
@click.option("--max-steps", type=click.IntRange(1), default=1000, show_default=True,
              help="Most steps one request may ask for.")
@click.option("--api-key", envvar="EDGEDIFF_API_KEY", show_envvar=True, default=None,
              help="Require 'Authorization: Bearer KEY' on every endpoint but /healthz.")
@click.option("--batching", type=click.Choice(MODES), default="step", show_default=True,
              help="For load tests: step (requests join and leave between denoiser calls), "
                   "request (a group that started together runs to its end) or single (one "
                   "request at a time).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None,
              metavar="[ADDRESS]",
              help="Serve as a Ray Serve deployment of --replicas replicas, each with its own "
                   "scheduler, routed by Ray Serve's proxy on --host:--port (pip install "
                   "\"edgediff[ray]\"): --ray alone starts a local Ray cluster, --ray=auto "
                   "joins the one this machine belongs to, --ray=HOST:PORT or ray://… "
                   "another.")
@click.option("--replicas", type=click.IntRange(1), default=2, show_default=True,
              help="With --ray: replicas, each loading the artifact once; each asks Ray for "
                   "--threads CPUs (1 if unset), and one GPU with --provider cuda or "
                   "tensorrt.")
@backend_options
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="uvicorn's and edgediff's log level.")
def command(artifact, host, port, max_batch, queue, deadline, max_n, max_steps, api_key,
            batching, ray_address, replicas, provider, threads, cuda_graph, metadata_file,
            engine, precision, device, log_level):
    """Serve ARTIFACT (an exported .onnx file or a TensorRT .plan) over HTTP: POST
    /v1/samples draws samples (PNG, .npy or .npz), GET /v1/model describes the model,
    /metrics is for Prometheus and /docs is the OpenAPI page.

    Each denoiser call packs the rows of every running request, each at its own step
    of its own solver (step-level continuous batching); requests join and leave
    between calls. A request's samples are those 'edgediff sample' draws with the
    same seed and settings, up to float32 rounding.

    Listens on 127.0.0.1, reachable from this machine only, unless --host says
    otherwise. With --api-key (or $EDGEDIFF_API_KEY) every endpoint but /healthz wants
    'Authorization: Bearer KEY'. SIGTERM stops admissions, finishes the requests in
    flight and exits 0. Needs the serve extra: pip install "edgediff[serve]".

    \b
    Examples:
      edgediff serve digits.onnx                       # http://127.0.0.1:8000/docs
      edgediff serve digits.onnx --max-batch 32 --threads 4
      EDGEDIFF_API_KEY=$(cat key) edgediff serve digits.onnx --host 0.0.0.0
      edgediff serve digits.onnx --ray=auto --replicas 8    # Ray Serve, 8 replicas
      curl -X POST 127.0.0.1:8000/v1/samples -H 'Content-Type: application/json' \\
           -d '{"n": 16, "seed": 1}' -o grid.png
    """
    import logging

    from edgediff.cli._sampling import load_artifact
    from edgediff.errors import EdgediffError, missing_extra
    from edgediff.metadata import read_metadata_json
    from edgediff.runtime.pipeline import Pipeline
    from edgediff.runtime.serve import ServeOptions, serve

    try:  # the serve extra, checked before a model loads
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise missing_extra(e.name or "fastapi", "serve") from None
    options = ServeOptions(host=host, port=port, max_batch=max_batch, queue=queue,
                           deadline=deadline, max_n=max_n, max_steps=max_steps,
                           api_key=api_key, batching=batching)
    if ray_address is not None:
        from edgediff.runtime import BackendOptions

        backend = BackendOptions(provider=provider, threads=threads, cuda_graph=cuda_graph,
                                 max_batch=max_batch, engine=engine, precision=precision,
                                 device=device,
                                 metadata=read_metadata_json(metadata_file))
        logging.basicConfig(level=log_level.upper(),
                            format="%(levelname)s:     %(name)s: %(message)s")
        return on_ray(artifact, backend, options, ray_address, replicas)
    denoiser = load_artifact(artifact, provider, threads, cuda_graph, metadata_file, max_batch,
                             engine=engine, precision=precision, device=device)
    if isinstance(denoiser, Pipeline):
        raise EdgediffError(f"{artifact} is a bundle (a latent model and its decoder); serve "
                            f"takes one denoiser artifact, an .onnx file or a .plan")
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    info = denoiser.info
    reach = ("loopback only: reachable from this machine alone (--host 0.0.0.0 for every "
             "interface)" if options.loopback else "reachable from other machines")
    click.echo(f"edgediff serve: {artifact} (samples {' × '.join(map(str, info.sample_shape))}) "
               f"on http://{host}:{port} — {reach}; API docs at /docs; batching {batching}, "
               f"max batch {max_batch}", err=True)
    if not options.loopback and not api_key:
        click.echo("warning: no --api-key: anyone who can reach this port can use it", err=True)
    serve(denoiser, options, log_level)


def on_ray(artifact: Path, backend, options, address: str, replicas: int) -> None:
    """--ray: the app as a Ray Serve deployment (edgediff.runtime.serve.ray_serve)."""
    from edgediff.errors import EdgediffError
    from edgediff.lab.cluster import RayOptions, artifact_files, connect, ray_module, worker_backend
    from edgediff.runtime.serve import ray_serve

    if artifact.is_dir():
        raise EdgediffError(f"{artifact} is a bundle (a latent model and its decoder); serve "
                            f"takes one denoiser artifact, an .onnx file or a .plan")
    ray_serve.ray_serve()  # the extra, checked before a cluster starts
    backend = worker_backend(artifact, backend)  # one thread each unless asked otherwise
    where = RayOptions(address, replicas)
    connect(where.join, num_cpus=None if where.join else replicas * backend.threads)
    click.echo(f"edgediff serve: {artifact} as {replicas} Ray Serve replicas "
               f"({'a local Ray cluster' if where.join is None else where.join}) on "
               f"http://{options.host}:{options.port}; API docs at /docs; batching "
               f"{options.batching}, max batch {options.max_batch} per replica", err=True)
    if not options.loopback and not options.api_key:
        click.echo("warning: no --api-key: anyone who can reach this port can use it", err=True)
    try:
        ray_serve.serve_on_ray(artifact_files(artifact), backend, options, replicas)
    finally:
        ray_module().shutdown()  # a local cluster ends; a joined one is only left
