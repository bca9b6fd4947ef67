"""One exception type for every user-facing failure.

Library code raises :class:`SegstyleError` with a message that names the offending file or value;
``segstyle.pipelines.cli.main`` prints it as a single line and exits non-zero. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class SegstyleError(Exception):
    """A problem with the user's input or environment, reported as one line."""

    exit_code = 1


class UsageError(SegstyleError):
    """Bad parameters or arguments (exit code 2, like click's own usage errors)."""

    exit_code = 2
