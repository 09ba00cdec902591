"""The HTTP layer: a FastAPI app over one ``Scheduler`` (docs/serve.md).

``make_app(denoiser, options)`` builds it; FastAPI, pydantic and prometheus_client are
imported then, so importing this module needs none of them. The app starts its
scheduler when it starts and drains it when it stops.

(No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations,
among them the request model ``make_app`` builds.)
"""

import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager

from edgediff import __version__
from edgediff.catalogue import SOLVER_NAMES
from edgediff.errors import missing_extra
from edgediff.runtime._call import Denoiser, NonFiniteOutputError
from edgediff.runtime.serve.encoding import FORMATS, choose_format, encode
from edgediff.runtime.serve.jobs import InvalidFieldError, Limits, plan_job
from edgediff.runtime.serve.metrics import ServeMetrics
from edgediff.runtime.serve.scheduler import Scheduler
from edgediff.runtime.serve.schemas import request_model
from edgediff.runtime.serve.serve_options import ServeOptions
from edgediff.runtime.serve.tickets import RejectedError, RequestCancelledError, Ticket

log = logging.getLogger(__name__)

OPEN_PATHS = ("/healthz",)  # reachable without the API key
RETRY_AFTER_S = 1  # a full queue's Retry-After
POLL_S = 0.1  # how often a waiting request looks for its client's disconnect
STATUS = {"deadline": 504, "disconnected": 499, "shutdown": 503}  # by its reason


class BearerAuth:
    """ASGI middleware: every HTTP path but ``OPEN_PATHS`` wants ``Authorization: Bearer
    KEY``, compared in constant time (``hmac.compare_digest``); else 401."""

    def __init__(self, app, key: str, metrics: ServeMetrics | None = None):
        self.app, self.metrics = app, metrics
        self._want = f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or hmac.compare_digest(
                dict(scope["headers"]).get(b"authorization", b""), self._want):
            return await self.app(scope, receive, send)
        if self.metrics is not None:
            self.metrics.rejected("unauthorized")
        body = json.dumps({"detail": "this server wants an API key: send the header "
                                     "'Authorization: Bearer KEY'"}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def model_card(info, options: ServeOptions) -> dict:
    """GET /v1/model: the artifact's metadata exactly (``ArtifactInfo.to_props``; it
    round-trips through ``ArtifactInfo.from_props``), what it takes, and the limits."""
    return {"metadata": info.to_props(), "sample_shape": list(info.sample_shape),
            "data_range": list(info.data_range), "num_classes": info.num_classes,
            "null_label": info.null_label, "guidance_input": info.guidance_input,
            "tensors": {t.name: list(t.shape) for t in info.tensors},
            "default_solver": info.default_solver, "solvers": list(SOLVER_NAMES),
            "formats": list(FORMATS),
            "limits": {"max_n": options.max_n, "max_steps": options.max_steps,
                       "max_batch": options.max_batch, "queue": options.queue,
                       "deadline": options.deadline},
            "batching": options.batching}


async def settle(ticket: Ticket, request, scheduler: Scheduler, deadline_at: float) -> None:
    """Wait for the ticket without blocking the event loop; take it out of the batch
    when its deadline passes or its client disconnects."""
    loop, done = asyncio.get_running_loop(), asyncio.Event()
    ticket.add_done_callback(lambda _: loop.call_soon_threadsafe(done.set))
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), POLL_S)
        except asyncio.TimeoutError:  # (the builtin TimeoutError only from Python 3.11)
            if time.monotonic() >= deadline_at:
                scheduler.cancel(ticket, "deadline", ticket.late())
            elif await request.is_disconnected():
                scheduler.cancel(ticket, "disconnected", "the client went away")


def make_app(denoiser: Denoiser, options: ServeOptions | None = None):
    """The FastAPI app serving ``denoiser`` (any backend: ``runtime.load``'s result)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exception_handlers import request_validation_exception_handler
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, Response
    except ImportError:
        raise missing_extra("fastapi", "serve") from None

    options = ServeOptions() if options is None else options
    info = denoiser.info
    limits = Limits(options.max_n, options.max_steps, options.deadline)
    metrics = ServeMetrics(options.max_batch)
    scheduler = Scheduler(denoiser, options.max_batch, options.queue, options.batching,
                          options.gather_s, metrics)
    metrics.watch(scheduler)
    SampleRequest = request_model(info, limits)

    @asynccontextmanager
    async def lifespan(_app):
        scheduler.start()
        try:
            yield
        finally:
            await asyncio.to_thread(scheduler.close)

    app = FastAPI(title="edgediff serve", version=__version__, lifespan=lifespan,
                  description="Samples from one diffusion artifact, with step-level "
                              "continuous batching (docs/serve.md).")
    app.state.scheduler, app.state.metrics, app.state.options = scheduler, metrics, options

    def drain() -> None:
        running, waiting = scheduler.stop_admitting()
        log.info("draining: new requests get 503; %d running and %d waiting requests will "
                 "finish", running, waiting)

    app.state.drain = drain
    if options.api_key:
        app.add_middleware(BearerAuth, key=options.api_key, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError):
        metrics.rejected("invalid")
        return await request_validation_exception_handler(request, exc)

    @app.get("/healthz", summary="Liveness: 200 while serving, 503 while draining")
    async def healthz():
        s = scheduler.stats()
        status = "ok" if scheduler.accepting else "draining"
        return JSONResponse({"status": status, "running": s["running"],
                             "waiting": s["waiting"]}, 200 if status == "ok" else 503)

    @app.get("/v1/model", summary="The artifact's metadata and this server's limits")
    async def model():
        return model_card(info, options)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        body, media = metrics.render()
        return Response(body, media_type=media)

    @app.post("/v1/samples", summary="Draw samples", response_class=Response, responses={
        200: {"content": {"image/png": {}, "application/x-npy": {}, "application/x-npz": {}},
              "description": "The samples"},
        422: {"description": "A field the model or the server cannot take (named in loc)"},
        500: {"description": "The denoiser returned NaN/Inf for this request's rows"},
        503: {"description": "The queue is full (Retry-After) or the server is draining"},
        504: {"description": "The deadline passed"}})
    async def samples(body: SampleRequest, request: Request):
        began = time.monotonic()
        try:
            job = plan_job(info, body.model_dump(), limits)
            fmt = choose_format(info.sample_shape, body.format, request.headers.get("accept"))
        except InvalidFieldError as e:
            metrics.rejected("invalid")
            return JSONResponse({"detail": [{"type": "value_error", "loc": ["body", e.field],
                                             "msg": e.reason}]}, 422)
        try:
            ticket = scheduler.submit(job, job.rows, began + job.deadline)
        except RejectedError as e:
            metrics.rejected(e.reason)
            retry = {"Retry-After": str(RETRY_AFTER_S)} if e.reason == "queue_full" else {}
            return JSONResponse({"detail": str(e)}, 503, headers=retry)
        await settle(ticket, request, scheduler, began + job.deadline)
        outcome, response = await _respond(ticket, job, fmt)
        metrics.finished(outcome, time.monotonic() - began)
        return response

    async def _respond(ticket: Ticket, job, fmt: str):
        error = ticket.error
        if error is None:
            labels = job.condition.labels
            content, media = await asyncio.to_thread(encode, ticket.samples, fmt,
                                                     info.data_range, labels)
            return "ok", Response(content, media_type=media, headers={
                "Content-Disposition": f'inline; filename="samples.{fmt}"',
                "X-Edgediff-Solver": job.settings.solver,
                "X-Edgediff-Steps": str(job.settings.steps)})
        if isinstance(error, RequestCancelledError):
            return error.reason, JSONResponse({"detail": str(error)}, STATUS[error.reason])
        if isinstance(error, NonFiniteOutputError):
            return "failed", JSONResponse({"detail": str(error)}, 500)
        return "failed", JSONResponse({"detail": f"sampling failed: {type(error).__name__}: "
                                                 f"{error}"}, 500)

    return app
