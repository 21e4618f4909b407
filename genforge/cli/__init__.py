"""The genforge command line: the only place that prints or exits; thin adapters over the
Python API, one module per command group.

    genforge list
    genforge train mnist-dcgan train.max_steps=500 --out runs/dcgan1
    genforge train --resume runs/dcgan1
    genforge sample runs/dcgan1 --n 64 --seed 0 --out grid.png
    genforge complete runs/vae1 --input digits.npz --mask bottom-half --out filled.png
    genforge eval runs/dcgan1
    genforge audit runs/tvae1                 # a lower bound on epsilon (tables)
    genforge validate configs/mnist-dcgan.yaml
    genforge inspect grid.png                 # the provenance record, checked
    genforge detect w.png --text t.txt --run runs/gpt1   # the invisible watermarks
    genforge serve runs/dcgan1 runs/gpt1 --api-keys keys.txt  # REST API + page
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from genforge.cli.audit import audit_command
from genforge.cli.common import user_message
from genforge.cli.convert import convert_command
from genforge.cli.eval import eval_command
from genforge.cli.info import list_cmd, validate
from genforge.cli.labelling import detect_command, inspect_command
from genforge.cli.sample import complete, sample_command
from genforge.cli.serve import serve_command
from genforge.cli.train import train

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, sample, complete and evaluate generative models.")

app.command("list")(list_cmd)
app.command("train")(train)
app.command("sample")(sample_command)
app.command("complete")(complete)
app.command("eval")(eval_command)
app.command("audit")(audit_command)
app.command("convert")(convert_command)
app.command("validate")(validate)
app.command("inspect")(inspect_command)
app.command("detect")(detect_command)
app.command("serve")(serve_command)

REPORT = "please report it with the command line and `pip show genforge` output"


def main() -> None:
    """The console entry point: one line for every failure, never a traceback unless asked
    (GENFORGE_DEBUG=1). Exit 2: the input was bad; exit 1: genforge failed."""
    try:
        app(prog_name="genforge", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:
        if (message := user_message(err)) is not None:  # outside a command's own handling
            typer.echo(f"error: {message}", err=True)
            sys.exit(2)
        if os.environ.get("GENFORGE_DEBUG"):
            traceback.print_exc()
        first = " ".join(str(err).split())[:300]
        typer.echo(f"internal error: {type(err).__name__}: {first}; {REPORT} "
                   "(GENFORGE_DEBUG=1 shows the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
