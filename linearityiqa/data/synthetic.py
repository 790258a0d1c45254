"""A synthetic image quality data set in the official KonIQ-10k and CLIVE layouts (docs/data.md).

Each image's quality falls monotonically with the known amount of each distortion, and simulated raters
score it with a little noise, so a model can learn the scores. The files mimic the real downloads, so
make_info.py, training and testing run on them unchanged. Both layouts record the files they write in
<out>/synthetic_files.txt (`RECORD`): see earlier_files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, ImageDraw, ImageFilter

from linearityiqa.data.dataset_registry import CLIVE_TRAINING_EXAMPLES, KONIQ_IMAGES, KONIQ_SPLIT_SIZES
from linearityiqa.data.info_builders import CLIVE_RELEASE_FILES
from linearityiqa.errors import ConfigError, file_problem
from linearityiqa.records.writing import replacing


@dataclass(frozen=True)
class Degradation:
    """Severities in [0, 1] of the four distortions; 0 leaves the scene as it is."""

    contrast: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    jpeg: float = 0.0


# How much quality each distortion takes away at full severity.
QUALITY_LOSS_AT_FULL = Degradation(contrast=0.5, blur=0.8, noise=0.7, jpeg=0.6)
# Gaussian blur radius (standard deviation) in pixels at full blur severity.
BLUR_RADIUS_AT_FULL = 2.5


def quality_of(degradation: Degradation) -> float:
    """Latent quality in (0, 1]: a product of one factor per distortion, so it falls with each."""
    losses = zip(astuple(QUALITY_LOSS_AT_FULL), astuple(degradation))
    return math.prod(1.0 - loss_at_full * severity for loss_at_full, severity in losses)


def draw_degradation(rng: np.random.Generator) -> Degradation:
    """Each distortion is present with probability 1/2, at a uniform severity."""
    severities = rng.uniform(0.0, 1.0, size=4) * (rng.uniform(size=4) < 0.5)
    return Degradation(*(float(severity) for severity in severities))


def render_scene(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A random scene: a smooth colour field with shapes and striped or checkered patches on it.

    Detail is on a fixed pixel scale (sharp shape edges, texture periods of 3-12 pixels), as the
    distortions are, so that small images (48x48 for a CPU learning test) show a distortion as
    clearly as large ones. Textures cover much of the scene, so every image has fine detail for
    blur to remove, and the scene spans 0-255, so lost contrast is not mistaken for a dull scene.
    """
    coarse = rng.uniform(30, 225, size=(3, 4, 3)).astype(np.uint8)
    scene = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(scene)
    for _ in range(rng.integers(3, 9)):
        box = _random_box(rng, width, height)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.uniform() < 0.5 else draw.rectangle)(box, fill=colour)
    for _ in range(rng.integers(3, 6)):
        box = _random_box(rng, width, height, smallest=4)
        scene.paste(_texture(rng, box[2] - box[0], box[3] - box[1]), box[:2])
    pixels = np.asarray(scene, dtype=np.float32)
    low, high = pixels.min(), pixels.max()
    pixels = (pixels - low) * (255.0 / max(high - low, 1.0))
    return Image.fromarray(np.rint(pixels).astype(np.uint8))


def _random_box(rng: np.random.Generator, width: int, height: int, smallest: int = 10) -> tuple[int, int, int, int]:
    """A box at a random place, from 1/smallest to 1/2 of the image's width and height."""
    box_w = int(rng.integers(max(2, width // smallest), max(3, width // 2)))
    box_h = int(rng.integers(max(2, height // smallest), max(3, height // 2)))
    left, top = int(rng.integers(0, width - box_w + 1)), int(rng.integers(0, height - box_h + 1))
    return left, top, left + box_w, top + box_h


def _texture(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Stripes at a random angle and period, or a checkerboard, in two random colours."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(3, 12)
    if rng.uniform() < 0.5:
        angle = rng.uniform(0, np.pi)
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    else:
        mix = ((x // period + y // period) % 2).astype(np.float32)
    low, high = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    pixels = low + mix[..., None] * (high - low)
    return Image.fromarray(pixels.astype(np.uint8))


def degrade(scene: Image.Image, degradation: Degradation, rng: np.random.Generator) -> Image.Image:
    """Apply contrast loss, blur, noise and JPEG compression, in that order, at their severities."""
    pixels = np.asarray(scene, dtype=np.float32)
    pixels = pixels.mean() + (pixels - pixels.mean()) * (1.0 - 0.8 * degradation.contrast)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if degradation.blur > 0:
        # A radius in pixels, like the scene's detail, so the blur looks the same at any image size.
        image = image.filter(ImageFilter.GaussianBlur(radius=degradation.blur * BLUR_RADIUS_AT_FULL))
    if degradation.noise > 0:
        noise = rng.standard_normal(size=(scene.height, scene.width, 3), dtype=np.float32)
        pixels = np.asarray(image, dtype=np.float32) + noise * (45.0 * degradation.noise)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=jpeg_quality(degradation))
    return Image.open(buffer).convert("RGB")


def jpeg_quality(degradation: Degradation) -> int:
    """The JPEG quality setting for a severity: 95 at 0, down to 5 at 1, geometrically (22 at 1/2): the
    artifacts grow with the quantization step, which grows as the setting falls (5000 / quality below
    50), and a linear scale would spend half its range on settings of 50-95, whose artifacts hardly
    show in small images."""
    return round(95 * (5 / 95) ** degradation.jpeg)


def rate_on_five_point_scale(quality: float, rng: np.random.Generator) -> np.ndarray:
    """Counts of ratings 1..5 by 90-120 simulated raters, each with noise around 1 + 4 * quality."""
    raters = int(rng.integers(90, 121))
    opinions = np.clip(np.rint(1 + 4 * quality + rng.normal(0, 0.7, size=raters)), 1, 5)
    return np.bincount(opinions.astype(int), minlength=6)[1:]


KONIQ_SCORE_FILES = ("koniq10k_distributions_sets.csv", "koniq10k_scores_and_distributions.csv")
# The list of the files a run wrote, in the folder it wrote them to, and the line it starts with.
RECORD = "synthetic_files.txt"
RECORD_HEADER = "# files LinearityIQA's synthetic data set wrote here (linearityiqa/data/synthetic.py), one a line"
# What each layout writes, relative to its folder: a recorded name that is none of these is not trusted.
LAYOUT_FILES = {
    "koniq": re.compile(r"1024x768/[0-9]+\.jpg|koniq10k_(distributions_sets|scores_and_distributions)\.csv"),
    "clive": re.compile(r"Images/[0-9]+\.(bmp|JPG)|Images/trainingImages/t[0-9]+\.bmp|Data/All[A-Za-z]+_release\.mat"),
}
# What an interrupted write leaves beside its file (records/writing.py): `.<name>.<8 random characters>.partial`.
_TEMPORARY = re.compile(r"^(?P<folder>(.*/)?)\.(?P<name>[^/]+)\.[a-z0-9_]{8}\.partial$")


def write_koniq_layout(out_dir: str | Path, *, count: int, width: int = 1024, height: int = 768, seed: int = 0) -> Path:
    """Write `count` rated JPEG images of `width` x `height` pixels and the two KonIQ-10k score files,
    each image in a set drawn at random in KonIQ-10k's shares (7,058 : 1,000 : 2,015); `seed` seeds
    everything random. Returns the path of koniq10k_distributions_sets.csv."""
    _check_size(count, width, height)
    out_dir, rng = Path(out_dir), np.random.default_rng(seed)
    names = sorted(f"{number}.jpg" for number in rng.choice(10**10, size=count, replace=False) + 10**9)
    sets = _koniq_sets(rng, count)
    paths = [f"1024x768/{name}" for name in names]
    sets_path, scores_path = (out_dir / name for name in KONIQ_SCORE_FILES)
    counts_header = ["c1", "c2", "c3", "c4", "c5", "c_total"]
    with _recorded_run(out_dir, "koniq", written=paths + list(KONIQ_SCORE_FILES)):
        with _replacing(sets_path, newline="") as sets_file, _replacing(scores_path, newline="") as scores_file:
            sets_writer, scores_writer = csv.writer(sets_file), csv.writer(scores_file)
            sets_writer.writerow(["image_name", *counts_header, "MOS", "SD", "set"])
            scores_writer.writerow(["image_name", *counts_header, "MOS", "SD", "MOS_zscore"])
            # each image is rated as soon as it is made: the random draws come in this order
            for name, quality, image_set in zip(names, _write_images(out_dir, paths, rng, width, height), sets):
                counts = rate_on_five_point_scale(quality, rng)
                ratings = np.repeat(np.arange(1, 6), counts)
                mean, sd = float(ratings.mean()), float(ratings.std(ddof=1))
                shares = [f"{c / counts.sum():.6f}" for c in counts]
                mos_100 = f"{(mean - 1) * 25:.6f}"
                sets_writer.writerow([name, *shares, counts.sum(), mos_100, f"{sd:.6f}", image_set])
                scores_writer.writerow([name, *counts, counts.sum(), f"{mean:.6f}", f"{sd:.6f}", mos_100])
    return sets_path


def _koniq_sets(rng: np.random.Generator, count: int) -> list[str]:
    """The set of each of `count` images, in random order, in the official split's shares, rounded."""
    train = round(count * (KONIQ_SPLIT_SIZES[0] / KONIQ_IMAGES))
    val = round(count * (KONIQ_SPLIT_SIZES[1] / KONIQ_IMAGES))
    return list(rng.permutation(["training"] * train + ["validation"] * val + ["test"] * (count - train - val)))


def write_clive_layout(out_dir: str | Path, *, count: int, width: int = 500, height: int = 500, seed: int = 0) -> Path:
    """Write `count` rated images of `width` x `height` pixels and the three Data/ files into the release
    folder `out_dir`, which it returns; `seed` seeds everything random. Names are as in the release: the
    7 rater training examples t1.bmp..t7.bmp first, then 1.bmp, 2.bmp, ..., every fifth a JPEG (.JPG) as
    some are in CLIVE. Scores are on CLIVE's 0-100 slider: mean and std over 150-200 simulated raters."""
    _check_size(count, width, height)
    out_dir, rng = Path(out_dir), np.random.default_rng(seed)
    names = [f"t{k}.bmp" for k in range(1, CLIVE_TRAINING_EXAMPLES + 1)]
    names += [f"{k}.JPG" if k % 5 == 0 else f"{k}.bmp" for k in range(1, count + 1)]
    paths = [f"Images/trainingImages/{name}" if name.startswith("t") else f"Images/{name}" for name in names]
    means, stds = [], []
    with _recorded_run(out_dir, "clive", written=paths + [f"Data/{name}.mat" for name in CLIVE_RELEASE_FILES]):
        for quality in _write_images(out_dir, paths, rng, width, height):
            opinions = np.clip(100 * quality + rng.normal(0, 18, size=rng.integers(150, 201)), 0, 100)
            means.append(opinions.mean())
            stds.append(opinions.std(ddof=1))
        # MATLAB v5 files as in the release: a column cell array of names, 1xN rows of numbers.
        cells = np.empty((len(names), 1), dtype=object)
        cells[:, 0] = names
        for name, values in zip(CLIVE_RELEASE_FILES, (cells, np.array([means]), np.array([stds]))):
            with _replacing(out_dir / "Data" / f"{name}.mat", binary=True) as file:
                scipy.io.savemat(file, {name: values})
    return out_dir


def _write_images(
    out_dir: Path, paths: list[str], rng: np.random.Generator, width: int, height: int
) -> Iterator[float]:
    """Make, degrade and save an image at each of `paths` (BMP or JPEG by its suffix); yield each one's quality."""
    for path in paths:
        degradation = draw_degradation(rng)
        image = degrade(render_scene(rng, width, height), degradation, rng)
        options = {"format": "BMP"} if path.endswith(".bmp") else {"format": "JPEG", "quality": 95}
        with _replacing(out_dir / path, binary=True) as file:
            image.save(file, **options)
        yield quality_of(degradation)


def _check_size(count: int, width: int, height: int) -> None:
    if count < 1 or width < 8 or height < 8:
        raise ConfigError(
            f"cannot make {count} images of {width}x{height}: need at least 1 image(s) of at least 8x8 pixels"
        )


def earlier_files(out_dir: str | Path, layout: str) -> set[str]:
    """The files (paths relative to `out_dir`) that earlier runs of `layout` ("koniq" or "clive")
    recorded writing there and are still there, with the temporary files an interrupted write left;
    ConfigError where the folder holds a file that no run recorded (the user's own)."""
    folder, ours = Path(out_dir), set()
    present = _files_under(folder)
    if RECORD in present and file_problem(folder / RECORD) is None:  # a named pipe would never be read to its end
        lines = (folder / RECORD).read_text(encoding="utf-8", errors="replace").splitlines()
        if lines[:1] == [RECORD_HEADER]:  # else a file of the user's: the names it holds are not ours
            ours = {line for line in lines[1:] if LAYOUT_FILES[layout].fullmatch(line)} | {RECORD}
    # a temporary file is ours when the file it was to become is
    foreign = [path for path in present if _TEMPORARY.sub(r"\g<folder>\g<name>", path) not in ours]
    if foreign:
        raise ConfigError(
            f"{folder} holds {len(foreign)} file(s) that no synthetic data set wrote, e.g. {folder / foreign[0]}: "
            f"write the data set into a new or empty folder (make_synthetic.py --out), or one it wrote before; "
            f"nothing was written or removed"
        )
    return {path for path in present if path != RECORD}


def _files_under(folder: Path) -> list[str]:
    """The relative paths of every entry under `folder` but folders (a link to one included, not
    followed); none where `folder` is not a folder (writing it then says why)."""
    if not folder.is_dir():
        return []
    found = []
    for root, folders, files in os.walk(folder, onerror=_raise):
        links = [name for name in folders if os.path.islink(os.path.join(root, name))]
        found += [Path(root, name).relative_to(folder).as_posix() for name in files + links]
    return sorted(found)


def _raise(error: OSError) -> None:
    raise error  # a folder that cannot be listed may hold files of the user's


@contextlib.contextmanager
def _recorded_run(folder: Path, layout: str, *, written: list[str]) -> Iterator[None]:
    """Record the files the block writes before it starts, with the earlier runs' (an interrupted
    run leaves no file unrecorded); once it has written them, remove the earlier files it did not
    write again and record its own alone."""
    earlier = earlier_files(folder, layout)
    folder.mkdir(parents=True, exist_ok=True)  # a file in its way is the caller's to name (--out)
    _write_record(folder, earlier | set(written))
    yield
    for path in sorted(earlier - set(written)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(folder / path)
    _write_record(folder, written)


def _write_record(folder: Path, paths: Iterable[str]) -> None:
    lines = [RECORD_HEADER, *sorted(path for path in paths if not _TEMPORARY.fullmatch(path))]
    with _replacing(folder / RECORD) as file:
        file.write("\n".join(lines) + "\n")


def _replacing(path: Path, **kwargs):
    return replacing(path, what="a file of the synthetic data set", advice="write it into another folder", **kwargs)
