"""The ``segstyle`` console script.

Subcommands are imported lazily from the table below (click's documented LazyGroup pattern), so
``segstyle --help`` and ``segstyle data verify`` start without importing torch or Prefect. Each entry
points at a click command defined next to the library function it wraps.

:func:`main` turns :class:`~segstyle.core.errors.SegstyleError` into one ``segstyle: error: ...`` line on
stderr and a non-zero exit code: users never see a traceback for bad input.
"""

from __future__ import annotations

import importlib
import sys

import click

from segstyle.core.errors import SegstyleError, user_errors

# command name -> "module:attribute"; the attribute is a click.Command or click.Group.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("segstyle.pipelines.data.cli:data", "Fetch, generate, verify and show datasets."),
    "augment": ("segstyle.pipelines.augment:cli", "Preview the joint image/mask augmentation."),
    "train": ("segstyle.pipelines.train:cli", "Train a segmentation model."),
    "evaluate": ("segstyle.pipelines.evaluate:cli", "Evaluate a segmentation checkpoint (metrics + overlays)."),
    "predict": ("segstyle.pipelines.predict:cli", "Predict masks for image files."),
    "train-style": ("segstyle.pipelines.style.train:cli", "Train the feed-forward style network."),
    "stylize": ("segstyle.pipelines.style.stylize:cli", "Stylise images (network or Gatys optimisation)."),
    "train-gan": ("segstyle.pipelines.train_gan:cli", "Train the DCGAN on 64x64 image crops."),
    "inpaint": ("segstyle.pipelines.edit.inpaint:cli", "Remove segmented objects by inpainting (Telea / Navier-Stokes)."),
    "export": ("segstyle.export.cli:export_group", "Export ONNX / FP16 ONNX / torch.export programs and lint for TensorRT."),
    "engine": ("segstyle.export.cli:engine_group", "Build, validate and benchmark inference engines."),
    "bundle": ("segstyle.export.cli:bundle_cmd", "Write the edge-device bundle (ONNX + golden data)."),
    "run": ("segstyle.pipelines.run:cli", "Run the whole pipeline (the main job)."),
    "serve": ("segstyle.pipelines.serve:cli", "Serve the pipeline on a schedule through Prefect."),
}


class LazyGroup(click.Group):
    def __init__(self, *args, lazy: dict[str, tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        if name not in self.lazy:
            return None
        target = self.lazy[name][0]
        module, attr = target.split(":")
        cmd = getattr(importlib.import_module(module), attr)
        self.commands[name] = cmd
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Show help lines without importing every command module.
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segstyle")
def cli() -> None:
    """segstyle: VOC/Pet segmentation and neural style transfer, from versioned data to GPU engines."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exits with :func:`run_cli`'s code."""
    sys.exit(run_cli(argv))


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code, reporting SegstyleError as one line."""
    try:
        with user_errors():  # DVC / Prefect anywhere: one line, never a traceback
            cli.main(args=argv, prog_name="segstyle", standalone_mode=False)
    except SegstyleError as e:
        click.echo(f"segstyle: error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("segstyle: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("segstyle: interrupted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
