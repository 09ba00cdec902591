"""The request body of ``POST /v1/samples`` as a pydantic model, for FastAPI's parsing
and the OpenAPI page at /docs. Built per app (``request_model``), so the page states
this server's limits and this model's conditioning; pydantic is imported only then.
Types and ranges are checked here; what depends on the model (solver options, labels,
tensor shapes, guidance) is checked by ``edgediff.runtime.serve.jobs.plan_job``.

(No ``from __future__ import annotations`` here: pydantic reads the fields' types
from the class body, whose names are local to ``request_model``.)"""

from typing import Any

from edgediff.catalogue import SOLVER_NAMES
from edgediff.runtime.serve.encoding import FORMATS
from edgediff.runtime.serve.jobs import Limits


def _conditioning(info) -> str:
    parts = []
    if info.num_classes:
        parts.append(f"classes 0…{info.num_classes - 1}"
                     + (f", {info.null_label} for none" if info.null_label is not None else ""))
    parts.extend(f"tensor {t.describe()}" for t in info.tensors)
    return "; ".join(parts) or "none: this model is unconditional"


def request_model(info, limits: Limits) -> type:
    """The ``SampleRequest`` model for one artifact and one server's limits."""
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, Field

    default = info.default_solver
    fmt = Literal[FORMATS]  # type: ignore[valid-type]

    class SampleRequest(BaseModel):
        """Samples 0…n−1 of ``seed``: sample k draws its own noise stream (seed, k), so
        the result does not depend on the other requests sharing the server."""

        model_config = ConfigDict(extra="forbid")

        n: int = Field(1, ge=1, le=limits.max_n,
                       description=f"Number of samples (at most {limits.max_n}).")
        seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the noise streams.")
        solver: str | None = Field(
            None, description=f"Step loop, one of {', '.join(SOLVER_NAMES)}. Default: the "
                              f"model's ({default.get('solver')}).")
        steps: int | None = Field(
            None, ge=1, le=limits.max_steps,
            description=f"Number of steps (at most {limits.max_steps}). Default: the "
                        f"solver's, or the model's for its default solver.")
        options: dict[str, Any] = Field(
            default_factory=dict,
            description="Solver and grid options by name, as in the catalogue "
                        "(docs/solvers.md), e.g. {\"S_churn\": 10} for edm, {\"grid\": "
                        "\"lambda\"}, or {\"sigmas\": [80, 1.38]} for an exact grid.")
        class_label: int | list[int] | None = Field(
            None, description=f"Class of every sample, or one per sample ({_conditioning(info)}).")
        guidance: float | None = Field(
            None, ge=0, description="Classifier-free guidance scale w: D = D_u + w·(D_c − "
                                    "D_u); 1: the conditional model alone.")
        guidance_interval: tuple[float, float] | None = Field(
            None, description="[LO, HI]: guide only for LO < σ ≤ HI.")
        cond: dict[str, Any] | None = Field(
            None, description="Tensor conditioning by input name: a nested list of the "
                              "declared shape (every sample) or [n, *shape] (one per sample).")
        format: fmt | None = Field(  # type: ignore[valid-type]
            None, description="Response body: png (an image, or a grid for n > 1; image "
                              "models), npy or npz (float32 in the model's data range). "
                              "Default: from the Accept header, else png for image models "
                              "and npy for others.")
        deadline: float | None = Field(
            None, gt=0, description=f"Seconds this request may take; at most the server's "
                                    f"{limits.deadline:g}. Past it: 504.")

    return SampleRequest
