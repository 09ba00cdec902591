"""The ``edgediff`` command: a click group whose subcommands load lazily, so
``edgediff --help`` never imports torch (click docs, "Lazily Loading Subcommands")."""

from __future__ import annotations

import importlib

import click

from edgediff import __version__
from edgediff.errors import EdgediffError, missing_extra_for

# subcommand -> (module under edgediff.cli, one-line help shown by --help)
_COMMANDS = {
    "build": ("build", "Build a TensorRT engine from an exported ONNX file."),
    "demo": ("demo", "Sample the bundled model with several solvers and compare them."),
    "export": ("export", "Export a model to ONNX with its preconditioning folded in."),
    "generate": ("generate", "Generate many samples as resumable shards, here or on Ray."),
    "info": ("info", "Show what a model, an ONNX artifact or a TensorRT plan holds."),
    "sample": ("sample", "Sample an exported model with the torch-free runtime."),
    "serve": ("serve", "Serve an artifact over HTTP, batching requests step by step."),
    "bench": ("bench", "Compare solvers on one model by speed and quality."),
    "check": ("check", "Compare an ONNX artifact with its torch model (and a plan with it)."),
    "train": ("train", "Train a denoiser on a local dataset (digits, 2-D mixture)."),
    "tune-grid": ("tune_grid", "Tune a solver's σ grid for one artifact (a sidecar file)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(_COMMANDS)

    def get_command(self, ctx, name):
        if name not in _COMMANDS:
            return None
        module = importlib.import_module(f"edgediff.cli.{_COMMANDS[name][0]}")
        return module.command

    def format_commands(self, ctx, formatter):
        rows = [(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgediffError as e:  # user errors: one line, non-zero exit, no traceback
            error = click.ClickException(str(e))
            error.exit_code = getattr(e, "exit_code", 1)  # RefusedFileError: 2
            raise error from None
        except ModuleNotFoundError as e:  # the one place a missing extra becomes its line
            missing = missing_extra_for(e)
            if missing is None:
                raise
            raise click.ClickException(str(missing)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="edgediff")
def main() -> None:
    """edgediff: trained diffusion denoisers to fast, portable inference.

    \b
    Example:
      edgediff demo            # sample, compare solvers, write plots
    """
