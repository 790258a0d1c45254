"""The `linearityiqa` command: one program for what users run, each subcommand one of the paper's scripts
(COMMANDS; docs/deployment.md). A subcommand runs its script in this process's place (os.execv on POSIX),
from a clone or an installed wheel (linearityiqa/paper/): the same options, output, signals and exit statuses.
`score` also takes its images first, without --img. This module imports neither PyTorch nor a
script: `linearityiqa --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence

from linearityiqa import __version__, paper
from linearityiqa.cli.scripts import errors_reported

# Each subcommand's script, and the line `linearityiqa --help` gives it.
COMMANDS = {
    "score": ("test_demo.py", "score images with a trained checkpoint or an ONNX file (test_demo.py)"),
    "test": ("test_dataset.py", "test a checkpoint on a data set: SROCC, PLCC, ... (test_dataset.py)"),
    "train": ("main.py", "train the model with the norm-in-norm loss (main.py)"),
    "export-onnx": ("export_onnx.py", "export a checkpoint to ONNX, for onnxruntime (export_onnx.py)"),
    "make-info": ("make_info.py", "build a data set's info file from its download or a CSV (make_info.py)"),
    "app": ("app.py", "a web page that ranks your photos by their scores (app.py)"),
}
COMMAND_OF_SCRIPT = {script: name for name, (script, _) in COMMANDS.items()}


def get_parser() -> argparse.ArgumentParser:
    """The command's own parser: the subcommands and --version (a subcommand's --help is its script's)."""
    parser = argparse.ArgumentParser(
        prog="linearityiqa",
        description="LinearityIQA (Li, Jiang, Jiang, ACM MM 2020): image quality scores, training and tests.",
        epilog="Run `linearityiqa COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def script_command(command: str, arguments: Sequence[str]) -> list[str]:
    """The Python command line that runs `command`'s script with `arguments`; where the script is not
    there (an incomplete installation), a ModuleNotFoundError as Python raises it for a module of the package."""
    arguments = list(arguments)
    if command == "score" and arguments and (arguments[0] == "-" or not arguments[0].startswith("-")):
        arguments = ["--img", *arguments]  # linearityiqa score photo.jpg: the images first
    script = paper.FOLDER / COMMANDS[command][0]
    if not script.is_file():
        raise ModuleNotFoundError(f"No module named {script.stem!r}", name=f"linearityiqa.paper.{script.stem}")
    return [sys.executable, str(script), *arguments]


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command that runs one of the paper's scripts (main.py, test_dataset.py, ...): from a clone
    as `python <script>` from the current folder, from an installed wheel as `linearityiqa <command>`."""
    if paper.INSTALLED:
        return shlex.join(["linearityiqa", COMMAND_OF_SCRIPT[script], *argv])
    path = paper.FOLDER / script
    shown = os.path.relpath(path)
    return shlex.join(["python", str(path) if shown.startswith("..") else shown, *argv])


def run_script(script: str, argv: Sequence[str]) -> int:
    """Run one of the paper's scripts with `argv` in a new Python process, as a user would; its exit status."""
    sys.stdout.flush()
    return subprocess.run([sys.executable, str(paper.FOLDER / script), *argv], check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] not in COMMANDS:
        get_parser().parse_args(arguments)  # --help, --version, or argparse's words for what is missing
        return 2  # not reached: each of those exits
    with errors_reported("linearityiqa") as ended:  # an incomplete installation is one line
        command = script_command(arguments[0], arguments[1:])
    if ended.status:
        return ended.status
    sys.stdout.flush()
    if os.name == "posix":
        os.execv(command[0], command)  # the script takes this process's place; no return
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
