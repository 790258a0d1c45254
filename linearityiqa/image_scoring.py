"""Score image files in batches by any `Backend` (PyTorch or onnxruntime), in input order: what
test_demo.py's paths share. `open_model` loads the Backend a `ModelFile` names (which pickles, so
that each of Ray's workers loads its own). Images are decoded by threads ahead of the model and
batched by size within a window (--window); a failed image gets a message in place of its score.
Nothing here imports PyTorch (the ONNX and Ray workers must not load it).
"""

from __future__ import annotations

import csv
import glob
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Protocol

import numpy as np
from tqdm import tqdm

from linearityiqa.data.decoding import (
    DEFAULT_MAX_PIXELS,
    ImageSizing,
    batches_by_size,
    decode_image,
    decoded_shape,
    folder_files,
    is_folder,
    is_uri,
)
from linearityiqa.data.image_store import available_cores
from linearityiqa.errors import BadFileError, ConfigError, IQAError, MissingFileError, file_problem
from linearityiqa.options import MODEL_SETTINGS, SCORING_WINDOW
from linearityiqa.records.scale import TrainingScale

CHECKPOINT, ONNX = "checkpoint", "ONNX model"
# The options that size images, and with the model's settings those that load a checkpoint.
SIZING_OPTIONS = ("resize", "resize_size_h", "resize_size_w")
MODEL_OPTIONS = (*MODEL_SETTINGS, *SIZING_OPTIONS)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# the columns of a CSV or Parquet list that hold the paths, by preference
PATH_COLUMNS = ("image", "path")
# Seconds after which the results scored so far are given (and so written) even if their window is
# not done: what an interrupt can cost, whatever the speed.
WINDOW_SECONDS = 10.0


@dataclass(frozen=True)
class ImageScore:
    """The outcome for one image: a score, or the message saying why there is none."""

    path: str
    score: float | None = None
    error: str | None = None
    heads: tuple[float, float, float] | None = None  # pq6, pq7, pq before any mapping, when asked for


class Backend(Protocol):
    """A loaded model (scoring.QualityModel, onnx_scoring.OnnxModel) for N x H x W x 3 uint8 RGB
    images, which it sizes as `sizing` says, at most `batch_size` at a time and none of more than
    `max_pixels` (--max_pixels). `where` names it in messages (cpu, cuda, onnxruntime); `scale`
    None: unrecorded; `note`, if any, is for the user."""

    where: str
    sizing: ImageSizing
    batch_size: int
    max_pixels: int
    scale: TrainingScale | None
    note: str | None

    def scores_and_heads(self, images: np.ndarray) -> tuple[list[float], list[tuple[float, float, float]]]:
        """The scores, and each image's three heads (pq6, pq7, pq) before any mapping."""

    def too_large(self, error: Exception) -> bool:
        """Whether `error` says the batch did not fit in memory (each image is then tried alone)."""


@dataclass(frozen=True)
class ModelFile:
    """A model file and the options that load it; device to defaults are a checkpoint's only."""

    kind: str
    path: str
    device: str | None = None  # cpu, cuda, or None for cuda where there is one
    opt_level: str = "O0"  # O0, O1 or bf16
    requested: Mapping[str, Any] = field(default_factory=dict)  # MODEL_OPTIONS' values
    defaults: Mapping[str, Any] = field(default_factory=dict)  # theirs: an explicit value differs from its own
    eval_batch_size: int | None = None  # None: the device's default
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int | None = None  # None: PyTorch's or onnxruntime's own choice


def open_model(spec: ModelFile) -> Backend:
    """The model `spec` names, loaded (PyTorch is imported only for a checkpoint)."""
    if spec.kind == ONNX:
        from linearityiqa.onnx_scoring import load_onnx

        return load_onnx(spec.path, threads=spec.threads, batch_size=spec.eval_batch_size, max_pixels=spec.max_pixels)
    import torch

    from linearityiqa.acceleration import evaluation_batch_size, resolve_device
    from linearityiqa.scoring import load_scorer

    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = resolve_device(spec.device)
    return load_scorer(
        spec.path,
        requested=spec.requested,
        defaults=spec.defaults,
        device=device,
        opt_level=spec.opt_level,
        max_pixels=spec.max_pixels,
        batch_size=evaluation_batch_size(spec.eval_batch_size, device),
    )


def is_single_image(source: str) -> bool:
    """Whether --img names one image file (not a folder, a glob pattern, a list, or - for stdin)."""
    return source != "-" and os.path.isfile(source) and not is_path_list(source)


def is_path_list(source: str) -> bool:
    """Whether --img names a CSV or Parquet file of image paths rather than an image."""
    return source.lower().endswith((".csv", ".parquet"))


def list_images(source: str, *, stdin: Iterable[str | bytes]) -> list[str]:
    """The image paths --img `source` stands for, each as it is (a relative one from the current
    folder): a folder's image files (a URI's too), sorted, not recursive; a glob pattern's files,
    sorted (** recurses); a CSV or Parquet list's; or for -, the lines of `stdin` (bytes as the
    system names files: os.fsdecode keeps a name that is not valid UTF-8 as surrogate escapes).
    """
    if source == "-":
        lines = (os.fsdecode(line) if isinstance(line, bytes) else line for line in stdin)
        paths = [line.strip() for line in lines if line.strip()]
        if not paths:
            raise ConfigError("no image paths on standard input: pass one path per line")
        return paths
    if is_uri(source):
        return _folder_images(source) if is_folder(source) else [source]
    if os.path.isdir(source):
        return _folder_images(source)
    if os.path.isfile(source):
        return listed_paths(source) if is_path_list(source) else [source]
    if any(char in source for char in "*?[") and not os.path.lexists(source):
        paths = sorted(path for path in glob.glob(source, recursive=True) if _file_or_link(path))
        if not paths:
            raise MissingFileError(
                f"no file matches {source}: check the pattern (quote it, so that the shell does not expand it)"
            )
        return paths
    raise MissingFileError(
        f"image {source} {file_problem(source)}: pass an image, a folder, a glob pattern, a CSV or Parquet list "
        f"of paths or - (for paths on standard input) as --img"
    )


def listed_paths(path: str) -> list[str]:
    """The image paths a CSV or Parquet file lists, in its order."""
    columns, read = _list_columns(path)
    column = next((name for name in PATH_COLUMNS if name in columns), columns[0] if len(columns) == 1 else None)
    if column is None:
        raise BadFileError(
            f"list {path} has columns {', '.join(columns)}, none of them {' or '.join(PATH_COLUMNS)}: "
            f"name the column of image paths image"
        )
    paths = read(column)
    if not paths:
        raise ConfigError(f"list {path} names no images: add a row for each image")
    first_row: dict[str, int] = {}
    for row, value in enumerate(paths, start=1):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise BadFileError(f"row {row} of list {path} has no path in column {column}: fill it in or remove the row")
        if not isinstance(value, str):
            raise BadFileError(
                f"row {row} of list {path} holds {value!r} ({type(value).__name__}) in column {column}, not a path: "
                f"write the column as text"
            )
        # ./a.jpg and a.jpg, a//b.jpg and a/b.jpg are one file (a URI is as written)
        same = first_row.setdefault(value if is_uri(value) else os.path.normpath(value), row)
        if same != row:
            raise BadFileError(
                f"rows {same} and {row} of list {path} name the same image, {value}: remove one (an image has one row)"
            )
    return paths


def _list_columns(path: str) -> tuple[list[str], Callable[[str], list]]:
    """The column names of a CSV or Parquet list, and what reads one of its columns."""
    if path.lower().endswith(".parquet"):
        import pyarrow.parquet as parquet  # a missing pyarrow is the scale extra's (cli/scripts.EXTRAS)

        try:
            file = parquet.ParquetFile(path)
        except (OSError, ValueError) as error:  # ArrowInvalid, a file that is no Parquet, is a ValueError
            raise BadFileError(f"cannot read list {path} as Parquet ({error}): write it again") from None
        return file.schema_arrow.names, lambda column: file.read(columns=[column]).column(column).to_pylist()
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as file:
            lines = file.read().splitlines(keepends=True)
    except OSError as error:
        raise BadFileError(f"cannot read list {path} ({error.strerror or error})") from None
    # a first line that starts with # is a comment, as in the outputs of test_demo.py's earlier versions
    rows = list(csv.reader(lines[1:] if lines and lines[0].startswith("#") else lines))
    if not rows:
        raise ConfigError(f"list {path} is empty: write a header (image) and a row for each image")
    header, body = rows[0], rows[1:]

    def read(column: str) -> list:
        at = header.index(column)
        return [row[at] if at < len(row) else "" for row in body]

    return header, read


def _file_or_link(path: str) -> bool:
    """A file, or a symbolic link that leads to none (kept, so that its row says so), not a folder."""
    return os.path.isfile(path) or (os.path.islink(path) and not os.path.exists(path))


def _folder_images(folder: str) -> list[str]:
    """A folder's image files: a URI's as its file system lists them; a local folder's sorted by
    name, not its subfolders, nor pipes or devices named like images."""
    if is_uri(folder):
        paths = [uri for uri in folder_files(folder) if uri.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        paths = [os.path.join(folder, name) for name in sorted(os.listdir(folder))]
        paths = [path for path in paths if path.lower().endswith(IMAGE_EXTENSIONS) and _file_or_link(path)]
    if not paths:
        raise MissingFileError(f"folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def score_files(backend: Backend, paths: Sequence[str], **options: Any) -> list[ImageScore]:
    return [result for piece in score_windows(backend, paths, **options) for result in piece]


def pieces(runs: Iterable[tuple[list[ImageScore], bool]]) -> Iterator[list[ImageScore]]:
    """Runs of results (each with whether it ends a window) joined into pieces: a piece ends with
    its window or once WINDOW_SECONDS have passed since the last one ended, whichever comes first."""
    piece: list[ImageScore] = []
    since = time.monotonic()
    for results, window_ends in runs:
        piece += results
        if piece and (window_ends or time.monotonic() - since >= WINDOW_SECONDS):
            yield piece
            piece, since = [], time.monotonic()
    if piece:
        yield piece


def score_windows(
    backend: Backend,
    paths: Sequence[str],
    *,
    progress: bool = False,
    workers: int | None = None,
    heads: bool = False,
    start: int = 0,
    window: int = SCORING_WINDOW,
) -> Iterator[list[ImageScore]]:
    """The results of paths[start:] in input order, in `pieces`; `workers` decoding threads (default:
    a core each, at most 8). A window is `window` paths counted from paths[0], whose images are
    batched by size together: so that a run resumed at any `start` batches as a whole run does,
    the batches of its first window that hold an image at or after `start` are scored again whole.
    """
    with (
        ThreadPoolExecutor(max_workers=workers or min(8, available_cores())) as pool,
        tqdm(total=len(paths), initial=start, desc="scoring", unit="img", disable=not progress) as bar,
    ):

        def runs() -> Iterator[tuple[list[ImageScore], bool]]:
            for first in range(start - start % window, len(paths), window):
                for results in _scored_window(pool, paths[first : first + window], backend, heads, skip=start - first):
                    bar.update(len(results))
                    yield results, False
                yield [], True

        yield from pieces(runs())


def _scored_window(
    pool: ThreadPoolExecutor, paths: Sequence[str], backend: Backend, heads: bool, *, skip: int
) -> Iterator[list[ImageScore]]:
    """The results of paths[skip:] in order, each run of them as soon as a batch completes it
    (batches run in the order of their first image, so that the run grows with each)."""
    reading = {"sizing": backend.sizing, "max_pixels": backend.max_pixels}
    resized = backend.sizing.resize_hw  # every image gets this size; decoding will tell if one is broken
    sizes = [resized] * len(paths) if resized else list(pool.map(partial(_or_error, decoded_shape, **reading), paths))
    results: list[ImageScore | None] = [
        ImageScore(path, error=str(size)) if isinstance(size, IQAError) else None for path, size in zip(paths, sizes)
    ]
    done = max(skip, 0)
    batches = batches_by_size([None if result else size for result, size in zip(results, sizes)], backend.batch_size)
    batches = sorted((batch for batch in batches if batch[-1] >= done), key=lambda batch: batch[0])
    for batch in _decoded_batches(pool, batches, paths, partial(_or_error, decode_image, **reading)):
        for index, result in _score_batch(backend, paths, batch, heads=heads):
            results[index] = result
        end = next((at for at in range(done, len(paths)) if results[at] is None), len(paths))
        if end > done:
            yield results[done:end]
            done = end
    if done < len(paths):  # images that could not be read, after the last batch
        yield results[done:]


def _or_error(read: Callable[..., Any], path: str, **options: Any) -> Any:
    """read(path, **options), or the error that stops the image."""
    try:
        return read(path, **options)
    except IQAError as error:
        return error


def _decoded_batches(
    pool: ThreadPoolExecutor,
    batches: Iterable[list[int]],
    paths: Sequence[str],
    load: Callable[[str], np.ndarray | IQAError],
) -> Iterator[list[tuple[int, np.ndarray | IQAError]]]:
    """Each batch's (index, image or its error), decoded two batches ahead: enough to hide decoding."""
    pending: deque[list[tuple[int, Future]]] = deque()
    for batch in batches:
        pending.append([(index, pool.submit(load, paths[index])) for index in batch])
        if len(pending) > 2:
            yield [(index, future.result()) for index, future in pending.popleft()]
    for batch in pending:
        yield [(index, future.result()) for index, future in batch]


def _score_batch(
    backend: Backend, paths: Sequence[str], batch: Sequence[tuple[int, np.ndarray | IQAError]], *, heads: bool
) -> Iterator[tuple[int, ImageScore]]:
    """(index, result) of each image of a batch. Images of one shape are scored together (a header
    that lies about the size would otherwise break the stacking); where they do not fit in memory,
    one at a time, and an image that alone does not gets a message."""
    by_shape: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
    for index, item in batch:
        if isinstance(item, IQAError):
            yield index, ImageScore(paths[index], error=str(item))
        else:
            by_shape.setdefault(item.shape, []).append((index, item))
    for group in by_shape.values():
        try:
            scores, outputs = backend.scores_and_heads(np.stack([image for _, image in group]))
        except IQAError as error:  # e.g. images too small for the model's pyramid pooling
            yield from ((index, ImageScore(paths[index], error=str(error))) for index, _ in group)
            continue
        except Exception as error:
            if not backend.too_large(error):
                raise
            if len(group) > 1:
                for item in group:
                    yield from _score_batch(backend, paths, [item], heads=heads)
                continue
            index, (height, width) = group[0][0], group[0][1].shape[:2]
            message = (
                f"out of memory scoring image {paths[index]} at {width}x{height} on {backend.where}: "
                f"score it with --resize (or on a machine with more memory)"
            )
            yield index, ImageScore(paths[index], error=message)
            continue
        for (index, _), value, head in zip(group, scores, outputs):
            yield index, ImageScore(paths[index], score=value, heads=head if heads else None)
