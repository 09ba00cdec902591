"""How a server runs: one frozen ``ServeOptions``, checked when made, read by the app,
the scheduler and the uvicorn runner (``edgediff.runtime.serve``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgediff.errors import EdgediffError

MODES = ("step", "request", "single")  # the scheduler's batching modes (scheduler.py)
LOOPBACK = "127.0.0.1"


def _whole(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise EdgediffError(f"{name} must be an integer ≥ {low}, got {value!r}")


@dataclass(frozen=True)
class ServeOptions:
    """What the operator chooses:

    - ``host``, ``port``: where uvicorn listens (loopback by default: nothing off this
      machine can reach the server until the operator says so);
    - ``max_batch``: the most rows one denoiser call packs;
    - ``queue``: the most accepted requests waiting to start (past it: 503);
    - ``deadline``: seconds a request may take from arrival to its samples (a request's
      own ``deadline`` can only shorten it; past it: 504);
    - ``max_n``, ``max_steps``: the largest ``n`` and ``steps`` one request may ask for;
    - ``api_key``: when set, every endpoint but /healthz wants ``Authorization: Bearer KEY``;
    - ``batching``: ``step`` (requests join and leave between denoiser calls),
      ``request`` (a group that started together runs to its end before the next
      starts) or ``single`` (one request at a time);
    - ``gather_s``: how long a tick waits for running requests' next rows.
    """

    host: str = LOOPBACK
    port: int = 8000
    max_batch: int = 16
    queue: int = 256
    deadline: float = 300.0
    max_n: int = 64
    max_steps: int = 1000
    api_key: str | None = None
    batching: str = "step"
    gather_s: float = 0.002

    def __post_init__(self):
        if not isinstance(self.host, str) or not self.host:
            raise EdgediffError(f"host must be an address such as {LOOPBACK}, got {self.host!r}")
        _whole("port", self.port, 0)
        if self.port > 65535:
            raise EdgediffError(f"port must be 0…65535, got {self.port}")
        _whole("max_batch", self.max_batch, 1)
        _whole("queue", self.queue, 1)
        _whole("max_n", self.max_n, 1)
        _whole("max_steps", self.max_steps, 1)
        for name in ("deadline", "gather_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value <= 0:
                raise EdgediffError(f"{name} must be a number of seconds > 0, got {value!r}")
        if self.batching not in MODES:
            raise EdgediffError(f"unknown batching {self.batching!r}; choose one of "
                                f"{', '.join(MODES)}")
        if self.api_key is not None and (not isinstance(self.api_key, str)
                                         or len(self.api_key) < 8 or not self.api_key.isprintable()
                                         or " " in self.api_key):
            raise EdgediffError("the API key must be at least 8 printable characters without "
                                "spaces (e.g. from: python -c \"import secrets; "
                                "print(secrets.token_urlsafe())\")")

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach the server."""
        return self.host in (LOOPBACK, "localhost", "::1")
