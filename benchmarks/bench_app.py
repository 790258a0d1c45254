"""Time app.py's page against test_demo.py on the same photos with the same model: the page's
answer to a drop of --images JPEGs, its model loaded once (as the server loads it at start), and
the whole command test_demo.py is, as a user runs it.

    python -m benchmarks.bench_app                                  # resnet18, 32 JPEGs of 1024x768, --resize
    python -m benchmarks.bench_app --archs resnet18 --repeats 1 --images 4 --resize_size_h 96 --resize_size_w 128
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks import common
from linearityiqa.cli.options import get_demo_parser, given_options, model_file
from linearityiqa.image_scoring import open_model
from linearityiqa.web import answer, page, served

OPTIONS = {
    "--archs": (["resnet18"], "backbones to time"),
    "--repeats": (3, "timed runs of each way; the best is reported"),
    "--images": (32, "JPEGs dropped on the page at once"),
    **common.SIZES,
}


def seconds_of_each_way(demo: list[str], options: list[str], photos: list[str], repeats: int) -> list[list[float]]:
    """Seconds of test_demo.py's command `demo`, of the page's answer to `photos` and of the same
    over HTTP, the page's model (test_demo.py's `options`) loaded once as app.py loads it; the
    three ways run in turn, `repeats` times, so that a burst of load elsewhere slows them alike."""
    from gradio_client import Client, handle_file

    parser = get_demo_parser()
    args = parser.parse_args(options)
    spec = model_file(vars(args), defaults=vars(parser.parse_args([])), given=given_options(parser, options))
    model = open_model(spec)
    with tempfile.TemporaryDirectory(prefix="bench_app-") as folder:
        scoring = {"workers": None, "folder": folder}
        answer(model, photos[:1], heads=False, **scoring)  # oneDNN prepares its kernels, as on a server's first call
        blocks = page(model, model_file=spec.path, max_files=len(photos), **scoring)
        with served(blocks, host=None, port=None, max_file_size=100) as url:
            client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
            files = [handle_file(photo) for photo in photos]
            ways = [
                lambda: common.run_seconds(demo),
                lambda: answer(model, photos, heads=False, **scoring),
                lambda: client.predict(files, False, api_name="/rank"),
            ]
            return [[common.timed(way)[1] for way in ways] for _ in range(repeats)]


def main(argv: list[str] | None = None) -> None:
    args = common.options_parser(__doc__, OPTIONS).parse_args(argv)
    size = f"{args.resize_size_h}x{args.resize_size_w}"
    with common.demo_files(args, "bench_app-") as (work_dir, _, folder):
        photos = sorted(str(path) for path in Path(folder).iterdir())
        print(f"\n{args.images} JPEGs of {args.width}x{args.height}, --resize to {size}: best of {args.repeats}\n")
        row = common.table("arch", "test_demo.py s", "page's function s", "page over HTTP s", "page / test_demo.py")
        for arch in args.archs:
            _, options = common.scored_model(work_dir, arch, args)
            demo = [*common.DEMO, *options, "--img", str(folder), "-o", str(work_dir / "scores.csv")]
            runs = seconds_of_each_way(demo, options, photos, args.repeats)
            best = [min(seconds) for seconds in zip(*runs)]
            row(arch, *(f"{seconds:.2f}" for seconds in best), f"{best[2] / best[0]:.2f}")


if __name__ == "__main__":
    main()
