"""Score image files in batches, whatever runs the model: what test_demo.py's paths share.

The images --img stands for (a file, a folder, a glob pattern, paths on stdin, a CSV or Parquet
list of paths; local, or URIs of any file system pyarrow reads) are listed, then scored window
by window (`WINDOW` images in input order): each window's images are decoded in a pool of threads
that runs ahead of the model (Pillow releases the GIL while it decodes and resizes), grouped
into batches of images of one size (data/batches.py), and scored by a `Backend`: the PyTorch
model (scoring.py) or an ONNX file in onnxruntime. A window's results come back whole and in
input order, with a message instead of a score for an image that failed, so that a caller can
write them as they come and a resumed run, starting at a window, batches as an uninterrupted
one did. Nothing here imports PyTorch.
"""

from __future__ import annotations

import csv
import glob
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Callable, Protocol

import numpy as np
from tqdm import tqdm

from linearityiqa.data.batches import batches_by_size
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS, ImageSizing, decode_image, decoded_shape
from linearityiqa.data.image_store import available_cores
from linearityiqa.data.remote import folder_files, is_folder, is_uri
from linearityiqa.errors import BadFileError, ConfigError, IQAError, MissingFileError, file_problem
from linearityiqa.options import SCORING_WINDOW

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Lists of paths to score, by their extension, and the columns that hold the paths, by preference.
PATH_LISTS = (".csv", ".parquet")
PATH_COLUMNS = ("image", "path")
# Batches decoded ahead of the one being scored: enough to hide decoding, little memory.
_BATCHES_AHEAD = 2
# Images per window (test_demo.py --window): an interrupted run loses at most one window's work,
# and batches never cross a window's edge. Large enough that images of a few sizes still fill their batches.
WINDOW = SCORING_WINDOW


@dataclass(frozen=True)
class ImageScore:
    """The outcome for one image: a score, or the message saying why there is none."""

    path: str
    score: float | None = None
    error: str | None = None
    heads: tuple[float, float, float] | None = None  # pq6, pq7, pq before any mapping, when asked for


class Backend(Protocol):
    """What scores a batch: N x H x W x 3 uint8 RGB images (decoded and sized) to N scores.

    `where` names it in messages ("cpu", "cuda", "onnxruntime").
    """

    where: str

    def scores(self, images: np.ndarray) -> list[float]: ...

    def scores_and_heads(self, images: np.ndarray) -> tuple[list[float], list[tuple[float, float, float]]]:
        """The scores, and each image's three heads (pq6, pq7, pq) before any mapping."""

    def too_large(self, error: Exception) -> bool:
        """Whether `error` says the batch did not fit in memory (then each image is tried alone)."""


def is_single_image(source: str) -> bool:
    """Whether --img names one image file (not a folder, a glob pattern, a list, or - for stdin)."""
    return source != "-" and os.path.isfile(source) and not is_path_list(source)


def is_path_list(source: str) -> bool:
    """Whether --img names a CSV or Parquet file of image paths rather than an image."""
    return source.lower().endswith(PATH_LISTS)


def list_images(source: str, *, stdin: Iterable[str | bytes]) -> list[str]:
    """The image paths --img stands for.

    Args:
        source: an image file; a folder (its files with an image extension, sorted; not
            recursive); a glob pattern (its matching files, sorted; ** recurses); a CSV or
            Parquet file (`PATH_LISTS`) whose column image or path (or only column) lists the
            images, in its order; a URI of an image or a folder (data/remote.py); or - for
            paths read from `stdin`, one per line, in their order. Listed paths are taken as
            they are: a relative one is relative to the current folder.
        stdin: where - reads the paths from: lines of text, or of bytes as the operating system
            names files (decoded as it does, os.fsdecode: a name that is not valid UTF-8 keeps
            its bytes as surrogate escapes, and still opens its file).
    """
    if source == "-":
        lines = (os.fsdecode(line) if isinstance(line, bytes) else line for line in stdin)
        paths = [line.strip() for line in lines if line.strip()]
        if not paths:
            raise ConfigError("no image paths on standard input: pass one path per line")
        return paths
    if is_uri(source):
        return _folder_uris(source) if is_folder(source) else [source]
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
    """The image paths a CSV or Parquet file lists, in its order (a first line of a CSV that starts
    with # is a comment, as in test_demo.py's own output, which can so be scored again)."""
    columns, read = _parquet_column(path) if path.lower().endswith(".parquet") else _csv_column(path)
    column = _path_column(columns, path)
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
        same = first_row.setdefault(_one_name(value), row)
        if same != row:
            raise BadFileError(
                f"rows {same} and {row} of list {path} name the same image, {value}: remove one (an image has one row)"
            )
    return paths


def _one_name(path: str) -> str:
    """One spelling of a listed image: ./a.jpg and a.jpg, a//b.jpg and a/b.jpg are one file (a URI is as written)."""
    return path if is_uri(path) else os.path.normpath(path)


def _path_column(columns: Sequence[str], path: str) -> str:
    for name in PATH_COLUMNS:
        if name in columns:
            return name
    if len(columns) == 1:
        return columns[0]
    raise BadFileError(
        f"list {path} has columns {', '.join(columns)}, none of them {' or '.join(PATH_COLUMNS)}: "
        f"name the column of image paths image"
    )


def _csv_column(path: str) -> tuple[list[str], Callable[[str], list]]:
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as file:
            lines = file.read().splitlines(keepends=True)
    except OSError as error:
        raise BadFileError(f"cannot read list {path} ({error.strerror or error})") from None
    if lines and lines[0].startswith("#"):
        lines = lines[1:]
    rows = list(csv.reader(lines))
    if not rows:
        raise ConfigError(f"list {path} is empty: write a header (image) and a row for each image")
    header, body = rows[0], rows[1:]

    def read(column: str) -> list:
        at = header.index(column)
        return [row[at] if at < len(row) else "" for row in body]

    return header, read


def _parquet_column(path: str) -> tuple[list[str], Callable[[str], list]]:
    import pyarrow.parquet as parquet  # a missing pyarrow is the scale extra's (cli/installation.EXTRAS)

    try:
        file = parquet.ParquetFile(path)
    except (OSError, ValueError) as error:  # ArrowInvalid, a file that is no Parquet, is a ValueError
        raise BadFileError(f"cannot read list {path} as Parquet ({error}): write it again") from None

    def read(column: str) -> list:
        return file.read(columns=[column]).column(column).to_pylist()

    return file.schema_arrow.names, read


def _folder_uris(folder: str) -> list[str]:
    uris = [uri for uri in folder_files(folder) if uri.lower().endswith(IMAGE_EXTENSIONS)]
    if not uris:
        raise MissingFileError(f"folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return uris


def _file_or_link(path: str) -> bool:
    """A file, or a symbolic link that leads to none (kept, so that its row says so), not a folder."""
    return os.path.isfile(path) or (os.path.islink(path) and not os.path.exists(path))


def _folder_images(folder: str) -> list[str]:
    """A folder's image files, sorted by name; not its subfolders, nor pipes or devices named like images."""
    names = sorted(
        name
        for name in os.listdir(folder)
        if name.lower().endswith(IMAGE_EXTENSIONS) and _file_or_link(os.path.join(folder, name))
    )
    if not names:
        raise MissingFileError(f"folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return [os.path.join(folder, name) for name in names]


def score_files(
    backend: Backend,
    paths: Sequence[str],
    *,
    sizing: ImageSizing,
    batch_size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
    workers: int | None = None,
    heads: bool = False,
) -> list[ImageScore]:
    """Score images in batches of equal-sized images; one result per path, in input order.

    Args:
        backend: what scores a batch.
        paths: the image files.
        sizing: how images are resized before scoring.
        batch_size: most images per batch.
        max_pixels: refuse images of more pixels than this (see decoding.open_image).
        progress: show a progress bar on stderr.
        workers: decoding threads (default: one per core, at most 8).
        heads: give each result the three heads' outputs too.
    """
    windows = score_windows(
        backend,
        paths,
        sizing=sizing,
        batch_size=batch_size,
        max_pixels=max_pixels,
        progress=progress,
        workers=workers,
        heads=heads,
    )
    return [result for window in windows for result in window]


def score_windows(
    backend: Backend,
    paths: Sequence[str],
    *,
    sizing: ImageSizing,
    batch_size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
    workers: int | None = None,
    heads: bool = False,
    start: int = 0,
    window: int = WINDOW,
) -> Iterator[list[ImageScore]]:
    """The results of paths[start:], one window of `window` paths at a time, in input order.

    Windows start at multiples of `window` counted from paths[0], so that a run resumed at
    `start` (a multiple of it) batches each image with the same images as a whole run does.
    The other arguments are score_files's.
    """
    if start % window:
        raise ValueError(f"start {start} is not a multiple of the window, {window}")
    measure = partial(_decoded_size, sizing=sizing, max_pixels=max_pixels)
    load = partial(_load, sizing=sizing, max_pixels=max_pixels)
    score = partial(_score_group, backend, heads=heads)
    with (
        ThreadPoolExecutor(max_workers=workers or min(8, available_cores())) as pool,
        tqdm(total=len(paths), initial=start, desc="scoring", unit="img", disable=not progress) as bar,
    ):
        for first in range(start, len(paths), window):
            yield _scored_window(pool, paths[first : first + window], measure, load, score, batch_size, bar)


def _scored_window(
    pool: ThreadPoolExecutor,
    paths: Sequence[str],
    measure: Callable[[str], tuple[int, int] | IQAError],
    load: Callable[[str], np.ndarray | IQAError],
    score: Callable[..., Iterator[tuple[int, ImageScore]]],
    batch_size: int,
    bar: tqdm,
) -> list[ImageScore]:
    results: list[ImageScore | None] = [None] * len(paths)
    sizes = list(pool.map(measure, paths))
    for index, size in enumerate(sizes):
        if isinstance(size, IQAError):
            results[index] = ImageScore(paths[index], error=str(size))
            bar.update()
    batches = batches_by_size([None if isinstance(size, IQAError) else size for size in sizes], batch_size)
    for indices, loaded in _decoded_batches(pool, batches, paths, load):
        for index, result in _score_batch(score, paths, indices, loaded):
            results[index] = result
        bar.update(len(indices))
    return results


def _decoded_size(path: str, *, sizing: ImageSizing, max_pixels: int) -> tuple[int, int] | IQAError:
    """(height, width) after sizing, from the header alone; or the error that stops the image."""
    problem = None if is_uri(path) else file_problem(path)
    if problem is not None:
        return (
            MissingFileError(f"image {path} {problem}")
            if problem == "does not exist"
            else BadFileError(f"image {path} {problem}: pass the image file itself")
        )
    if sizing.resize_hw is not None:
        return sizing.resize_hw  # every image gets this size; decoding will tell if one is broken
    try:
        height, width, _ = decoded_shape(path, sizing, max_pixels=max_pixels)
    except (BadFileError, MissingFileError) as error:  # a URI's file is looked for only here
        return error
    return height, width


def _decoded_batches(
    pool: ThreadPoolExecutor,
    batches: Iterable[list[int]],
    paths: Sequence[str],
    load: Callable[[str], np.ndarray | IQAError],
) -> Iterator[tuple[list[int], list[np.ndarray | IQAError]]]:
    """Each batch's images as arrays (or errors), decoding up to _BATCHES_AHEAD batches ahead."""
    pending: deque[tuple[list[int], list[Future]]] = deque()
    for batch in batches:
        pending.append((batch, [pool.submit(load, paths[index]) for index in batch]))
        if len(pending) > _BATCHES_AHEAD:
            yield _gathered(*pending.popleft())
    while pending:
        yield _gathered(*pending.popleft())


def _gathered(indices: list[int], futures: list[Future]) -> tuple[list[int], list[np.ndarray | IQAError]]:
    return indices, [future.result() for future in futures]


def _load(path: str, *, sizing: ImageSizing, max_pixels: int) -> np.ndarray | IQAError:
    try:
        return decode_image(path, sizing, max_pixels=max_pixels)
    except IQAError as error:
        return error


def _score_batch(
    score: Callable[..., Iterator[tuple[int, ImageScore]]],
    paths: Sequence[str],
    indices: Sequence[int],
    loaded: Sequence[np.ndarray | IQAError],
) -> Iterator[tuple[int, ImageScore]]:
    """(index, result) of each image of one batch."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, item in zip(indices, loaded):
        if isinstance(item, IQAError):
            yield index, ImageScore(paths[index], error=str(item))
        else:
            # A header that lies about the size would otherwise break the stacking.
            by_shape.setdefault(item.shape, []).append(index)
    arrays = dict(zip(indices, loaded))
    for group in by_shape.values():
        yield from score(paths, group, [arrays[index] for index in group])


def _score_group(
    backend: Backend, paths: Sequence[str], group: Sequence[int], images: Sequence[np.ndarray], *, heads: bool
) -> Iterator[tuple[int, ImageScore]]:
    """(index, result) of images of one size, scored together; a batch too large for the memory
    is scored again one image at a time, and an image that alone is too large gets a message."""
    try:
        batch = np.stack(images)
        scores, outputs = backend.scores_and_heads(batch) if heads else (backend.scores(batch), [None] * len(group))
    except IQAError as error:  # e.g. images too small for the model's pyramid pooling
        yield from ((index, ImageScore(paths[index], error=str(error))) for index in group)
        return
    except Exception as error:
        if not backend.too_large(error):
            raise
        if len(group) > 1:
            for index, image in zip(group, images):
                yield from _score_group(backend, paths, [index], [image], heads=heads)
            return
        height, width = images[0].shape[:2]
        message = (
            f"out of memory scoring image {paths[group[0]]} at {width}x{height} on {backend.where}: "
            f"score it with --resize (or on a machine with more memory)"
        )
        yield group[0], ImageScore(paths[group[0]], error=message)
        return
    for index, value, head in zip(group, scores, outputs):
        yield index, ImageScore(paths[index], score=value, heads=head)
