"""Click options shared by every stage command that reads ``params.yaml``."""

from __future__ import annotations

import functools
from typing import Callable

import click

from segstyle.pipelines.config import load_params


def params_options(f: Callable) -> Callable:
    """Add ``--params PATH`` and ``--profile NAME``; pass the validated :class:`Params` as ``params``.

    Validation happens before the command body runs, so a bad params file or profile fails in one
    line before any work starts.
    """

    @click.option("--params", "params_path", default="params.yaml", show_default=True,
                  type=click.Path(dir_okay=False), help="Parameters file.")
    @click.option("--profile", default=None, help="Profile to use (demo|full); default: the file's `profile`.")
    @functools.wraps(f)
    def wrapper(*args, params_path: str, profile: str | None, **kwargs):
        return f(*args, params=load_params(params_path, profile), **kwargs)

    return wrapper
