"""The page app.py serves: photos dropped on it are scored as test_demo.py scores them and shown
ranked, best first, each placed on the training scale, with the CSV that test_demo.py writes for
them to download. Gradio (the app extra) serves it; no request leaves the machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import os
import tempfile
from collections.abc import Iterator, Sequence

from linearityiqa.errors import ConfigError
from linearityiqa.image_scoring import Backend, ImageScore, score_files
from linearityiqa.records.scale import TrainingScale, score_meaning
from linearityiqa.records.score_output import file_sha256
from linearityiqa.records.score_rows import NAMES, csv_header, csv_rows

# Gradio's settings, made before it is imported: no reports of the page's starts to Gradio's makers, and no run
# history, which offers to save the runs to a Hugging Face bucket.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["GRADIO_RUN_HISTORY"] = "False"
import gradio as gr

STRIP_WIDTH = 320  # pixels of the plot of each row's place on the training scale
# system fonts only: the page loads nothing but from its server
THEME_FONTS = {"font": ["system-ui", "sans-serif"], "font_mono": ["ui-monospace", "monospace"]}
CSS = """
.ranking, .ranking td, .ranking th { border: none !important; padding: 2px 12px; text-align: left; white-space: nowrap }
.ranking tr { border-bottom: 1px solid var(--border-color-primary) }
.ranking .failed td { color: var(--error-text-color); white-space: normal }
"""


def model_card(model: Backend, path: str) -> str:
    """Markdown: the architecture, the resize, the scale of the scores and the file's SHA-256."""
    # a checkpoint's model records the settings it was built with, an ONNX file its metadata
    settings = getattr(model, "settings", None) or model.session.get_modelmeta().custom_metadata_map
    resize = model.sizing.resize_hw
    sizing = f"resized to {resize[1]}x{resize[0]} (width x height)" if resize else "scored at their own size"
    trained = f"trained on {model.scale.dataset}" if model.scale else "the data set it was trained on is not recorded"
    return (
        f"**Model** {settings.get('arch', 'of an unrecorded architecture')}, {trained}; photos {sizing}.  \n"
        f"**Scores** {score_meaning(model.scale)}.  \n"
        f"**File** {html.escape(os.path.basename(path))}, SHA-256 `{file_sha256(path)}`"
        + (f"  \n**Note** {html.escape(model.note)}" if model.note else "")
    )


def results_table(results: Sequence[ImageScore], order: Sequence[int], scale: TrainingScale | None, heads: bool) -> str:
    """HTML: a row per file in `order` (rank, name, score, the heads if asked for, and where the
    score falls on the training scale), a file without a score with its error."""
    scores = [result.score for result in results if result.score is not None]
    axis = (min(scale.mos_min, *scores), max(scale.mos_max, *scores)) if scale and scores else None
    outputs = ["pq6", "pq7", "pq"] if heads else []
    columns = ["#", "photo", "score", *outputs, axis_labels(scale, axis) if axis else ""]
    rows = ["<tr>" + "".join(f"<th>{column}</th>" for column in columns) + "</tr>"]
    for rank, index in enumerate(order, start=1):
        result, name = results[index], html.escape(results[index].path)
        if result.score is None:
            error = f'<td colspan="{len(columns) - 2}">{html.escape(result.error or "")}</td>'
            rows.append(f'<tr class="failed"><td></td><td>{name}</td>{error}</tr>')
            continue
        outputs = [f"{head:.4f}" for head in result.heads] if heads and result.heads else []
        cells = [str(rank), name, f"{result.score:.2f}", *outputs, strip(scale, axis, result.score) if axis else ""]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return f'<p>{legend(scale)}</p><table class="ranking">{"".join(rows)}</table>'


def _x(value: float, axis: tuple[float, float]) -> float:
    low, high = axis
    return 6 + (STRIP_WIDTH - 12) * (value - low) / ((high - low) or 1)


def strip(scale: TrainingScale, axis: tuple[float, float], score: float) -> str:
    """SVG: the training range (lowest to highest MOS) as a band, its mean as a line, the score as a dot."""
    low, high, mean = (_x(value, axis) for value in (scale.mos_min, scale.mos_max, scale.mos_mean))
    return (
        f'<svg width="{STRIP_WIDTH}" height="16" role="img" aria-label="{score:.2f} on the training scale">'
        f'<rect x="{low:.1f}" y="5" width="{high - low:.1f}" height="6" rx="3" fill="#9ab8e6"/>'
        f'<line x1="{mean:.1f}" x2="{mean:.1f}" y1="1" y2="15" stroke="#35557f" stroke-width="2"/>'
        f'<circle cx="{_x(score, axis):.1f}" cy="8" r="5" fill="#e8590c"/></svg>'
    )


def axis_labels(scale: TrainingScale, axis: tuple[float, float]) -> str:
    """SVG: the lowest, mean and highest training MOS, each over its place on the rows' strips."""
    labels = [("start", scale.mos_min), ("middle", scale.mos_mean), ("end", scale.mos_max)]
    texts = "".join(
        f'<text x="{_x(value, axis):.1f}" y="12" text-anchor="{anchor}" font-size="11" fill="currentColor">'
        f"{value:.4g}</text>"
        for anchor, value in labels
    )
    return f'<svg width="{STRIP_WIDTH}" height="16" role="img" aria-label="the training MOS">{texts}</svg>'


def legend(scale: TrainingScale | None) -> str:
    """What the strips show, or that the model records no scale to show them on."""
    if scale is None:
        return "This model does not record the scale of its training scores: the page cannot place its scores on it."
    return (
        f"The bar spans {scale.dataset}'s training MOS from its lowest ({scale.mos_min:.4g}) to its highest "
        f"({scale.mos_max:.4g}), the line marks their mean ({scale.mos_mean:.4g}), the dot is the photo's score."
    )


def answer(
    model: Backend, uploads: Sequence[str], *, heads: bool, workers: int | None, folder: str
) -> tuple[list[tuple[str, str]], str, str]:
    """What the page shows for `uploads`: the photos that have a score best first, each with its
    caption; the table of all of them (HTML); the path of their CSV as test_demo.py writes it,
    written into a new folder in `folder`."""
    scored = score_files(model, uploads, workers=workers, heads=heads)  # batched as test_demo.py batches
    # as test_demo.py gives them for files of these names in its current folder: named by the file name, in errors too
    results = [
        dataclasses.replace(result, path=name, error=result.error.replace(upload, name) if result.error else None)
        for upload, result, name in zip(uploads, scored, map(os.path.basename, uploads))
    ]
    # best first (the highest score, unless the scale says lower is better), then the files without a score
    sign = -1 if model.scale is None or model.scale.higher_is_better else 1
    order = sorted(
        range(len(results)), key=lambda index: (results[index].score is None, sign * (results[index].score or 0))
    )
    gallery = [
        (uploads[index], f"{rank}. {results[index].path}: {results[index].score:.2f}")
        for rank, index in enumerate(order, start=1)
        if results[index].score is not None
    ]
    path = os.path.join(tempfile.mkdtemp(dir=folder), "scores.csv")
    with open(path, "w", newline="", encoding="utf-8", errors=NAMES) as file:
        file.write(csv_header(heads=heads) + csv_rows(results, heads=heads))
    return gallery, results_table(results, order, model.scale, heads), path


def page(model: Backend, *, model_file: str, max_files: int, workers: int | None, folder: str) -> gr.Blocks:
    """The page of `model` (loaded from `model_file`): the CSVs it gives go into `folder`."""

    def rank(uploads: list[str] | None, heads: bool):
        if not uploads:
            return [], "", gr.DownloadButton(visible=False)
        if len(uploads) > max_files:
            message = f"{len(uploads)} files: this page scores at most {max_files} at once (--max_files); drop fewer"
            raise gr.Error(message, print_exception=False)  # the user's to mend, not the server's
        gallery, table, csv_path = answer(model, uploads, heads=heads, workers=workers, folder=folder)
        return gallery, table, gr.DownloadButton(value=csv_path, visible=True)

    with gr.Blocks(title="LinearityIQA") as blocks:
        gr.Markdown("# Photo quality, by LinearityIQA\n" + model_card(model, model_file))
        uploads = gr.File(file_count="multiple", label="Photos: drop them here, or click to pick them")
        heads = gr.Checkbox(label="Show the three heads' outputs before the mapping (pq6, pq7, pq)")
        gallery = gr.Gallery(label="Best first", columns=5, object_fit="contain", height="auto")
        table = gr.HTML()
        download = gr.DownloadButton("Download the scores (CSV, as test_demo.py writes them)", visible=False)
        gr.on([uploads.change, heads.change], rank, [uploads, heads], [gallery, table, download])
    return blocks


@contextlib.contextmanager
def served(blocks: gr.Blocks, *, host: str | None, port: int | None, max_file_size: int) -> Iterator[str]:
    """The page served, one request scored at a time (the others wait in the queue), while the
    block runs; its URL."""
    blocks.queue(default_concurrency_limit=1)
    try:
        _, url, _ = blocks.launch(
            server_name=host,
            server_port=port,
            max_file_size=f"{max_file_size}mb",
            prevent_thread_lock=True,
            quiet=True,
            ssr_mode=False,
            theme=gr.themes.Default(**THEME_FONTS),
            css=CSS,
        )
    except OSError:  # Gradio's words name its own arguments
        where = f"{host or '127.0.0.1'}:{port or 7860}"
        raise ConfigError(
            f"cannot serve the page at {where}: the port is taken, or the address is not this machine's; "
            f"pass another --port or --host"
        ) from None
    try:
        yield url
    finally:
        blocks.close(verbose=False)
