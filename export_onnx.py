"""Export a trained checkpoint to ONNX, to score images in onnxruntime without PyTorch.

    python export_onnx.py --trained_model_file checkpoints/p1q2.pth --arch resnext101_32x8d --resize -o model.onnx
    python test_demo.py --onnx model.onnx --img data/1000.JPG

The model's settings and resize are taken as test_demo.py takes them: from the checkpoint where
it records them, else from the options (the authors' files record none). The file is written
whole or not at all (linearityiqa/onnx_export.py says what it holds). Exit status: 0 written; 1 a
mistake, which one line names (nothing is written); 2 bad options (argparse); 70 a bug.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings

from linearityiqa.cli.scripts import exit_status, imports_checked

with imports_checked("export_onnx.py", __name__):  # a missing dependency is one line, not a traceback
    from linearityiqa.api import load
    from linearityiqa.cli.options import get_export_parser
    from linearityiqa.options import MODEL_SETTINGS
    from linearityiqa.records.checkpoint import RELEASED_CHECKPOINT
    from linearityiqa.records.writing import check_writable, refuse_inputs

SCRIPT = "export_onnx.py"
# The options that build the model and size its images, as test_demo.py takes them.
SETTINGS = (*MODEL_SETTINGS, "resize", "resize_size_h", "resize_size_w")


def main(argv: list[str] | None = None) -> int:
    args = get_export_parser().parse_args(argv)
    return exit_status(SCRIPT, lambda: export(args))


def export(args: argparse.Namespace) -> None:
    """Check --output, load the checkpoint on the CPU, write the ONNX file and say how to use it."""
    from linearityiqa.onnx_export import export_onnx  # here: without the [export] extra, one line says so

    checkpoint = args.trained_model_file or RELEASED_CHECKPOINT
    refuse_inputs(args.output, [("checkpoint", checkpoint)], option="--output")
    check_writable(args.output, what="the ONNX model", advice="pass another --output")
    with warnings.catch_warnings(record=True) as notes:  # e.g. load's note on an authors' file without --resize
        warnings.simplefilter("always")
        model = load(checkpoint, **{name: vars(args)[name] for name in SETTINGS}, device="cpu", opt_level="O0")
    for note in notes:
        print(f"{SCRIPT}: note: {note.message}", file=sys.stderr)
    metadata = export_onnx(model, args.output)
    sizing = "images of any size"
    if metadata["resize"] == "true":
        sizing = f"images resized to {metadata['resize_size_h']}x{metadata['resize_size_w']}"
    command = f"python test_demo.py --onnx {shlex.quote(args.output)} --img ..."
    print(f"wrote {args.output} ({metadata['arch']}, {sizing}): score with {command}")


if __name__ == "__main__":
    sys.exit(main())
