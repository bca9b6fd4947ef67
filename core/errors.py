"""One exception type for every user-facing failure, and one way to shorten any exception to a line.

Library code raises :class:`SegstyleError` with a message that names the offending file or value;
``segstyle.pipelines.cli.main`` prints it as a single line and exits non-zero. Anything else is a bug and
keeps its traceback.

:func:`first_line` is the only place that turns a foreign exception (DVC, Prefect, ONNX, torch) into
text for such a line. Why one helper: the ad-hoc ``str(e).splitlines()[0]`` it replaces raises
IndexError on an exception with an empty message, i.e. a traceback from inside the error handling.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


class SegstyleError(Exception):
    """A problem with the user's input or environment, reported as one line."""

    exit_code = 1


class UsageError(SegstyleError):
    """Bad parameters or arguments (exit code 2, like click's own usage errors)."""

    exit_code = 2


class RefusedError(SegstyleError):
    """An artifact refused as not what was signed or shipped (exit code 2, the code a bundle's own
    ``check.py`` refuses with, so scripts on a device and on the host read the same answer)."""

    exit_code = 2


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first non-blank line of ``str(exc)`` (the exception's type name when it has no message).

    ``limit`` truncates the line (with ``...``) for messages embedded in reports. Never raises.
    """
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not hide the original error
        text = ""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or type(exc).__name__
    if limit is not None and len(line) > limit:
        line = line[: max(limit - 3, 0)] + "..."
    return line


#: Libraries whose exceptions describe the user's repository or environment (a broken ``dvc.yaml``, a
#: lock, an unreachable Prefect API), not a bug in segstyle: shown as one line by every command.
FOREIGN = ("dvc", "dvc_data", "dvc_objects", "scmrepo", "prefect", "httpx", "httpcore")


def as_user_error(exc: BaseException) -> SegstyleError | None:
    """``exc`` as one :class:`SegstyleError` line when it comes from DVC or Prefect, else None (a bug:
    keep the traceback)."""
    if isinstance(exc, SegstyleError):
        return exc
    top = (type(exc).__module__ or "").split(".")[0]
    if top in FOREIGN:
        err = SegstyleError(f"{top}: {type(exc).__name__}: {first_line(exc)}")
        err.__cause__ = exc
        return err
    return None


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Re-raise a DVC/Prefect exception from the block as one :class:`SegstyleError` line (see
    :func:`as_user_error`); anything else, a bug included, passes through unchanged. The one place
    ``segstyle`` commands and their library entry points (``run.execute``, ``serve``) convert errors."""
    try:
        yield
    except SegstyleError:
        raise
    except Exception as e:
        err = as_user_error(e)
        if err is None:
            raise
        raise err from None
