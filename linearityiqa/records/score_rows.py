"""What test_demo.py's tables hold: the run that wrote them (`ScoringRun`), and their rows
(image, score, error and, with --heads, pq6, pq7, pq) as CSV text, its first line the header,
and as Parquet files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from linearityiqa.errors import ConfigError
from linearityiqa.image_scoring import ImageScore

COLUMNS = ("image", "score", "error")
HEAD_COLUMNS = ("pq6", "pq7", "pq")
# how a file name that is not valid UTF-8 is written to CSV: its bytes as they are (PEP 383)
NAMES = "surrogateescape"
# the Parquet schema's metadata: what the scores are on (a sentence), and the run (JSON of ScoringRun)
METADATA_SCALE, METADATA_RUN = "linearityiqa.score", "linearityiqa.run"


@dataclass(frozen=True)
class ScoringRun:
    """What a run scores and how: a partial run is continued only by a run that agrees on all of it."""

    model: str  # the model file as messages name it ("checkpoint checkpoints/p1q2.pth")
    model_sha256: str  # the same file under another name is the same model
    precision: str  # --opt_level
    resize: str  # the sizing, ImageSizing.tag()
    max_pixels: int
    images: int  # how many
    images_sha256: str  # of their paths in order
    heads: bool
    window: int  # --window when the run began
    scale: str  # what the scores are on (records/scale.score_meaning)


# What a field's difference is called in the message that refuses a partial run.
_WHAT_DIFFERS = {
    "model_sha256": "model",
    "precision": "precision (--opt_level)",
    "resize": "resize",
    "max_pixels": "--max_pixels",
    "images_sha256": "input list",
    "heads": "--heads",
}


def differences(partial: ScoringRun, run: ScoringRun) -> list[str]:
    """What differs between a partial run and this one, each as "what (partial's; this run's)"."""
    said = []
    for name, what in _WHAT_DIFFERS.items():
        before, now = getattr(partial, name), getattr(run, name)
        if before == now:
            continue
        if name == "model_sha256":
            before, now = f"{partial.model}, sha256 {before[:12]}", f"{run.model}, sha256 {now[:12]}"
        if name == "images_sha256":
            before, now = f"{partial.images} images", f"{run.images} images"
            if partial.images == run.images:
                before, now = "other paths", "these"
        said.append(f"{what} ({before}; this run: {now})")
    return said


def csv_header(*, heads: bool) -> str:
    return _csv_text([COLUMNS + (HEAD_COLUMNS if heads else ())])


def csv_rows(results: Sequence[ImageScore], *, heads: bool) -> str:
    rows = []
    for result in results:
        row: list[object] = [result.path, "" if result.score is None else result.score, result.error or ""]
        rows.append(row + (list(result.heads or ("", "", "")) if heads else []))
    return _csv_text(rows)


def _csv_text(rows: Sequence[Sequence[object]]) -> str:
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


def whole_rows(text: str, *, width: int) -> tuple[list[list[str]], int]:
    """The rows of CSV text that were written whole, and the length of the text they take: rows of
    `width` fields that end with a line end and read back as they were written."""
    rows: list[list[str]] = []
    length = 0
    reader = csv.reader(io.StringIO(text[: text.rfind("\n") + 1], newline=""))
    with contextlib.suppress(csv.Error):  # a quoted name cut short at a line break in it
        for row in reader:
            line = _csv_text([row])
            if len(row) != width or not text.startswith(line, length):
                break
            rows.append(row)
            length += len(line)
    return rows, length


def parquet_schema(run: ScoringRun):
    """The rows' Parquet schema (a failed image's score null, a scored one's error), its metadata scale and run."""
    import pyarrow as pa

    types = [("image", pa.string()), ("score", pa.float64()), ("error", pa.string())]
    types += [(name, pa.float64()) for name in HEAD_COLUMNS] if run.heads else []
    return pa.schema(types, metadata={METADATA_SCALE: run.scale, METADATA_RUN: json.dumps(asdict(run))})


def write_parquet(path: str, results: Sequence[ImageScore], schema) -> None:
    import pyarrow as pa
    import pyarrow.parquet as parquet

    columns = {name: [getattr(result, name if name != "image" else "path") for result in results] for name in COLUMNS}
    for at, name in enumerate(schema.names[len(COLUMNS) :]):  # the heads' columns, if any
        columns[name] = [result.heads[at] if result.heads else None for result in results]
    parquet.write_table(pa.table(columns, schema=schema), path)


def columns_named(schema) -> str:
    return ", ".join(f"{field.name} ({field.type})" for field in schema)


def check_utf8_names(paths: Sequence[str]) -> None:
    """Refuse, before anything is written, a name that is not valid UTF-8, which Parquet's strings cannot hold."""
    for path in paths:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            shown = path.encode("utf-8", errors=NAMES).decode("utf-8", errors="backslashreplace")
            raise ConfigError(
                f"image {shown} has a name that is not valid UTF-8, which Parquet's strings cannot hold: "
                f"write CSV (--output ending in .csv) or rename the file"
            ) from None
