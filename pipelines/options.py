"""Click options shared by every stage command that reads ``params.yaml``."""

from __future__ import annotations

import functools
from typing import Callable

import click

from segstyle.pipelines.config import resolve_params


def params_options(f: Callable) -> Callable:
    """Add ``--params PATH`` and ``--profile NAME``; pass the validated :class:`Params` as ``params``.

    Validation happens before the command body runs, so a bad params file or profile fails in one
    line before any work starts. Without ``--params``: ``./params.yaml`` when present, else the
    built-in parameters (the demo profile; :func:`segstyle.pipelines.config.resolve_params`).
    """

    @click.option("--params", "params_path", default=None, type=click.Path(dir_okay=False),
                  help="Parameters file (default: ./params.yaml, else the built-in demo parameters).")
    @click.option("--profile", default=None, help="Profile to use (demo|full); default: the file's `profile`.")
    @functools.wraps(f)
    def wrapper(*args, params_path: str, profile: str | None, **kwargs):
        return f(*args, params=resolve_params(params_path, profile), **kwargs)

    return wrapper
