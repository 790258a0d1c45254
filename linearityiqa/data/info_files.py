"""The info files that describe a data set, in the paper authors' layout, and the split rule.

An info file is a MATLAB v7.3 `.mat` file, which is HDF5. The h5py shapes are:

- `im_names` (1, N): object references, each to a MATLAB char array of uint16 codes.
- `subjective_scores`, `subjective_scoresSTD`, `ref_ids` (1, N) float64; `ref_ids` are 1..N.
- `index` (N, M) float64: each column is one ordering of the ref ids.
- `split_sizes` (1, 3) float64, optional and written by this project only: the number of
  training, validation and test images of a data set that comes with its own split. The
  authors' reader ignores it, so the files stay readable by their code.

Experiment `exp_id` takes column `exp_id % M`; its first `train_size` ids are the training
images, the ids up to `train_and_val_size` the validation images, the rest the test images.
A split lists its images in file order, not in index order, as the authors' code did.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from linearityiqa.errors import BadFileError, ConfigError, MissingFileError
from linearityiqa.records.writing import replacing_path

SPLITS = ("train", "val", "test")
REQUIRED_KEYS = ("im_names", "subjective_scores", "subjective_scoresSTD", "ref_ids", "index")
# MATLAB v7.3 files are HDF5 files behind a 512-byte header that MATLAB checks before opening.
MATLAB_USERBLOCK_SIZE = 512


@dataclass(frozen=True)
class IQAInfo:
    """The content of one info file; arrays are 1-D over the N images unless noted.

    Args:
        im_names: image file names, relative to the data set's image folder.
        scores: mean opinion scores.
        stds: standard deviations of the opinion scores.
        ref_ids: the id of each image, as used in `index`.
        index: (N, M) integer array; each column is one ordering of the ref ids.
        split_sizes: (train, val, test) image counts of a data set's own split, or None.
    """

    im_names: list[str]
    scores: np.ndarray
    stds: np.ndarray
    ref_ids: np.ndarray
    index: np.ndarray
    split_sizes: tuple[int, int, int] | None = None

    def __len__(self) -> int:
        return len(self.im_names)


def read_info(path: str | Path) -> IQAInfo:
    """Read an info file written by the paper's authors or by `write_info`.

    Args:
        path: the `.mat` (HDF5) file.

    Raises:
        MissingFileError: the file does not exist.
        BadFileError: the file is not HDF5 or its content breaks the layout.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"info file {path} not found: build it with make_info.py (see README, Data) "
            f"or pass the path of your info file"
        )
    try:
        with h5py.File(path, "r") as file:
            info = _read_open_info(file, path)
    except OSError as error:
        raise BadFileError(
            f"{path} is not an HDF5 (MATLAB v7.3) file ({error}): rebuild it with make_info.py, "
            f"or in MATLAB save it with save(..., '-v7.3')"
        ) from error
    _check_info(info, path)
    return info


def _read_open_info(file: h5py.File, path: Path) -> IQAInfo:
    missing = [key for key in REQUIRED_KEYS if key not in file]
    if missing:
        raise BadFileError(
            f"{path} lacks the dataset(s) {', '.join(missing)} of an info file: rebuild it with make_info.py"
        )
    refs = np.asarray(file["im_names"]).ravel()
    index = np.asarray(file["index"])
    if index.ndim != 2:
        raise BadFileError(f"{path}: index has shape {index.shape}, expected (N, M); rebuild it with make_info.py")
    split_sizes = None
    if "split_sizes" in file:
        split_sizes = tuple(int(size) for size in np.asarray(file["split_sizes"]).ravel())
    return IQAInfo(
        im_names=[_read_matlab_string(file, ref) for ref in refs],
        scores=np.asarray(file["subjective_scores"], dtype=np.float64).ravel(),
        stds=np.asarray(file["subjective_scoresSTD"], dtype=np.float64).ravel(),
        ref_ids=_as_ids(np.asarray(file["ref_ids"]).ravel(), path, "ref_ids"),
        index=_as_ids(index, path, "index"),
        split_sizes=split_sizes,
    )


def _read_matlab_string(file: h5py.File, ref: h5py.Reference) -> str:
    # h5py's low-level calls read the 10,073 KonIQ names 4x faster than `file[ref][()]`.
    dataset = h5py.h5r.dereference(ref, file.id)
    codes = np.empty(dataset.shape, dtype="<u2")
    dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, codes)
    # MATLAB stores char arrays as UTF-16 code units, one uint16 each.
    return codes.ravel(order="F").tobytes().decode("utf-16-le")


def _as_ids(values: np.ndarray, path: Path, key: str) -> np.ndarray:
    ids = np.rint(values).astype(np.int64)
    if not np.array_equal(ids, values):
        raise BadFileError(f"{path}: {key} holds values that are not whole numbers; rebuild it with make_info.py")
    return ids


def _check_info(info: IQAInfo, path: Path) -> None:
    count = len(info.im_names)
    for key, values in (
        ("subjective_scores", info.scores),
        ("subjective_scoresSTD", info.stds),
        ("ref_ids", info.ref_ids),
    ):
        if len(values) != count:
            raise BadFileError(f"{path}: {key} has {len(values)} entries but im_names has {count}")
    for key, values in (("subjective_scores", info.scores), ("subjective_scoresSTD", info.stds)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            entry = bad[0]
            raise BadFileError(
                f"{path}: {key} entry {entry + 1} ({info.im_names[entry]}) is {values[entry]}, "
                f"not a finite number; fix the source scores and rebuild the file"
            )
    _check_names(info.im_names, path)
    _check_index(info, path)


def leaves_its_folder(name: str) -> bool:
    """Whether an image name points outside the folder it is relative to (absolute, or through ..)."""
    return not name or os.path.isabs(name) or ".." in Path(name).parts


def _check_names(names: list[str], path: Path) -> None:
    first_entry: dict[str, int] = {}
    for entry, name in enumerate(names, start=1):
        if name in first_entry:
            raise BadFileError(f"{path}: entries {first_entry[name]} and {entry} both name image {name}")
        if leaves_its_folder(name):
            raise BadFileError(
                f"{path}: entry {entry} names image {name!r}, which is not a path inside the image "
                f"folder; names must be relative to it, without '..'; rebuild the file"
            )
        first_entry[name] = entry


def _check_index(info: IQAInfo, path: Path) -> None:
    count = len(info.im_names)
    if len(np.unique(info.ref_ids)) != count:
        raise BadFileError(f"{path}: ref_ids repeat an id; each image needs its own id")
    if info.index.shape[0] != count or info.index.shape[1] == 0:
        raise BadFileError(f"{path}: index has shape {info.index.shape}, expected ({count}, M) with M >= 1")
    orderings = np.sort(info.index, axis=0)
    wrong = np.flatnonzero((orderings != np.sort(info.ref_ids)[:, None]).any(axis=0))
    if wrong.size:
        raise BadFileError(f"{path}: index column {wrong[0] + 1} is not an ordering of the {count} ref_ids")
    if info.split_sizes is not None and (len(info.split_sizes) != 3 or sum(info.split_sizes) != count):
        raise BadFileError(f"{path}: split_sizes {info.split_sizes} do not add up to the {count} images")


def write_info(path: str | Path, info: IQAInfo) -> None:
    """Write `info` as MATLAB v7.3 does, so that MATLAB, the authors' code and `read_info` read it.

    The file is written whole or not at all (records/writing.py): an interrupted run never
    leaves a half-written info file, and an earlier one stays as it was.

    Args:
        path: the `.mat` file to write; its folder is created if needed.
        info: what to write.
    """
    with replacing_path(path, what="info file", advice="free space, or pass another --out") as partial:
        _write_hdf5(partial, info)
        with open(partial, "r+b") as raw:
            raw.write(_matlab_header())


def _write_hdf5(partial: str, info: IQAInfo) -> None:
    with h5py.File(partial, "w", userblock_size=MATLAB_USERBLOCK_SIZE) as file:
        _write_names(file, info.im_names)
        for key, values in (
            ("subjective_scores", info.scores),
            ("subjective_scoresSTD", info.stds),
            ("ref_ids", info.ref_ids),
        ):
            _write_double(file, key, np.asarray(values, dtype=np.float64).reshape(1, -1))
        _write_double(file, "index", np.asarray(info.index, dtype=np.float64))
        if info.split_sizes is not None:
            _write_double(file, "split_sizes", np.asarray(info.split_sizes, dtype=np.float64).reshape(1, 3))


def _write_names(file: h5py.File, names: list[str]) -> None:
    # MATLAB keeps the cells of a cell array in the "#refs#" group and stores references to them.
    cells = file.create_group("#refs#")
    refs = np.empty((1, len(names)), dtype=h5py.ref_dtype)
    for position, name in enumerate(names):
        codes = np.frombuffer(name.encode("utf-16-le"), dtype="<u2").reshape(-1, 1)
        cell = cells.create_dataset(f"n{position}", data=codes)
        cell.attrs["MATLAB_class"] = np.bytes_("char")
        cell.attrs["MATLAB_int_decode"] = np.int32(2)
        refs[0, position] = cell.ref
    dataset = file.create_dataset("im_names", data=refs)
    dataset.attrs["MATLAB_class"] = np.bytes_("cell")


def _write_double(file: h5py.File, key: str, values: np.ndarray) -> None:
    dataset = file.create_dataset(key, data=values)
    dataset.attrs["MATLAB_class"] = np.bytes_("double")


def _matlab_header() -> bytes:
    # 116 bytes of text, 8 bytes of subsystem offset, version 0x0200 and the endian mark "IM".
    created = time.strftime("%a %b %d %H:%M:%S %Y")
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} HDF5 schema 1.00 ."
    header = text.encode("ascii").ljust(116, b" ") + b" " * 8 + b"\x00\x02" + b"IM"
    return header.ljust(MATLAB_USERBLOCK_SIZE, b"\x00")


def split_sizes_from_ratios(count: int, train_ratio: float, train_and_val_ratio: float) -> tuple[int, int]:
    """The authors' rule: int(train_ratio * N) training images, int(train_and_val_ratio * N) with validation.

    Args:
        count: N, the number of images.
        train_ratio: the share of training images.
        train_and_val_ratio: the share of training and validation images together.

    Returns:
        (train_size, train_and_val_size)
    """
    if not 0 <= train_ratio <= train_and_val_ratio <= 1:
        raise ConfigError(
            f"split ratios train_ratio={train_ratio}, train_and_val_ratio={train_and_val_ratio} "
            f"need 0 <= train_ratio <= train_and_val_ratio <= 1"
        )
    return int(train_ratio * count), int(train_and_val_ratio * count)


def split_positions(info: IQAInfo, *, status: str, exp_id: int, train_size: int, train_and_val_size: int) -> np.ndarray:
    """Positions (0-based, in file order) of the images of one split.

    Args:
        info: the data set.
        status: "train", "val" or "test".
        exp_id: the experiment; it picks column `exp_id % M` of the index.
        train_size: how many ids of the column are training images.
        train_and_val_size: how many ids of the column are training or validation images.
    """
    if status not in SPLITS:
        raise ConfigError(f"status {status!r} is not one of {', '.join(SPLITS)}")
    column = info.index[:, exp_id % info.index.shape[1]]
    bounds = {
        "train": (0, train_size),
        "val": (train_size, train_and_val_size),
        "test": (train_and_val_size, len(column)),
    }
    start, stop = bounds[status]
    return np.flatnonzero(np.isin(info.ref_ids, column[start:stop]))
