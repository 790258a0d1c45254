"""Score image files in batches, whatever runs the model: what test_demo.py's two paths share.

The images --img stands for (a file, a folder, a glob pattern, paths on stdin) are listed,
decoded in a pool of threads that runs ahead of the model (Pillow releases the GIL while it
decodes and resizes), grouped into batches of images of one size (data/batches.py), and scored
by a `Backend`: the PyTorch model (scoring.py) or an ONNX file in onnxruntime. Results come back
in input order, with a message instead of a score for an image that failed. Nothing here
imports PyTorch.
"""

from __future__ import annotations

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
from linearityiqa.errors import BadFileError, ConfigError, IQAError, MissingFileError, file_problem

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Batches decoded ahead of the one being scored: enough to hide decoding, little memory.
_BATCHES_AHEAD = 2


@dataclass(frozen=True)
class ImageScore:
    """The outcome for one image: a score, or the message saying why there is none."""

    path: str
    score: float | None = None
    error: str | None = None


class Backend(Protocol):
    """What scores a batch: N x H x W x 3 uint8 RGB images (decoded and sized) to N scores.

    `where` names it in messages ("cpu", "cuda", "onnxruntime").
    """

    where: str

    def scores(self, images: np.ndarray) -> list[float]: ...

    def too_large(self, error: Exception) -> bool:
        """Whether `error` says the batch did not fit in memory (then each image is tried alone)."""


def is_single_image(source: str) -> bool:
    """Whether --img names one image file (not a folder, a glob pattern or - for stdin)."""
    return source != "-" and os.path.isfile(source)


def list_images(source: str, *, stdin: Iterable[str | bytes]) -> list[str]:
    """The image paths --img stands for.

    Args:
        source: an image file; a folder (its files with an image extension, sorted; not
            recursive); a glob pattern (its matching files, sorted; ** recurses); or - for
            paths read from `stdin`, one per line, in their order.
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
    if os.path.isdir(source):
        return _folder_images(source)
    if os.path.isfile(source):
        return [source]
    if any(char in source for char in "*?[") and not os.path.lexists(source):
        paths = sorted(path for path in glob.glob(source, recursive=True) if _file_or_link(path))
        if not paths:
            raise MissingFileError(
                f"no file matches {source}: check the pattern (quote it, so that the shell does not expand it)"
            )
        return paths
    raise MissingFileError(
        f"image {source} {file_problem(source)}: pass an image, a folder, a glob pattern or - "
        f"(for paths on standard input) as --img"
    )


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
    """
    measure = partial(_decoded_size, sizing=sizing, max_pixels=max_pixels)
    load = partial(_load, sizing=sizing, max_pixels=max_pixels)
    results: list[ImageScore | None] = [None] * len(paths)
    with (
        ThreadPoolExecutor(max_workers=workers or min(8, available_cores())) as pool,
        tqdm(total=len(paths), desc="scoring", unit="img", disable=not progress) as bar,
    ):
        sizes = list(pool.map(measure, paths))
        for index, size in enumerate(sizes):
            if isinstance(size, IQAError):
                results[index] = ImageScore(paths[index], error=str(size))
                bar.update()
        batches = batches_by_size([None if isinstance(size, IQAError) else size for size in sizes], batch_size)
        for indices, loaded in _decoded_batches(pool, batches, paths, load):
            for index, result in _score_batch(backend, paths, indices, loaded):
                results[index] = result
            bar.update(len(indices))
    return results


def _decoded_size(path: str, *, sizing: ImageSizing, max_pixels: int) -> tuple[int, int] | IQAError:
    """(height, width) after sizing, from the header alone; or the error that stops the image."""
    problem = file_problem(path)
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
    except BadFileError as error:
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
    backend: Backend, paths: Sequence[str], indices: Sequence[int], loaded: Sequence[np.ndarray | IQAError]
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
        yield from _score_group(backend, paths, group, [arrays[index] for index in group])


def _score_group(
    backend: Backend, paths: Sequence[str], group: Sequence[int], images: Sequence[np.ndarray]
) -> Iterator[tuple[int, ImageScore]]:
    """(index, result) of images of one size, scored together; a batch too large for the memory
    is scored again one image at a time, and an image that alone is too large gets a message."""
    try:
        scores = backend.scores(np.stack(images))
    except IQAError as error:  # e.g. images too small for the model's pyramid pooling
        yield from ((index, ImageScore(paths[index], error=str(error))) for index in group)
        return
    except Exception as error:
        if not backend.too_large(error):
            raise
        if len(group) > 1:
            for index, image in zip(group, images):
                yield from _score_group(backend, paths, [index], [image])
            return
        height, width = images[0].shape[:2]
        message = (
            f"out of memory scoring image {paths[group[0]]} at {width}x{height} on {backend.where}: "
            f"score it with --resize (or on a machine with more memory)"
        )
        yield group[0], ImageScore(paths[group[0]], error=message)
        return
    yield from ((index, ImageScore(paths[index], score=score)) for index, score in zip(group, scores))
