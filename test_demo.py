"""Score the quality of images with a trained checkpoint.

One image prints the paper's line, the fused head mapped with the checkpoint's k[0], b[0]:

    python test_demo.py --img data/1000.JPG --resize --arch resnext101_32x8d --trained_model_file checkpoints/p1q2.pth

A folder, a glob pattern or - (paths on stdin, one per line) is scored in batches and
written as CSV (image,score,error) to --output or stdout (also --output -), in input order,
after a first line, "# score: ...", that says what the scores are on (records/scale.py). Exit status:
0 all images scored; 1 nothing scored (the error is printed); 2 bad options (argparse);
3 some images could not be scored (their rows name the error); 70 a bug (cli/scripts.py).

File names are taken as the operating system gives them: a name that is not valid UTF-8 (in a
folder, or on stdin) is scored, and written to the CSV as its own bytes (Python's
surrogateescape), so the row names the same file; read such a CSV with
errors="surrogateescape".
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import io
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO


@contextlib.contextmanager
def collector_paused(pause: bool) -> Iterator[None]:
    """Imports with Python's cycle collector off, their objects then frozen out of its reach (gc.freeze).

    torch and torchvision create millions of long-lived objects while they import; the collector
    scans them over and over as they appear, and once more as Python exits: 1.2 of the 3.9 s
    that one image takes with resnet50 on a CPU. Only the script pauses it: a module that
    imports this one keeps its collector as it was.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


PAUSE_COLLECTOR = __name__ == "__main__"

with collector_paused(PAUSE_COLLECTOR):
    from linearityiqa.cli.options import get_demo_parser, given_options
    from linearityiqa.cli.scripts import exit_status, own_the_pixel_limit, report_mistake
    from linearityiqa.data.decoding import ImageSizing
    from linearityiqa.errors import ConfigError
    from linearityiqa.image_scoring import Backend, ImageScore, is_single_image, list_images, score_files
    from linearityiqa.records.scale import TrainingScale, score_comment
    from linearityiqa.records.writing import check_writable, refuse_inputs, replacing

SCRIPT = "test_demo.py"
EXIT_SOME_FAILED = 3
OUTPUT_ADVICE = "pass another --output"
STDOUT = "-"  # --output -: the CSV on standard output, as --img - reads standard input
# how a file name that is not valid UTF-8 is written: its bytes as they are (PEP 383)
NAMES = "surrogateescape"
# What an ONNX model records itself, and PyTorch's options: not for --onnx.
NOT_WITH_ONNX = (
    "trained_model_file", "arch", "pool", "use_bn_end", "P6", "P7", "resize", "resize_size_h", "resize_size_w",
    "device", "opt_level",
)  # fmt: skip


@dataclass(frozen=True)
class Model:
    """What scores the images: the backend, how images are sized for it, the file it was read
    from (what it is, its path), the images per batch and the scale of its scores."""

    backend: Backend
    sizing: ImageSizing
    source: tuple[str, str]
    batch_size: int
    scale: TrainingScale | None


def main(argv: list[str] | None = None) -> int:
    parser = get_demo_parser()
    args = parser.parse_args(argv)
    defaults = vars(parser.parse_args([]))
    given = given_options(parser, argv)
    own_the_pixel_limit()
    return exit_status(SCRIPT, lambda: score(args, defaults=defaults, given=given))


def score(args: argparse.Namespace, *, defaults: dict, given: set[str]) -> int:
    """Score the images --img stands for; the exit status."""
    # --output asks for CSV whatever --img is; without it one image file gets the paper's line.
    single = is_single_image(args.img_path) and args.output is None
    # bytes, where the stream has them: the names as the operating system gave them
    paths = list_images(args.img_path, stdin=getattr(sys.stdin, "buffer", sys.stdin))
    model = onnx_model(args, given) if args.onnx else torch_model(args, defaults)
    if args.output not in (None, STDOUT):
        check_output(args.output, model=model.source, paths=paths)
    results = score_files(
        model.backend,
        paths,
        sizing=model.sizing,
        batch_size=model.batch_size,
        max_pixels=args.max_pixels,
        workers=args.num_workers,
        progress=not single and (args.pbar or sys.stderr.isatty()),
    )
    if single:
        return print_score(results[0])
    write_scores(results, args.output, comment=score_comment(model.scale))
    return report_failures(results)


def torch_model(args: argparse.Namespace, defaults: dict) -> Model:
    """The checkpoint's model in PyTorch, imported here: with --onnx PyTorch is never loaded."""
    with collector_paused(PAUSE_COLLECTOR):
        from linearityiqa.acceleration import evaluation_batch_size, resolve_device
        from linearityiqa.records.checkpoint import MODEL_SETTINGS, RELEASED_CHECKPOINT
        from linearityiqa.scoring import TorchBackend, image_sizing, load_scorer, resize_note

    path = args.trained_model_file or RELEASED_CHECKPOINT
    scorer = load_scorer(
        path,
        requested={name: getattr(args, name) for name in MODEL_SETTINGS},
        defaults=defaults,
        device=resolve_device(args.device),
        opt_level=args.opt_level,
    )
    sizing = image_sizing(
        scorer.recorded,
        resize=args.resize,
        resize_size_h=args.resize_size_h,
        resize_size_w=args.resize_size_w,
        defaults=defaults,
        max_pixels=args.max_pixels,
    )
    note = resize_note(scorer, sizing, path)
    if note:
        print(f"{SCRIPT}: note: {note}", file=sys.stderr)
    batch_size = evaluation_batch_size(args.eval_batch_size, scorer.device)
    return Model(TorchBackend(scorer), sizing, ("checkpoint", path), batch_size, scorer.scale)


def onnx_model(args: argparse.Namespace, given: set[str]) -> Model:
    """The exported model in onnxruntime; its file records the model and the resize."""
    with collector_paused(PAUSE_COLLECTOR):
        from linearityiqa.onnx_scoring import load_onnx

    clashing = [name for name in NOT_WITH_ONNX if name in given]
    if clashing:
        options = ", ".join(f"--{name}" for name in clashing)
        raise ConfigError(
            f"{options}: an ONNX model records its model and resize, and runs on the CPU in onnxruntime; "
            f"drop them (export again with export_onnx.py to change the model or its resize)"
        )
    backend = load_onnx(args.onnx)
    # one image at a time by default, as on PyTorch's CPU path, where it measured fastest
    return Model(backend, backend.sizing(), ("ONNX model", args.onnx), args.eval_batch_size or 1, backend.scale())


def check_output(output: str, *, model: tuple[str, str], paths: Sequence[str]) -> None:
    """Before scoring: --output is none of the files read, and its folder takes a new file."""
    inputs = [model, *(("image", path) for path in paths)]
    refuse_inputs(output, inputs, option="--output")
    check_writable(output, what="the scores", advice=OUTPUT_ADVICE)


def write_scores(results: Sequence[ImageScore], output: str | None, *, comment: str) -> None:
    """The CSV on standard output, or as the file --output names, written whole or not at all."""
    if output in (None, STDOUT):
        with names_as_bytes(sys.stdout) as stdout:
            write_csv(results, stdout, comment=comment)
        return
    with replacing(output, what="the scores", advice=OUTPUT_ADVICE, newline="", errors=NAMES) as file:
        write_csv(results, file, comment=comment)


@contextlib.contextmanager
def names_as_bytes(stream: TextIO) -> Iterator[TextIO]:
    """`stream` as UTF-8 text in which file names that are not valid UTF-8 keep their own bytes."""
    if not hasattr(stream, "buffer"):  # a stream of str only (io.StringIO) takes any str as it is
        yield stream
        return
    stream.flush()
    wrapper = io.TextIOWrapper(stream.buffer, encoding="utf-8", errors=NAMES, newline="", write_through=True)
    try:
        yield wrapper
    finally:
        wrapper.flush()
        wrapper.detach()  # the stream's own buffer stays open


def write_csv(results: Sequence[ImageScore], file: TextIO, *, comment: str) -> None:
    """`comment`, what the scores mean, then one row image,score,error per image; a failed image
    has no score, a scored one no error."""
    file.write(comment + "\n")
    writer = csv.writer(file, lineterminator="\n")
    writer.writerow(["image", "score", "error"])
    writer.writerows(
        [result.path, "" if result.score is None else result.score, result.error or ""] for result in results
    )


def print_score(result: ImageScore) -> int:
    """The paper's line for one image; an image that cannot be scored is an error."""
    if result.error:
        return report_mistake(SCRIPT, result.error)
    print(f"The image quality score is {result.score}")
    return 0


def report_failures(results: Sequence[ImageScore]) -> int:
    """Warn on stderr about each image without a score; the exit status."""
    failed = [result for result in results if result.error]
    for result in failed:
        print(f"{SCRIPT}: warning: {result.error}", file=sys.stderr)
    if not failed:
        return 0
    print(f"{SCRIPT}: {len(failed)} of {len(results)} images could not be scored", file=sys.stderr)
    return EXIT_SOME_FAILED


if __name__ == "__main__":
    sys.exit(main())
