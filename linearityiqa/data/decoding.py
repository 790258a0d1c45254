"""Read and decode one image as every part of the project does, with Pillow and NumPy alone: the ONNX
scoring path decodes with this module too, without PyTorch. Images are resized with Pillow's bilinear
resize, which is what torchvision's resize does to a PIL image, as in the paper's code.

An image named by URI (s3://bucket/photo.jpg, gs://..., file:///...) is read whole, and a URI's folder
listed, with any file system pyarrow reads (docs/scale.md); pyarrow is imported only for a URI.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from linearityiqa.errors import BadFileError, ConfigError, MissingFileError, file_problem

# RFC 3986's scheme, then "://"; a Windows drive ("C:\\") has no "//" and one letter only
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
EXIF_ORIENTATION_TAG = 0x0112
# Pillow's threshold (a 9459 x 9459 image): above it Pillow only warns, and refuses twice as many.
# A warning is no answer for a file that may be a decompression bomb, so the limit is ours:
# one threshold, and an error that names the image and the option that raises it. The scripts
# switch Pillow's own check off (cli.scripts.own_the_pixel_limit), so that ours is the only one.
DEFAULT_MAX_PIXELS = 89_478_485


@contextlib.contextmanager
def _reading(path: str | Path) -> Iterator[None]:
    """Pillow's errors while the block reads the image, as one BadFileError naming the file."""
    try:
        yield
    except PermissionError as error:
        raise BadFileError(f"cannot read image {path} (permission denied): give this user read access to it") from error
    # Pillow's words for a file it cannot read: unknown format, truncated data, a broken header
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadFileError(
            f"cannot decode image {path} ({error}): replace it with an intact 8-bit image "
            f"(for a download, extract the file again)"
        ) from error


def open_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Pillow's lazy Image.open (the header only); BadFileError for a file Pillow cannot open or
    an image of more than `max_pixels` pixels, raised before a pixel of it is decoded. A URI's
    file is read whole first."""
    if is_uri(str(path)):
        source = io.BytesIO(read_bytes(str(path)))
    else:
        problem = file_problem(path)  # a named pipe would block Pillow's read, a device never end it
        if problem is not None:
            error = MissingFileError if problem == "does not exist" else BadFileError
            raise error(f"image {path} {problem}: replace it with the image file")
        source = path
    with _reading(path):
        image = Image.open(source)
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise BadFileError(
            f"image {path} declares {width} x {height} pixels, more than the limit of {max_pixels:,} "
            f"(--max_pixels): a small file that declares a huge image can exhaust the memory "
            f"(a decompression bomb); if you trust this image, raise --max_pixels"
        )
    return image


@dataclass(frozen=True)
class ImageSizing:
    """How decoded images are sized."""

    square_size: int | None = None  # images not of square_size x square_size are first resized to it (CLIVE)
    resize_hw: tuple[int, int] | None = None  # then, if given, every image is resized to this (height, width)

    def tag(self) -> str:
        """A short name for cache file names, e.g. "native", "sq500-498x664"."""
        parts = [f"sq{self.square_size}"] if self.square_size else []
        parts += [f"{self.resize_hw[0]}x{self.resize_hw[1]}"] if self.resize_hw else []
        return "-".join(parts) or "native"


def batches_by_size(sizes: Sequence[Hashable | None], batch_size: int) -> list[list[int]]:
    """Indices of `sizes` (each image's (height, width), say) grouped by size and cut into batches of
    at most `batch_size`: sizes in order of first appearance, indices in order within a size, so
    images of one size are batched in their own order. A size None (an image that cannot be read)
    puts its index in no batch."""
    if batch_size < 1:
        raise ConfigError(f"evaluation batch size {batch_size} is not positive: pass --eval_batch_size 1 or more")
    groups: dict[Hashable, list[int]] = {}
    for index, size in enumerate(sizes):
        if size is not None:
            groups.setdefault(size, []).append(index)
    return [
        group[start : start + batch_size] for group in groups.values() for start in range(0, len(group), batch_size)
    ]


def decoded_shape(path: str | Path, sizing: ImageSizing, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, ...]:
    """(height, width, 3) after decoding and sizing, from the file's header alone. Raises BadFileError."""
    with open_image(path, max_pixels=max_pixels) as image, _reading(path):
        width, height = image.size
        # Orientations 5-8 turn the stored pixels by 90 degrees for display: width and height swap.
        if image.getexif().get(EXIF_ORIENTATION_TAG) in {5, 6, 7, 8}:
            width, height = height, width  # as a viewer shows it (sized_rgb)
    if sizing.square_size is not None:
        height = width = sizing.square_size
    return (*(sizing.resize_hw or (height, width)), 3)


def decode_image(path: str | Path, sizing: ImageSizing, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image file `path` as sized_rgb makes it; `max_pixels` as open_image takes it."""
    with open_image(path, max_pixels=max_pixels) as image, _reading(path):
        image.load()
        return sized_rgb(image, sizing)


def sized_rgb(image: Image.Image, sizing: ImageSizing) -> np.ndarray:
    """A loaded PIL image as decode_image decodes a file: turned as its EXIF orientation says, in
    RGB, sized; an RGB uint8 H x W x 3 array.

    A camera stores a portrait photo as landscape pixels with a tag; scoring the stored pixels
    would score the photo on its side. The paper's code ignored the tag; an image without one
    (as the CLIVE photo the paper's demo scores) decodes to the same pixels either way.
    """
    if image.getexif().get(EXIF_ORIENTATION_TAG, 1) != 1:  # no tag, or upright: no copy
        image = ImageOps.exif_transpose(image)
    # Pillow's convert("RGB") clips 16-bit grey values at 255 instead of scaling them.
    if image.mode in {"I;16", "I;16L", "I;16B", "I;16N", "I"}:
        grey = np.rint(np.asarray(image, dtype=np.float64) / 257.0)
        image = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        raise ValueError("floating-point pixels (mode F) are not supported")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if sizing.square_size is not None and rgb.size != (sizing.square_size, sizing.square_size):
        rgb = rgb.resize((sizing.square_size, sizing.square_size), Image.BILINEAR)
    if sizing.resize_hw is not None:
        rgb = rgb.resize(sizing.resize_hw[::-1], Image.BILINEAR)
    return np.asarray(rgb)


def is_uri(path: str) -> bool:
    """Whether `path` names a file by URI rather than by a local path."""
    return bool(_URI.match(path))


def _file_system(uri: str):
    """(file system, path inside it) of `uri`; ConfigError where pyarrow knows no such file system."""
    from pyarrow import fs  # a missing pyarrow is the scale extra's (cli/scripts.EXTRAS)

    try:
        return fs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as error:  # ArrowInvalid is a ValueError; a missing bucket an OSError
        raise ConfigError(f"cannot reach {uri} ({error}): check the URI and the file system's credentials") from None


def read_bytes(uri: str) -> bytes:
    """The whole file `uri` names; MissingFileError or BadFileError naming it."""
    system, path = _file_system(uri)
    try:
        with system.open_input_file(path) as file:
            return file.read()
    except FileNotFoundError:
        raise MissingFileError(f"image {uri} does not exist") from None
    except (OSError, ValueError) as error:
        raise BadFileError(f"cannot read image {uri} ({error}): check that it is a file this user may read") from None


def is_folder(uri: str) -> bool:
    """Whether `uri` names a folder (a prefix, on an object store) that holds files."""
    from pyarrow import fs

    system, path = _file_system(uri)
    return system.get_file_info(path).type == fs.FileType.Directory


def folder_files(uri: str) -> list[str]:
    """The URIs of the files directly in the folder `uri` names (not its subfolders), sorted."""
    from pyarrow import fs

    system, path = _file_system(uri)
    scheme, _, _ = uri.partition("://")
    infos = system.get_file_info(fs.FileSelector(path.rstrip("/"), recursive=False))
    # A local file system gives absolute paths, an object store bucket/key: both follow the scheme's "://".
    return sorted(f"{scheme}://{info.path}" for info in infos if info.type == fs.FileType.File)
