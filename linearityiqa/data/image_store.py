"""Decode a data set's images once, in parallel, into one uint8 buffer cached on disk (docs/data.md).

Decoding 10,073 KonIQ-10k JPEGs takes minutes; a training run must not pay for it each time. Later
runs map the cache file into memory: they start at once, the operating system keeps the pages in
its cache across runs, and DataLoader workers share them instead of copying images.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS, ImageSizing, decode_image, decoded_shape
from linearityiqa.errors import BadFileError, ConfigError, IQAError, MissingFileError, first_line

# 2: images are turned as their EXIF orientation says, so caches of version 1 may differ.
CACHE_FORMAT_VERSION = 2
DEFAULT_CACHE_DIR = "data/cache"


@dataclass(frozen=True)
class ImageLoading:
    """How a data set's images are decoded and kept."""

    resize_hw: tuple[int, int] | None = None  # (height, width) of every image; None keeps each at its own size
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR  # of the decoded images; None keeps them in memory only
    max_pixels: int = DEFAULT_MAX_PIXELS  # refuse images of more pixels than this (see open_image)
    workers: int | None = None  # decoding threads; by default one per available core
    verbose: bool = True  # print a progress bar and the memory the images take


class ImageStore:
    """Decoded RGB images in one flat uint8 buffer, `pixels` or (None) the `.npy` file `cache_path`
    mapped; `store[row]` is the view of `names[row]`, of shape `shapes[row]` (height, width, 3)."""

    def __init__(
        self, *, names: list[str], shapes: np.ndarray, pixels: np.ndarray | None, cache_path: Path | None = None
    ):
        self.names = list(names)
        self.shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 3)
        self.offsets = np.concatenate([[0], np.cumsum(self.shapes.prod(axis=1))])
        self.cache_path = cache_path
        self.pixels = pixels if pixels is not None else _map_buffer(cache_path)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, row: int) -> np.ndarray:
        start, stop = self.offsets[row], self.offsets[row + 1]
        return self.pixels[start:stop].reshape(self.shapes[row])

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1])

    def rows_of(self, names: list[str]) -> np.ndarray:
        """The rows holding `names`, which must all be in the store."""
        row_of_name = {name: row for row, name in enumerate(self.names)}
        return np.array([row_of_name[name] for name in names], dtype=np.int64)

    def __getstate__(self) -> dict:
        # A worker started by spawn maps the cache file again instead of receiving gigabytes.
        return {**self.__dict__, "pixels": None} if self.cache_path is not None else self.__dict__

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.pixels is None:
            self.pixels = _map_buffer(self.cache_path)


def _map_buffer(cache_path: Path) -> np.ndarray:
    # A plain ndarray view of the map slices faster than np.memmap and keeps the map alive.
    return np.load(cache_path, mmap_mode="r").view(np.ndarray)


def load_images(
    im_dir: str | Path, names: list[str], *, label: str, loading: ImageLoading, square_size: int | None = None
) -> ImageStore:
    """Decode the images `im_dir/<name>` as `loading` says into an ImageStore, from the cache when it
    is current; images not of square_size x square_size are first resized to it (CLIVE). `label`
    names the data set in messages and in cache file names."""
    sizing = ImageSizing(square_size=square_size, resize_hw=loading.resize_hw)
    paths = [Path(im_dir) / name for name in names]
    file_stats = _stat_files(paths, im_dir)
    started, store, cache_path, how = time.perf_counter(), None, None, "mapped from cache"
    if loading.cache_dir is not None:
        cache_path = _cache_path(Path(loading.cache_dir), label, names, file_stats, sizing)
        store = _open_cache(cache_path, names, label=label, verbose=loading.verbose)
    if store is None:
        store, how = _decode_all(paths, names, sizing, loading, label, cache_path), "decoded"
    if loading.verbose:
        size = f"{store.nbytes / 2**30:.2f} GiB" if store.nbytes >= 2**30 else f"{store.nbytes / 2**20:.1f} MiB"
        where = f"cached in {cache_path}" if cache_path is not None else "in memory"
        print(
            f"{label}: {len(store):,} images, {size} as uint8, {where} ({how} in {time.perf_counter() - started:.1f} s)"
        )
    return store


def available_cores() -> int:
    """Cores this process may run on (fewer than os.cpu_count() in a container or under taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _stat_files(paths: list[Path], im_dir: str | Path) -> list[tuple[int, int]]:
    """(size, mtime_ns) of each file; every missing file is reported at once."""
    stats, missing = [], []
    for path in paths:
        try:
            status = path.stat()
        except FileNotFoundError:
            missing.append(path)
            continue
        except OSError as error:  # a loop of symbolic links, a folder it may not enter
            raise BadFileError(
                f"cannot read image {path}: {error.strerror}; point it at a readable image file"
            ) from None
        stats.append((status.st_size, status.st_mtime_ns))
    if missing:
        more = f" and {len(missing) - 1} more of the {len(paths)} images" if len(missing) > 1 else ""
        raise MissingFileError(
            f"image {missing[0]} not found{more}: link the data set's image folder to {im_dir} "
            f"(ln -s /path/to/images {im_dir}) or pass its folder (--im_dir)"
        )
    return stats


def _cache_path(
    cache_dir: Path, label: str, names: list[str], file_stats: list[tuple[int, int]], sizing: ImageSizing
) -> Path:
    """`<cache_dir>/<label>-<sizing>-<key>.npy`, the key a hash of everything the pixels depend on: a
    changed image list, size or file makes a new cache."""
    description = json.dumps(
        {
            "version": CACHE_FORMAT_VERSION,
            "square_size": sizing.square_size,
            "resize_hw": sizing.resize_hw,
            "files": [[name, size, mtime] for name, (size, mtime) in zip(names, file_stats)],
        }
    )
    key = hashlib.sha256(description.encode()).hexdigest()[:16]
    return cache_dir / f"{re.sub(r'[^A-Za-z0-9._-]', '_', label)}-{sizing.tag()}-{key}.npy"


def _open_cache(cache_path: Path, names: list[str], *, label: str, verbose: bool) -> ImageStore | None:
    """The cached store of exactly these names, or None when there is none; a cache that cannot be
    read as its layout (the `.json` beside it) says is reported in one line and is None, so that the
    images are decoded again and the cache written over the damaged one."""
    layout_path = cache_path.with_suffix(".json")
    # The buffer is moved into place before its layout (_decode_all): no layout, no cache yet.
    if not (cache_path.is_file() and layout_path.is_file()):
        return None
    try:
        layout = json.loads(layout_path.read_bytes())
        shapes = np.array(layout["shapes"], dtype=np.int64).reshape(len(names), 3)
        store = ImageStore(names=names, shapes=shapes, pixels=None, cache_path=cache_path)
        # what would read without an error and give the wrong pixels
        if not (
            layout["names"] == names
            and (shapes[:, :2] >= 1).all()
            and (shapes[:, 2] == 3).all()
            and store.pixels.dtype == np.uint8
            and store.pixels.shape == (store.nbytes,)
        ):
            raise ValueError("its layout and its pixels disagree")
    # json's, numpy's and the file system's words for a file that is not what its name promises
    except (OSError, ValueError, TypeError, KeyError, IndexError, EOFError, SyntaxError, RecursionError) as damage:
        if verbose:
            print(f"{label}: the image cache at {cache_path} was damaged ({first_line(damage)}) and is rebuilt")
        return None
    return store


def _decode_all(
    paths: list[Path], names: list[str], sizing: ImageSizing, loading: ImageLoading, label: str, cache: Path | None
) -> ImageStore:
    """Decode every image into memory, or into a new cache file at `cache`."""
    # Threads suffice: Pillow releases the GIL while it decodes, converts and resizes, and so
    # does a file write; they also work alike on every platform, unlike worker processes.
    with ThreadPoolExecutor(max_workers=loading.workers or available_cores()) as pool:
        shape_of = partial(decoded_shape, sizing=sizing, max_pixels=loading.max_pixels)
        shapes = np.array(list(pool.map(shape_of, paths)), dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(shapes.prod(axis=1))])

        def decode_row(row: int) -> None:
            decoded, (height, width, _) = decode_image(paths[row], sizing, max_pixels=loading.max_pixels), shapes[row]
            if decoded.shape[:2] != (height, width):
                raise BadFileError(
                    f"image {paths[row]} decoded to {decoded.shape[1]}x{decoded.shape[0]} pixels, not the "
                    f"{width}x{height} its header gives: replace it with an intact copy"
                )
            write(int(offsets[row]), decoded)

        pixels = np.empty(int(offsets[-1]), dtype=np.uint8) if cache is None else None

        def keep(offset: int, decoded: np.ndarray) -> None:
            pixels[offset : offset + decoded.size] = decoded.reshape(-1)

        layout = {"names": names, "shapes": shapes.tolist()}
        with contextlib.nullcontext(keep) if cache is None else _new_cache(cache, int(offsets[-1]), layout) as write:
            # map's results come in order, and an error cancels the images not yet started
            rows = pool.map(decode_row, range(len(paths)))
            for _ in tqdm(rows, total=len(paths), desc=f"decoding {label}", unit="img", disable=not loading.verbose):
                pass
    return ImageStore(names=names, shapes=shapes, pixels=pixels, cache_path=cache)


@contextlib.contextmanager
def _new_cache(cache_path: Path, size: int, layout: dict) -> Iterator[Callable[[int, np.ndarray], None]]:
    """`write(offset, pixels)` into the buffer of `size` bytes of a new cache file, which takes the
    name `cache_path` when the block ends without an error, `layout` beside it; removed when it fails."""
    partial_path = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.partial")
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        data_start = np.lib.format.open_memmap(partial_path, mode="w+", dtype=np.uint8, shape=(size,)).offset

        def write(offset: int, pixels: np.ndarray) -> None:
            # Writing to the file measured twice as fast here as filling a memory map of it.
            with open(partial_path, "r+b") as file:
                file.seek(data_start + offset)
                file.write(pixels)

        yield write
        os.replace(partial_path, cache_path)
        # the layout last: a cache with a layout is complete
        partial_layout = partial_path.with_suffix(".json")
        partial_layout.write_text(json.dumps(layout))
        os.replace(partial_layout, cache_path.with_suffix(".json"))
    except BaseException as error:
        with contextlib.suppress(OSError):  # also when there is no partial file, or not even its folder
            partial_path.unlink()
        if isinstance(error, OSError) and not isinstance(error, IQAError):
            in_the_way = isinstance(error, (FileExistsError, NotADirectoryError))
            reason = "a file is in the way of its folder" if in_the_way else error.strerror or error
            raise ConfigError(
                f"cannot write the image cache {cache_path} ({reason}): free space there, "
                f"pass another --cache_dir, or --cache_dir none to keep the images in memory only "
                f"(ImageLoading(cache_dir=None))"
            ) from error
        raise
