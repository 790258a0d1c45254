"""Score the quality of images with a trained checkpoint (docs/testing.md; at scale, docs/scale.md).

One image prints the paper's line, the fused head mapped with the checkpoint's k[0], b[0]:

    python test_demo.py --img data/1000.JPG --resize --arch resnext101_32x8d --trained_model_file checkpoints/p1q2.pth

A folder, a glob pattern, a CSV or Parquet list of paths, or - (paths on stdin) is scored in batches and written in
input order to --output (CSV, .parquet or a folder of shards), or as CSV to stdout. Exit status: 0 all images scored;
1 nothing scored; 2 bad options; 3 some images not scored (their rows name the error); 70 a bug; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import Iterator, Sequence

from linearityiqa.cli.scripts import Advice, exit_status, imports_checked, own_the_pixel_limit, report_mistake


@contextlib.contextmanager
def collector_paused(pause: bool) -> Iterator[None]:
    """Imports with Python's cycle collector off, their objects then frozen out of its reach: torch's
    imports create millions of long-lived objects that it would scan over and over (1.2 of the 3.9 s
    of one image with resnet50 on a CPU). Only the script pauses it, not a module importing this one.
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

# a missing dependency is one line, not a traceback
with imports_checked("test_demo.py", __name__), collector_paused(PAUSE_COLLECTOR):
    from linearityiqa.cli.options import get_demo_parser, given_options, model_file
    from linearityiqa.errors import ConfigError
    from linearityiqa.image_scoring import (
        ONNX,
        Backend,
        ImageScore,
        ModelFile,
        is_path_list,
        is_single_image,
        list_images,
        open_model,
        score_windows,
    )
    from linearityiqa.records.scale import score_meaning
    from linearityiqa.records.score_output import ScoringRun, file_sha256, paths_sha256, score_writer
    from linearityiqa.records.score_rows import NAMES, csv_header, csv_rows
    from linearityiqa.records.writing import refuse_inputs

SCRIPT = "test_demo.py"
EXIT_SOME_FAILED = 3
STDOUT = "-"  # --output -: the CSV on standard output, as --img - reads standard input


def main(argv: list[str] | None = None) -> int:
    parser = get_demo_parser()
    args = parser.parse_args(argv)
    defaults = vars(parser.parse_args([]))
    given = given_options(parser, argv)
    own_the_pixel_limit()
    table = args.output not in (None, STDOUT)
    advice = Advice(interrupted="pass --resume to go on from the rows written" if table else None)
    return exit_status(SCRIPT, lambda: score(args, defaults=defaults, given=given), advice)


def score(args: argparse.Namespace, *, defaults: dict, given: set[str]) -> int:
    """Score the images --img stands for; the exit status."""
    # --output asks for a table whatever --img is; without it one image file gets the paper's line.
    single = is_single_image(args.img_path) and args.output is None
    check_table_options(args, given, single=single)
    # bytes, where the stream has them: the names as the operating system gave them
    paths = list_images(args.img_path, stdin=getattr(sys.stdin, "buffer", sys.stdin))
    with collector_paused(PAUSE_COLLECTOR):
        spec = model_file(vars(args), defaults=defaults, given=given)
        model = open_model(spec)  # on the driver too with --ray: its errors are one line, before the cluster starts
    if model.note:
        print(f"{SCRIPT}: note: {model.note}", file=sys.stderr)
    if single:
        [result] = next(windows(args, spec, model, paths, start=0, window=1))
        if result.error:
            return report_mistake(SCRIPT, result.error)
        print(f"The image quality score is {result.score}")  # the paper's line
        return 0
    if args.output in (None, STDOUT):
        return write_to_stdout(args, spec, model, paths)
    listed = [("list of images", args.img_path)] if is_path_list(args.img_path) else []
    inputs = [(spec.kind, spec.path), *listed, *(("image", path) for path in paths)]
    refuse_inputs(args.output, inputs, option="--output")
    run = scoring_run(args, spec, model, paths)
    with on_ray(args.ray), score_writer(args.output, run, paths=paths, resume=args.resume) as writer:
        if writer.finished:
            print(f"{SCRIPT}: --resume: the run finished; its scores are in {args.output}", file=sys.stderr)
            return 0
        for note in writer.notes:
            print(f"{SCRIPT}: note: {note}", file=sys.stderr)
        for window in windows(args, spec, model, paths, start=writer.done, window=writer.run.window):
            writer.write(window)
            warn_failures(window)
        writer.finish()
    return report_failures(writer.failed, len(paths), model)


def check_table_options(args: argparse.Namespace, given: set[str], *, single: bool) -> None:
    """The options of a table of scores, refused where they cannot apply."""
    if args.resume and args.output in (None, STDOUT):
        raise ConfigError("--resume goes on from the partial output beside --output: pass --output FILE")
    if single and ({"heads", "ray", "ray_workers"} & given):
        raise ConfigError("--heads, --ray and --ray_workers make a table of scores: pass --output FILE too")
    if "ray_workers" in given and args.ray is None:
        raise ConfigError("--ray_workers is the number of workers of --ray: pass --ray too")


def scoring_run(args: argparse.Namespace, spec: ModelFile, model: Backend, paths: list[str]) -> ScoringRun:
    return ScoringRun(
        model=f"{spec.kind} {spec.path}",
        model_sha256=file_sha256(spec.path),
        precision="float32 (onnxruntime)" if spec.kind == ONNX else f"--opt_level {spec.opt_level}",
        resize=model.sizing.tag(),
        max_pixels=args.max_pixels,
        images=len(paths),
        images_sha256=paths_sha256(paths),
        heads=args.heads,
        window=args.window,
        scale=score_meaning(model.scale),
    )


def on_ray(address: str | None) -> contextlib.AbstractContextManager:
    """Connected to the cluster --ray names while the block runs; nothing without --ray."""
    if address is None:
        return contextlib.nullcontext()
    from linearityiqa.ray_scoring import ray_cluster

    return ray_cluster(address or None)


def windows(
    args: argparse.Namespace, spec: ModelFile, model: Backend, paths: list[str], *, start: int, window: int
) -> Iterator[list[ImageScore]]:
    """The results of paths[start:] in pieces, in this process or on Ray."""
    common = {"heads": args.heads, "start": start, "window": window}
    if args.ray is not None:
        from linearityiqa.ray_scoring import ray_windows

        return ray_windows(spec, paths, workers=args.ray_workers, **common)
    progress = len(paths) > 1 and (args.pbar or sys.stderr.isatty())
    return score_windows(model, paths, workers=args.num_workers, progress=progress, **common)


def write_to_stdout(args: argparse.Namespace, spec: ModelFile, model: Backend, paths: list[str]) -> int:
    failed = 0
    if hasattr(sys.stdout, "reconfigure"):  # as UTF-8, in which names that are not valid UTF-8 keep their own bytes
        sys.stdout.reconfigure(encoding="utf-8", errors=NAMES, newline="")
    with on_ray(args.ray):
        sys.stdout.write(csv_header(heads=args.heads))
        for window in windows(args, spec, model, paths, start=0, window=args.window):
            sys.stdout.write(csv_rows(window, heads=args.heads))
            sys.stdout.flush()
            failed += warn_failures(window)
    return report_failures(failed, len(paths), model)


def warn_failures(results: Sequence[ImageScore]) -> int:
    """Warn on stderr about each image without a score; how many there were."""
    failed = [result for result in results if result.error]
    for result in failed:
        print(f"{SCRIPT}: warning: {result.error}", file=sys.stderr)
    return len(failed)


def report_failures(failed: int, total: int, model: Backend) -> int:
    """What the scores of a table are on, on stderr; the exit status of a run in which `failed` of
    `total` images could not be scored."""
    print(f"{SCRIPT}: scores are {score_meaning(model.scale)}", file=sys.stderr)
    if not failed:
        return 0
    print(f"{SCRIPT}: {failed} of {total} images could not be scored", file=sys.stderr)
    return EXIT_SOME_FAILED


if __name__ == "__main__":
    sys.exit(main())
