"""The one error type a user can cause.

Its message says what was asked, what is possible, and how to fix it; the CLI
prints it as one line and exits non-zero. Bugs are not EdgediffErrors and keep
their tracebacks.
"""


class EdgediffError(Exception):
    """A user-facing error: bad input, a missing extra, an incompatible artifact."""


def missing_extra(module: str, extra: str) -> EdgediffError:
    """The error for an optional dependency that is not installed."""
    return EdgediffError(
        f"{module} is not installed; it comes with the '{extra}' extra: "
        f'pip install "edgediff[{extra}]"'
    )
