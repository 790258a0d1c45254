"""A rated data set of KonIQ-10k's shape (1024x768 JPEGs and their scores), generated in parallel.

synthetic.py renders an image in about 70 ms on one core; a pool of processes makes the
thousand images of an epoch benchmark in seconds on a GPU machine's cores. The images are
scored with their generating quality (synthetic.quality_of) and split 70 : 10 : 20 in a
`set` column, so the data set has a fixed split, as KonIQ-10k does.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from linearityiqa.data.dataset_registry import DataSource
from linearityiqa.data.image_store import available_cores
from linearityiqa.data.info_builders import user_info_from_csv
from linearityiqa.data.info_files import write_info
from linearityiqa.data.synthetic import degrade, draw_degradation, quality_of, render_scene

SHARES = {"training": 0.7, "validation": 0.1, "test": 0.2}


def _write_image(path: str, seed: int, width: int, height: int) -> float:
    rng = np.random.default_rng(seed)
    degradation = draw_degradation(rng)
    degrade(render_scene(rng, width, height), degradation, rng).save(path, format="JPEG", quality=95)
    return quality_of(degradation)


def rated_source(work_dir: Path, *, count: int, width: int = 1024, height: int = 768) -> DataSource:
    """The data set of `count` rated JPEGs in a folder of `work_dir`, written there unless a run left it."""
    folder = work_dir / f"rated-{count}-{width}x{height}"
    image_dir, info_path = folder / "images", folder / "info.mat"
    if not info_path.is_file():
        image_dir.mkdir(parents=True, exist_ok=True)
        names = [f"{number:05d}.jpg" for number in range(count)]
        paths = [str(image_dir / name) for name in names]
        with ProcessPoolExecutor(max_workers=available_cores()) as pool:
            qualities = list(
                pool.map(_write_image, paths, range(count), [width] * count, [height] * count, chunksize=8)
            )
        sets = np.random.default_rng(count).choice([*SHARES], size=count, p=[*SHARES.values()])
        scores_csv = folder / "scores.csv"
        with open(scores_csv, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["image_name", "mos", "set"])
            writer.writerows(zip(names, (f"{100 * quality:.3f}" for quality in qualities), sets))
        partial = folder / f".info.{os.getpid()}.mat"
        write_info(partial, user_info_from_csv(scores_csv))
        os.replace(partial, info_path)
    return DataSource.open("generated", data_info=info_path, im_dir=image_dir)
