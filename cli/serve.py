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
@backend_options
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="uvicorn's and edgediff's log level.")
def command(artifact, host, port, max_batch, queue, deadline, max_n, max_steps, api_key,
            batching, provider, threads, cuda_graph, metadata_file, engine, precision, device,
            log_level):
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
      curl -X POST 127.0.0.1:8000/v1/samples -H 'Content-Type: application/json' \\
           -d '{"n": 16, "seed": 1}' -o grid.png
    """
    import logging

    from edgediff.cli._sampling import load_artifact
    from edgediff.errors import EdgediffError, missing_extra
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
