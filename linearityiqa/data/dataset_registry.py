"""Where each data set lives by default, how its images are sized, and which split it uses: a data
set is resolved once into a `DataSource` (its spec and its info file's content), which the loaders
of every split share; `Split` says which images an experiment trains, validates and tests on."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from linearityiqa.data.image_store import ImageLoading, ImageStore, load_images
from linearityiqa.data.info_files import SPLITS, IQAInfo, read_info, split_sizes_from_ratios
from linearityiqa.errors import BadFileError, ConfigError, MissingFileError, file_problem

# KonIQ-10k's official split: training, validation and test images.
KONIQ_SPLIT_SIZES = (7058, 1000, 2015)
KONIQ_IMAGES = sum(KONIQ_SPLIT_SIZES)
KONIQ_HW = (768, 1024)  # height, width of every KonIQ-10k photo in the 1024x768 download
# The first entries of CLIVE's release are examples shown to the raters, not part of the study.
CLIVE_TRAINING_EXAMPLES = 7
CLIVE_SIDE = 500


@dataclass(frozen=True)
class DatasetSpec:
    """What the loader needs to know about a data set beyond its info file."""

    name: str  # also labels its image cache
    info_path: Path
    im_dir: Path  # the folder its image names are relative to
    official_split: tuple[float, float] | None = None  # (train_ratio, train_and_val_ratio) of a split it comes with
    square_size: int | None = None  # the side to which images that are not square of it are resized first


KNOWN_DATASETS = {
    "KonIQ-10k": DatasetSpec(
        name="KonIQ-10k",
        info_path=Path("data/KonIQ-10kinfo.mat"),
        im_dir=Path("KonIQ-10k"),
        official_split=(KONIQ_SPLIT_SIZES[0] / KONIQ_IMAGES, sum(KONIQ_SPLIT_SIZES[:2]) / KONIQ_IMAGES),
    ),
    # A few CLIVE photos are not 500x500; the authors resized them to it before anything else.
    "CLIVE": DatasetSpec(
        name="CLIVE", info_path=Path("data/CLIVEinfo.mat"), im_dir=Path("CLIVE"), square_size=CLIVE_SIDE
    ),
}


def get_dataset_spec(
    dataset: str, *, data_info: str | Path | None = None, im_dir: str | Path | None = None
) -> DatasetSpec:
    """The spec of "KonIQ-10k" or "CLIVE", with the info file (`data_info`) and the image folder
    (`im_dir`) overridden where given, or of a user's data set of any other name, which needs both."""
    paths = {key: Path(path) for key, path in (("info_path", data_info), ("im_dir", im_dir)) if path is not None}
    if dataset in KNOWN_DATASETS:
        return replace(KNOWN_DATASETS[dataset], **paths)
    if len(paths) < 2:
        raise ConfigError(
            f"data set {dataset!r} is not one of {', '.join(KNOWN_DATASETS)}: for your own data "
            f"set pass both its info file (--data_info) and its image folder (--im_dir)"
        )
    return DatasetSpec(name=dataset, **paths)


def check_linked(spec: DatasetSpec) -> None:
    """A data set is usable when its info file and its image folder are where the spec says."""
    info_problem = file_problem(spec.info_path)
    if info_problem is not None and info_problem != "does not exist":
        raise BadFileError(f"info file {spec.info_path} {info_problem}: pass the info file itself as --data_info")
    if spec.im_dir.exists() and not spec.im_dir.is_dir():
        raise BadFileError(f"image folder {spec.im_dir} is not a folder: pass the folder of the images as --im_dir")
    missing = [path for path in (spec.info_path, spec.im_dir) if not path.exists()]
    if missing:
        raise MissingFileError(
            f"{spec.name} is not set up ({missing[0]} not found): link its images to {spec.im_dir} and build "
            f"{spec.info_path} with make_info.py (docs/data.md), or pass --im_dir and --data_info; "
            f"python main.py --quickstart tries everything on synthetic data"
        )


@dataclass(frozen=True)
class Split:
    """Which images of a data set one experiment trains, validates and tests on.

    `exp_id` picks the ordering of the info file's index; `train_ratio` is the share of training
    images, `train_and_val_ratio` of training and validation images together: both None for the data
    set's own split (KonIQ-10k's official one, or the sizes its info file records), 0 and 0 to make
    every image a test image (a test across data sets).
    """

    exp_id: int = 0
    train_ratio: float | None = None
    train_and_val_ratio: float | None = None

    def __post_init__(self) -> None:
        if (self.train_ratio is None) != (self.train_and_val_ratio is None):
            raise ConfigError("pass both train_ratio and train_and_val_ratio, or neither for the data set's own split")


# Every image a test image: how a data set without a split of its own is tested across data sets.
ALL_FOR_TESTING = Split(train_ratio=0, train_and_val_ratio=0)


@dataclass(frozen=True)
class DataSource:
    """A data set resolved once: its spec (see get_dataset_spec) and its info file's content."""

    spec: DatasetSpec
    info: IQAInfo

    @classmethod
    def open(
        cls, dataset: str = "KonIQ-10k", *, data_info: str | Path | None = None, im_dir: str | Path | None = None
    ) -> DataSource:
        """The data set `dataset` (see get_dataset_spec), its info file read and its folders checked."""
        spec = get_dataset_spec(dataset, data_info=data_info, im_dir=im_dir)
        check_linked(spec)
        return cls(spec, read_info(spec.info_path))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def has_own_split(self) -> bool:
        """Whether the data set comes with a split (KonIQ-10k's official one, or sizes its info file records)."""
        return self.spec.official_split is not None or self.info.split_sizes is not None

    def split_sizes(self, split: Split) -> tuple[int, int]:
        """(train_size, train_and_val_size) of the split's ratios, or of the data set's own split."""
        if split.train_ratio is not None:
            return split_sizes_from_ratios(len(self.info), split.train_ratio, split.train_and_val_ratio)
        if self.info.split_sizes is not None:
            train, val, _ = self.info.split_sizes
            return train, train + val
        if self.spec.official_split is not None:  # the authors' KonIQ-10k file records no sizes
            return split_sizes_from_ratios(len(self.info), *self.spec.official_split)
        raise ConfigError(
            f"{self.name} ({self.spec.info_path}) has no split of its own: pass --train_ratio and --train_and_val_ratio"
        )

    def positions(self, status: str, split: Split, *, max_items: int | None = None) -> np.ndarray:
        """Positions (0-based, in file order) of the images of split `status` ("train", "val" or "test"),
        the first max_items of them if given, by the rule of info_files.py's docstring."""
        if status not in SPLITS:
            raise ConfigError(f"status {status!r} is not one of {', '.join(SPLITS)}")
        column = self.info.index[:, split.exp_id % self.info.index.shape[1]]
        edges, part = (0, *self.split_sizes(split), len(column)), SPLITS.index(status)
        return np.flatnonzero(np.isin(self.info.ref_ids, column[edges[part] : edges[part + 1]]))[:max_items]

    def load_images(self, positions: np.ndarray, loading: ImageLoading) -> ImageStore:
        """The images at `positions`, decoded (or mapped from the cache) as `loading` says."""
        names = [self.info.im_names[p] for p in positions]
        return load_images(self.spec.im_dir, names, label=self.name, loading=loading, square_size=self.spec.square_size)
