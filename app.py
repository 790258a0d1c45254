"""A web page to try a trained checkpoint on your own photos: drop them, see them ranked by quality.

    python app.py --trained_model_file checkpoints/p1q2.pth --arch resnext101_32x8d --resize

loads the model as test_demo.py does (the same options, --onnx too), prints the page's URL and
serves it until Ctrl-C (status 130, as the other scripts' interrupt); linearityiqa/web.py makes the
page. Run with no options, as a Hugging Face Space runs it, it serves the released checkpoint
(checkpoints/p1q2.pth). Needs the app extra (gradio).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading

from linearityiqa.cli.scripts import Advice, exit_status, imports_checked, own_the_pixel_limit

# a missing dependency (gradio: the app extra) is one line, not a traceback
with imports_checked("app.py", __name__):
    from linearityiqa.cli.options import build_parser, given_options, model_file
    from linearityiqa.image_scoring import open_model
    from linearityiqa.options import APP
    from linearityiqa.web import page, served

SCRIPT = "app.py"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(APP, "A web page that ranks photos by their quality scores.")
    args = parser.parse_args(argv)
    defaults = vars(parser.parse_args([]))
    given = given_options(parser, argv)
    own_the_pixel_limit()
    return exit_status(SCRIPT, lambda: serve(args, defaults, given), Advice(interrupted="the page is closed"))


def serve(args: argparse.Namespace, defaults: dict, given: set[str]) -> None:
    """Load the model as test_demo.py does and serve its page until Ctrl-C."""
    spec = model_file(vars(args), defaults=defaults, given=given)
    model = open_model(spec)
    if model.note:
        print(f"{SCRIPT}: note: {model.note}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="linearityiqa-app-") as folder:
        blocks = page(model, model_file=spec.path, max_files=args.max_files, workers=args.num_workers, folder=folder)
        with served(blocks, host=args.host, port=args.port, max_file_size=args.max_file_size) as url:
            print(f"{SCRIPT}: the page is at {url} (Ctrl-C stops it)", flush=True)
            threading.Event().wait()  # until Ctrl-C


if __name__ == "__main__":
    sys.exit(main())
