"""Where each data set lives by default, how its images are sized, and which split it uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from errors import ConfigError, MissingFileError
from info_files import IQAInfo, read_info, split_sizes_from_ratios


@dataclass(frozen=True)
class DatasetSpec:
    """What the loader needs to know about a data set beyond its info file.

    Args:
        name: the data set's name, also used to label its image cache.
        info_path: its info file.
        im_dir: the folder its image names are relative to.
        official_split: (train_ratio, train_and_val_ratio) of a split the data set comes with.
        square_size: side to which images that are not square of this size are resized first.
    """

    name: str
    info_path: Path
    im_dir: Path
    official_split: tuple[float, float] | None = None
    square_size: int | None = None


KONIQ_TRAIN, KONIQ_VAL, KONIQ_ALL = 7058, 1000, 10073
KNOWN_DATASETS = {
    "KonIQ-10k": DatasetSpec(
        name="KonIQ-10k", info_path=Path("data/KonIQ-10kinfo.mat"), im_dir=Path("KonIQ-10k"),
        official_split=(KONIQ_TRAIN / KONIQ_ALL, (KONIQ_TRAIN + KONIQ_VAL) / KONIQ_ALL),
    ),
    # A few CLIVE photos are not 500x500; the authors resized them to it before anything else.
    "CLIVE": DatasetSpec(name="CLIVE", info_path=Path("data/CLIVEinfo.mat"), im_dir=Path("CLIVE"), square_size=500),
}


def get_dataset_spec(dataset: str, *, data_info: str | Path | None = None,
                     im_dir: str | Path | None = None) -> DatasetSpec:
    """The spec of a known data set, with paths overridden where given, or of a user's data set.

    Args:
        dataset: "KonIQ-10k", "CLIVE", or any other name for a user's data set.
        data_info: the info file; required for a user's data set.
        im_dir: the image folder; required for a user's data set.
    """
    known = KNOWN_DATASETS.get(dataset)
    if known is None:
        if data_info is None or im_dir is None:
            raise ConfigError(
                f"data set {dataset!r} is not one of {', '.join(KNOWN_DATASETS)}: for your own data "
                f"set pass both its info file (data_info) and its image folder (im_dir)"
            )
        return DatasetSpec(name=dataset, info_path=Path(data_info), im_dir=Path(im_dir))
    return DatasetSpec(
        name=known.name,
        info_path=Path(data_info) if data_info is not None else known.info_path,
        im_dir=Path(im_dir) if im_dir is not None else known.im_dir,
        official_split=known.official_split,
        square_size=known.square_size,
    )


def resolve_split_sizes(spec: DatasetSpec, info: IQAInfo, *, train_ratio: float | None,
                        train_and_val_ratio: float | None) -> tuple[int, int]:
    """(train_size, train_and_val_size) for the given ratios, or for the data set's own split.

    Ratios of None ask for the data set's own split: the sizes recorded in its info file,
    else the spec's official ratios (the authors' KonIQ-10k file records no sizes).

    Args:
        spec: the data set.
        info: its info file's content.
        train_ratio: share of training images, or None.
        train_and_val_ratio: share of training and validation images together, or None.
    """
    if (train_ratio is None) != (train_and_val_ratio is None):
        raise ConfigError("pass both train_ratio and train_and_val_ratio, or neither for the data set's own split")
    if train_ratio is not None:
        return split_sizes_from_ratios(len(info), train_ratio, train_and_val_ratio)
    if info.split_sizes is not None:
        train, val, _ = info.split_sizes
        return train, train + val
    if spec.official_split is not None:
        return split_sizes_from_ratios(len(info), *spec.official_split)
    raise ConfigError(
        f"{spec.name} ({spec.info_path}) has no split of its own: pass train_ratio and train_and_val_ratio"
    )


def has_own_split(spec: DatasetSpec) -> bool:
    """Whether the data set comes with a split (KonIQ-10k's official one, or sizes its info file records)."""
    return spec.official_split is not None or read_info(spec.info_path).split_sizes is not None


def check_linked(spec: DatasetSpec) -> None:
    """A data set is usable when its info file and its image folder are where the spec says."""
    missing = [path for path, there in ((spec.info_path, spec.info_path.is_file()), (spec.im_dir, spec.im_dir.is_dir()))
               if not there]
    if missing:
        raise MissingFileError(
            f"{spec.name} is not set up ({missing[0]} not found): link its images to {spec.im_dir} and build "
            f"{spec.info_path} with make_info.py (README, Data), or pass --im_dir and --data_info; "
            f"python main.py --quickstart tries everything on synthetic data")
