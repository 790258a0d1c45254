"""How far the paper's loss is from main.py's top: the project's frames on the stack when a
one-epoch run first calls `norm_loss_with_normalization`, and the files they are in.

    python -m benchmarks.reading_path

A reader who opens main.py to find the loss follows these calls. The CPU-sized run (synthetic
KonIQ-10k, resnet18 from scratch) runs main.py as a script (`runpy`), so its module frame counts
too; frames of installed packages (PyTorch, ignite) are left out.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import tempfile
import traceback
from pathlib import Path
from types import FrameType

REPOSITORY = Path(__file__).resolve().parents[1]
MAIN_MODULE = ("main.py", "<module>")


def project_frames(frame: FrameType | None) -> list[tuple[str, str]]:
    """(file relative to the repository, function) of each project frame from main.py's module
    frame in, outermost first: what calls main.py (this script, a test) is left out."""
    frames = []
    for caller, _ in traceback.walk_stack(frame):
        path = Path(caller.f_code.co_filename).resolve()
        if path.is_relative_to(REPOSITORY) and not path.is_relative_to(REPOSITORY / ".venv"):
            frames.insert(0, (str(path.relative_to(REPOSITORY)), caller.f_code.co_name))
    return frames[frames.index(MAIN_MODULE) :] if MAIN_MODULE in frames else frames


def frames_to_loss(argv: list[str]) -> list[tuple[str, str]]:
    """Run main.py with `argv` and return the project frames at the loss's first call."""
    import IQAloss

    target = IQAloss.norm_loss_with_normalization.__code__
    seen: list[tuple[str, str]] = []

    def watch(frame: FrameType, event: str, _arg) -> None:
        if event == "call" and frame.f_code is target and not seen:
            seen.extend(project_frames(frame))
            sys.setprofile(None)

    sys.argv = ["main.py", *argv]
    sys.setprofile(watch)
    try:
        runpy.run_path(str(REPOSITORY / "main.py"), run_name="__main__")
    except SystemExit as ended:
        if ended.code:
            raise RuntimeError(f"main.py ended with status {ended.code}") from None
    finally:
        sys.setprofile(None)
    return seen


def small_run(folder: Path) -> list[str]:
    """main.py's options for a one-epoch run on a synthetic KonIQ-10k made in `folder`."""
    from linearityiqa.cli.quickstart import synthetic_koniq

    koniq = synthetic_koniq(folder, count=24, width=96, height=64, seed=0)
    return [
        *koniq, "--resize", "-rs_h", "64", "-rs_w", "96", "--arch", "resnet18", "--pretrained", "none", "-bs", "4",
        "-e", "1", "--num_workers", "0", "--loss_type", "Lp", "--trained_model_file", str(folder / "model.pth"),
        "--results_dir", str(folder / "results"), "--log_dir", str(folder / "runs"),
    ]  # fmt: skip


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory() as folder:  # every file of the run goes there (small_run's options)
        frames = frames_to_loss(small_run(Path(folder)))
    for depth, (path, function) in enumerate(frames, 1):
        print(f"{depth:2d}  {path}:{function}")
    print(f"{len(frames)} project frames in {len({path for path, _ in frames})} files")


if __name__ == "__main__":
    main()
