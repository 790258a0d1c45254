"""Score images with a trained checkpoint: the library behind test_demo.py.

A score is the fused head's output mapped onto the training data's scale with the
checkpoint's first linear mapping: k[0] * y + b[0]. Images are decoded and normalized as
the data sets decode them (data/image_store.decode_image), in a pool of threads that runs
ahead of the forward pass, and go to the device as uint8, to be normalized there
(acceleration.py). Images of different sizes cannot share a batch, so batches are formed
among images of equal size after resizing (data/batches.py); results come back in input
order, with a message instead of a score for an image that failed.
"""

from __future__ import annotations

import glob
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import torch
from tqdm import tqdm

from IQAmodel import IQAModel
from linearityiqa.acceleration import (
    Precision,
    choose_precision,
    forward_fn,
    out_of_memory,
    prepare_images,
    release_cached_memory,
    set_memory_format,
    uses_channels_last,
)
from linearityiqa.data.batches import batches_by_size
from linearityiqa.data.decoding import DEFAULT_MAX_PIXELS, ImageSizing, decode_image, decoded_shape
from linearityiqa.data.image_store import available_cores
from linearityiqa.data.image_transforms import checked_resize_hw, to_uint8_tensor
from linearityiqa.errors import BadFileError, ConfigError, IQAError, MissingFileError, file_problem
from linearityiqa.records.checkpoint import linear_mapping, load_checkpoint, load_model_state, model_settings

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Batches decoded ahead of the one in the forward pass: enough to hide decoding, little memory.
_BATCHES_AHEAD = 2


@dataclass(frozen=True)
class Scorer:
    """A trained model in eval mode on its device, with the mapping of its fused head.

    Args:
        model: the IQAModel with the checkpoint's weights.
        k: slopes of the three heads' linear mappings, the fused head's first.
        b: intercepts of the three mappings.
        device: where the model runs.
        recorded: the settings the checkpoint records ({} for the authors' files).
        precision: the autocast the model runs under.
        channels_last: whether the model (and so its input) is in channels_last.
    """

    model: torch.nn.Module
    k: list[float]
    b: list[float]
    device: torch.device
    recorded: Mapping[str, Any]
    precision: Precision
    channels_last: bool

    def fused_predictions(self, images: torch.Tensor) -> list[float]:
        """The fused head's outputs (before the mapping) for an N x 3 x H x W uint8 batch."""
        with torch.inference_mode():
            batch = prepare_images(images, self.device, channels_last=self.channels_last)
            return forward_fn(self.precision, self.device)(self.model, batch)[2].reshape(-1).tolist()


@dataclass(frozen=True)
class ImageScore:
    """The outcome for one image: a score, or the message saying why there is none."""

    path: str
    score: float | None = None
    error: str | None = None


def load_scorer(
    trained_model_file: str,
    *,
    requested: Mapping[str, Any],
    defaults: Mapping[str, Any],
    device: torch.device,
    opt_level: str = "O0",
) -> Scorer:
    """Build the model a checkpoint was trained as and load its weights.

    Args:
        trained_model_file: the checkpoint (this project's or the authors' layout).
        requested: the model settings asked for (arch, pool, use_bn_end, P6, P7).
        defaults: those settings' defaults; a requested value that differs from its default
            is explicit and must agree with a setting the checkpoint records.
        device: where the model runs.
        opt_level: O0 (float32), O1 (float16 autocast) or bf16 (bfloat16 autocast); CUDA only.
    """
    # Mapped, the weights are copied once, into the model, instead of first into memory of their
    # own (0.2 s of resnext101_32x8d's 350 MB on a CPU); the mapping ends with this function.
    checkpoint = load_checkpoint(trained_model_file, map_location="cpu", mmap=True)
    settings = model_settings(checkpoint, requested, defaults, trained_model_file)
    k, b = linear_mapping(checkpoint, trained_model_file)
    # Built on the meta device, the model skips a random initialisation that the checkpoint
    # overwrites anyway (0.6 s of resnext101_32x8d on a CPU); to_empty then allocates it. Every
    # tensor of IQAModel is in its state_dict, so the strict load below fills them all.
    with torch.device("meta"):
        model = IQAModel(**settings, pretrained=False)
    model.to_empty(device=device)
    load_model_state(model, checkpoint, trained_model_file, settings)
    channels_last = uses_channels_last(device)
    return Scorer(
        model=set_memory_format(model.eval(), channels_last=channels_last),
        k=k,
        b=b,
        device=device,
        recorded=dict(checkpoint.get("settings") or {}),
        precision=choose_precision(opt_level, device),
        channels_last=channels_last,
    )


def image_sizing(
    recorded: Mapping[str, Any],
    *,
    resize: bool,
    resize_size_h: int,
    resize_size_w: int,
    defaults: Mapping[str, Any],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageSizing:
    """How to size images: as the checkpoint records, unless an option says otherwise.

    Args:
        recorded: the checkpoint's settings; resize, resize_size_h and resize_size_w are used
            when present and the matching option is left at its default.
        resize: --resize.
        resize_size_h: --resize_size_h.
        resize_size_w: --resize_size_w.
        defaults: the three options' defaults.
        max_pixels: the most pixels a resized image may have (--max_pixels).
    """
    asked = {"resize": resize, "resize_size_h": resize_size_h, "resize_size_w": resize_size_w}
    # An option left at its default defers to the checkpoint; an option that was given wins.
    chosen = {
        name: recorded[name] if name in recorded and value == defaults[name] else value for name, value in asked.items()
    }
    if not chosen["resize"]:
        return ImageSizing()
    height, width = int(chosen["resize_size_h"]), int(chosen["resize_size_w"])
    return ImageSizing(resize_hw=checked_resize_hw(height, width, max_pixels=max_pixels))


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
        paths = sorted(path for path in glob.glob(source, recursive=True) if os.path.isfile(path))
        if not paths:
            raise MissingFileError(
                f"no file matches {source}: check the pattern (quote it, so that the shell does not expand it)"
            )
        return paths
    raise MissingFileError(
        f"image {source} {file_problem(source)}: pass an image, a folder, a glob pattern or - "
        f"(for paths on standard input) as --img"
    )


def _folder_images(folder: str) -> list[str]:
    """A folder's image files, sorted by name; not its subfolders, nor pipes or devices named like images."""
    names = sorted(
        name
        for name in os.listdir(folder)
        if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, name))
    )
    if not names:
        raise MissingFileError(f"folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return [os.path.join(folder, name) for name in names]


def score_images(
    scorer: Scorer,
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
        scorer: the model, its device, precision and mapping (load_scorer).
        paths: the image files.
        sizing: how images are resized before scoring.
        batch_size: most images per forward pass.
        max_pixels: refuse images of more pixels than this (see image_store.open_image).
        progress: show a progress bar on stderr.
        workers: decoding threads (default: one per core, at most 8).
    """
    measure = partial(_decoded_size, sizing=sizing, max_pixels=max_pixels)
    load = partial(_load, sizing=sizing, max_pixels=max_pixels)
    results: list[ImageScore | None] = [None] * len(paths)
    # Threads suffice: Pillow releases the GIL while it decodes and resizes.
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
            for index, result in _score_batch(scorer, paths, indices, loaded):
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
    load: Callable[[str], torch.Tensor | IQAError],
) -> Iterator[tuple[list[int], list[torch.Tensor | IQAError]]]:
    """Each batch's images as tensors (or errors), decoding up to _BATCHES_AHEAD batches ahead."""
    pending: deque[tuple[list[int], list[Future]]] = deque()
    for batch in batches:
        pending.append((batch, [pool.submit(load, paths[index]) for index in batch]))
        if len(pending) > _BATCHES_AHEAD:
            yield _gathered(*pending.popleft())
    while pending:
        yield _gathered(*pending.popleft())


def _gathered(indices: list[int], futures: list[Future]) -> tuple[list[int], list[torch.Tensor | IQAError]]:
    return indices, [future.result() for future in futures]


def _load(path: str, *, sizing: ImageSizing, max_pixels: int) -> torch.Tensor | IQAError:
    try:
        return to_uint8_tensor(decode_image(path, sizing, max_pixels=max_pixels))
    except IQAError as error:
        return error


def _score_batch(
    scorer: Scorer, paths: Sequence[str], indices: Sequence[int], loaded: Sequence[torch.Tensor | IQAError]
) -> Iterator[tuple[int, ImageScore]]:
    """(index, result) of each image of one batch."""
    by_shape: dict[torch.Size, list[int]] = {}
    for index, item in zip(indices, loaded):
        if isinstance(item, IQAError):
            yield index, ImageScore(paths[index], error=str(item))
        else:
            # A header that lies about the size would otherwise break torch.stack.
            by_shape.setdefault(item.shape, []).append(index)
    tensors = dict(zip(indices, loaded))
    for group in by_shape.values():
        yield from _score_group(scorer, paths, group, [tensors[index] for index in group])


def _score_group(
    scorer: Scorer, paths: Sequence[str], group: Sequence[int], images: Sequence[torch.Tensor]
) -> Iterator[tuple[int, ImageScore]]:
    """(index, result) of images of one size, scored together; a batch that runs out of memory is
    scored again one image at a time, and an image that alone does gets a message."""
    try:
        fused = scorer.fused_predictions(torch.stack(list(images)))
    except IQAError as error:  # e.g. images too small for the model's pyramid pooling
        yield from ((index, ImageScore(paths[index], error=str(error))) for index in group)
        return
    except RuntimeError as error:
        if not out_of_memory(error):
            raise
        release_cached_memory(scorer.device)
        if len(group) > 1:
            for index, image in zip(group, images):
                yield from _score_group(scorer, paths, [index], [image])
            return
        height, width = images[0].shape[-2:]
        message = (
            f"out of memory scoring image {paths[group[0]]} at {width}x{height} on {scorer.device.type}: "
            f"score it with --resize (or on a machine with more memory)"
        )
        yield group[0], ImageScore(paths[group[0]], error=message)
        return
    k, b = scorer.k[0], scorer.b[0]
    yield from ((index, ImageScore(paths[index], score=k * y + b)) for index, y in zip(group, fused))
