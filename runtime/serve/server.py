"""``serve``: the app on uvicorn, with a drain on SIGTERM.

On SIGTERM (or Ctrl-C) the scheduler stops admitting (new requests get 503), uvicorn
stops accepting connections and waits, without a time limit, for the requests in
flight; then the app's shutdown drains the scheduler and the process exits 0. Every
accepted request gets its one response.
"""

from __future__ import annotations

import logging
import signal
import threading

from edgediff.errors import missing_extra
from edgediff.runtime._call import Denoiser
from edgediff.runtime.serve.app import make_app
from edgediff.runtime.serve.serve_options import ServeOptions

log = logging.getLogger(__name__)


def _drained(_sig, _frame) -> None:
    """uvicorn re-raises the signal it stopped for (SIGTERM, SIGINT) once it has shut
    down; by then every request has had its response, so the process ends normally
    (status 0)."""


def serve(denoiser: Denoiser, options: ServeOptions | None = None,
          log_level: str = "info") -> None:
    """Serve ``denoiser`` until SIGTERM or Ctrl-C; returns once drained."""
    try:
        import uvicorn
    except ImportError:
        raise missing_extra("uvicorn", "serve") from None
    options = ServeOptions() if options is None else options
    app = make_app(denoiser, options)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            if not self.should_exit:
                app.state.drain()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=options.host, port=options.port, log_level=log_level,
                            lifespan="on", timeout_graceful_shutdown=None)
    server = _Server(config)
    if threading.current_thread() is not threading.main_thread():
        server.run()  # no signals off the main thread: the caller stops it
        return
    previous = {sig: signal.signal(sig, _drained) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
