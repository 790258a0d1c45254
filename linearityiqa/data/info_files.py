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

A file is data to check, not to trust: `read_info` checks each dataset's kind, type and shape
before reading it, and each name's reference and text, so that a file in any other layout
ends in one BadFileError that names the file and the dataset.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from linearityiqa.data.image_names import MAX_NAME_LENGTH, checked_names
from linearityiqa.errors import BadFileError, ConfigError, MissingFileError, file_problem
from linearityiqa.records.writing import replacing_path

SPLITS = ("train", "val", "test")
REQUIRED_KEYS = ("im_names", "subjective_scores", "subjective_scoresSTD", "ref_ids", "index")
OPTIONAL_KEYS = ("split_sizes",)
# MATLAB v7.3 files are HDF5 files behind a 512-byte header that MATLAB checks before opening.
MATLAB_USERBLOCK_SIZE = 512
REBUILD = "rebuild it with make_info.py"
WRITABLE = "give write_info names by the rule of linearityiqa/data/image_names.py"
# Far above any IQA data set (KonIQ-10k has 10,073 images), and low enough that a file which
# declares a huge shape without storing it (HDF5 allows that) is refused before memory is set
# aside for it.
MAX_IMAGES = 2**24
MAX_INDEX_ENTRIES = 2**27
# float64 holds every whole number up to 2**53; beyond it an id may not be the one written.
MAX_ID = 2**53


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
    """Read an info file written by the paper's authors or by `write_info`, checking all of it.

    Args:
        path: the `.mat` (HDF5) file.

    Raises:
        MissingFileError: the file does not exist.
        BadFileError: the file is not HDF5 or its content breaks the layout.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem == "does not exist":
        raise MissingFileError(
            f"info file {path} not found: build it with make_info.py (see docs/data.md) "
            f"or pass the path of your info file"
        )
    if problem is not None:
        raise BadFileError(f"info file {path} {problem}: pass the info file itself (--data_info)")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise BadFileError(
            f"{path} is not an HDF5 (MATLAB v7.3) file ({error}): rebuild it with make_info.py, "
            f"or in MATLAB save it with save(..., '-v7.3')"
        ) from error
    with file:
        info = _read_open_info(file, path)
    _check_info(info, path)
    return replace(info, im_names=_normal_names(info.im_names, path))


def _bad(path: Path, key: str, problem: str) -> BadFileError:
    """The error for a dataset that breaks the layout: the file, the dataset, what to do."""
    return BadFileError(f"{path}: {key} {problem}; {REBUILD}")


def _read_open_info(file: h5py.File, path: Path) -> IQAInfo:
    datasets = _datasets(file, path)
    count = _image_count(datasets["im_names"], path)
    _check_shapes(datasets, count, path)
    split_sizes = None
    if "split_sizes" in datasets:
        split_sizes = _counts(_as_ids(_numbers(datasets, "split_sizes", path).ravel(), path, "split_sizes"), path)
    return IQAInfo(
        im_names=_read_names(file, datasets["im_names"], path),
        scores=_numbers(datasets, "subjective_scores", path).ravel(),
        stds=_numbers(datasets, "subjective_scoresSTD", path).ravel(),
        ref_ids=_as_ids(_numbers(datasets, "ref_ids", path).ravel(), path, "ref_ids"),
        index=_as_ids(_numbers(datasets, "index", path), path, "index"),
        split_sizes=split_sizes,
    )


def _datasets(file: h5py.File, path: Path) -> dict[str, h5py.Dataset]:
    """The info file's datasets by key, each checked to be a dataset of the type its key needs."""
    # get() also answers None for a link that leads nowhere, which `key in file` counts as there.
    found = {key: file.get(key) for key in REQUIRED_KEYS + OPTIONAL_KEYS}
    missing = [key for key in REQUIRED_KEYS if found[key] is None]
    if missing:
        raise BadFileError(f"{path} lacks the dataset(s) {', '.join(missing)} of an info file: {REBUILD}")
    datasets = {key: item for key, item in found.items() if item is not None}
    for key, item in datasets.items():
        if not isinstance(item, h5py.Dataset):
            raise _bad(path, key, f"is {_kind_of(item)}, not a dataset")
        if item.shape is None:
            raise _bad(path, key, "is an empty dataset without an array")
        dtype = _numpy_type(item)
        if key == "im_names":
            if dtype is None or h5py.check_ref_dtype(dtype) is not h5py.Reference:
                raise _bad(path, key, f"holds {_describe(dtype)}, not references to MATLAB char arrays")
        elif dtype is None or dtype.kind not in "iuf":
            raise _bad(path, key, f"holds {_describe(dtype)}, not real numbers")
    return datasets


def _kind_of(item: object) -> str:
    """What an HDF5 object that is not a dataset is, from h5py's high- or low-level view of it."""
    if isinstance(item, (h5py.Group, h5py.h5g.GroupID)):
        return "a group"
    if isinstance(item, (h5py.Datatype, h5py.h5t.TypeID)):
        return "a named datatype"
    return f"a {type(item).__name__}"


def _numpy_type(dataset: h5py.Dataset | h5py.h5d.DatasetID) -> np.dtype | None:
    """The dataset's NumPy dtype; None for the few HDF5 types that have none (times, for one)."""
    try:
        return dataset.dtype
    except TypeError:
        return None


def _describe(dtype: np.dtype | None) -> str:
    """What values of `dtype` (None: a type NumPy has none for) are, in a message's words."""
    if dtype is None:
        return "values of a type NumPy cannot hold"
    if h5py.check_string_dtype(dtype) is not None:
        return "text"
    reference = h5py.check_ref_dtype(dtype)
    if reference is not None:
        return "region references" if reference is h5py.RegionReference else "object references"
    return f"values of type {dtype}"


def _vector_length(dataset: h5py.Dataset, path: Path, key: str) -> int:
    """The entry count of a dataset that MATLAB writes as a (1, N) row; (N,) and (N, 1) do too."""
    shape = dataset.shape
    if len(shape) not in (1, 2) or (len(shape) == 2 and min(shape) > 1):
        raise _bad(path, key, f"has shape {shape}, expected one row (1, N)")
    return math.prod(shape)


def _image_count(im_names: h5py.Dataset, path: Path) -> int:
    """N, the number of images, from the shape of im_names."""
    count = _vector_length(im_names, path, "im_names")
    if count == 0:
        raise _bad(path, "im_names", "lists no images")
    if count > MAX_IMAGES:
        raise _bad(path, "im_names", f"lists {count:,} images, more than the {MAX_IMAGES:,} this project reads")
    return count


def size_problem(count: int, orderings: int) -> str | None:
    """What makes an info file of `count` images and `orderings` index columns one `read_info`
    refuses, or None; builders ask before they draw the orderings."""
    if count > MAX_IMAGES:
        return f"{count:,} images, more than the {MAX_IMAGES:,} an info file may list"
    if count * orderings > MAX_INDEX_ENTRIES:
        fewer = max(1, MAX_INDEX_ENTRIES // count)
        return (
            f"{count:,} images x {orderings:,} orderings are more than the {MAX_INDEX_ENTRIES:,} index entries an "
            f"info file may hold; keep to {fewer:,} orderings or fewer"
        )
    return None


def _check_shapes(datasets: dict[str, h5py.Dataset], count: int, path: Path) -> None:
    """Check that every dataset has the shape `count` images need, before any of them is read."""
    for key in ("subjective_scores", "subjective_scoresSTD", "ref_ids"):
        length = _vector_length(datasets[key], path, key)
        if length != count:
            raise _bad(path, key, f"has {length} entries but im_names has {count}")
    shape = datasets["index"].shape
    if len(shape) != 2 or shape[0] != count or shape[1] == 0:
        raise _bad(path, "index", f"has shape {shape}, expected ({count}, M) with M >= 1")
    if count * shape[1] > MAX_INDEX_ENTRIES:
        raise _bad(path, "index", f"has shape {shape}, more than the {MAX_INDEX_ENTRIES:,} entries this project reads")
    if "split_sizes" in datasets and _vector_length(datasets["split_sizes"], path, "split_sizes") != 3:
        raise _bad(path, "split_sizes", f"has shape {datasets['split_sizes'].shape}, expected (1, 3)")


def _read(dataset: h5py.Dataset, key: str, path: Path) -> np.ndarray:
    """The whole dataset; BadFileError when HDF5 cannot read it (damaged data, a missing filter)."""
    try:
        return dataset[()]
    except OSError as error:
        raise _bad(path, key, f"cannot be read ({error})") from error


def _numbers(datasets: dict[str, h5py.Dataset], key: str, path: Path) -> np.ndarray:
    """A dataset of numbers (checked by _datasets) as float64."""
    return np.asarray(_read(datasets[key], key, path), dtype=np.float64)


def _read_names(file: h5py.File, im_names: h5py.Dataset, path: Path) -> list[str]:
    refs = _read(im_names, "im_names", path).ravel()
    return [_read_name(file, ref, path, entry) for entry, ref in enumerate(refs, start=1)]


def _read_name(file: h5py.File, ref: h5py.Reference, path: Path, entry: int) -> str:
    """One image name: the MATLAB char array that `ref` points to, checked to be one."""
    # h5py's low-level calls read the 10,073 KonIQ names 4x faster than `file[ref][()]`.
    try:
        cell = h5py.h5r.dereference(ref, file.id)
    except (KeyError, ValueError, OSError) as error:
        # A KeyError's str() quotes its words; its first argument does not.
        words = error.args[0] if error.args else error
        raise _bad(path, "im_names", f"entry {entry} is a reference that leads nowhere ({words})") from error
    if not isinstance(cell, h5py.h5d.DatasetID):
        what = "a null reference" if cell is None else f"a reference to {_kind_of(cell)}"
        raise _bad(path, "im_names", f"entry {entry} is {what}, not a reference to a MATLAB char array")
    # None: a dataset without an array (HDF5's null dataspace).
    shape = cell.get_space().get_simple_extent_dims() or ()
    if not _is_char_row(cell.get_type(), shape):
        raise _bad(
            path,
            "im_names",
            f"entry {entry} refers to a {shape} array of {_describe(_numpy_type(cell))}, not a MATLAB char "
            f"array (one row of at most {MAX_NAME_LENGTH} unsigned 16-bit codes)",
        )
    codes = np.empty(shape, dtype="<u2")
    cell.read(h5py.h5s.ALL, h5py.h5s.ALL, codes)
    try:
        # MATLAB stores char arrays as UTF-16 code units, one uint16 each; a row reads the same in C and F order.
        name = codes.tobytes().decode("utf-16-le")
    except UnicodeDecodeError as error:
        raise _bad(path, "im_names", f"entry {entry} is not UTF-16 text ({error.reason})") from error
    if "\x00" in name:
        raise _bad(path, "im_names", f"entry {entry} ({name!r}) holds a NUL character, which no file name can hold")
    return name


def _is_char_row(kind: h5py.h5t.TypeID, shape: tuple[int, ...]) -> bool:
    """Whether a dataset of this type and shape is a MATLAB char row: (L, 1) uint16 codes as h5py sees it
    (uint8 codes convert to them as well)."""
    unsigned = isinstance(kind, h5py.h5t.TypeIntegerID) and kind.get_sign() == h5py.h5t.SGN_NONE
    return (
        unsigned
        and kind.get_size() <= 2
        and (len(shape) == 1 or (len(shape) == 2 and min(shape) <= 1))
        and math.prod(shape) <= MAX_NAME_LENGTH
    )


def _as_ids(values: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Whole numbers as int64; BadFileError naming the first entry that is not one."""
    whole = np.isfinite(values) & (np.abs(values) <= MAX_ID) & (np.rint(values) == values)
    if not whole.all():
        where = np.unravel_index(np.argmin(whole), values.shape)
        position = f"row {where[0] + 1}, column {where[1] + 1}" if values.ndim == 2 else f"entry {where[0] + 1}"
        raise _bad(path, key, f"{position} is {values[where]}, not a whole number within ±2**53")
    return values.astype(np.int64)


def _counts(sizes: np.ndarray, path: Path) -> tuple[int, int, int]:
    """The (train, val, test) image counts of split_sizes, none of them negative."""
    if (sizes < 0).any():
        raise _bad(path, "split_sizes", f"{sizes.tolist()} holds a negative number of images")
    train, val, test = (int(size) for size in sizes)
    return train, val, test


def _check_info(info: IQAInfo, path: Path) -> None:
    for key, values in (("subjective_scores", info.scores), ("subjective_scoresSTD", info.stds)):
        # scores train in float32: a larger one would be infinite there
        bad = np.flatnonzero(~(np.abs(values) <= np.finfo(np.float32).max))
        if bad.size:
            entry = bad[0]
            raise BadFileError(
                f"{path}: {key} entry {entry + 1} ({info.im_names[entry]}) is {values[entry]}, "
                f"not a finite number (of float32's range); fix the source scores and rebuild the file"
            )
    _check_index(info, path)


def _normal_names(names: list[str], path: Path) -> list[str]:
    return checked_names(names, where=f"{path}: im_names", unit="entry", advice=REBUILD)


def _check_index(info: IQAInfo, path: Path) -> None:
    count = len(info.im_names)
    if len(np.unique(info.ref_ids)) != count:
        raise _bad(path, "ref_ids", "repeat an id; each image needs its own id")
    orderings = np.sort(info.index, axis=0)
    wrong = np.flatnonzero((orderings != np.sort(info.ref_ids)[:, None]).any(axis=0))
    if wrong.size:
        raise _bad(path, "index", f"column {wrong[0] + 1} is not an ordering of the {count} ref_ids")
    if info.split_sizes is not None and sum(info.split_sizes) != count:
        raise _bad(path, "split_sizes", f"{info.split_sizes} do not add up to the {count} images")


def write_info(path: str | Path, info: IQAInfo) -> None:
    """Write `info` as MATLAB v7.3 does, so that MATLAB, the authors' code and `read_info` read it.

    The file is written whole or not at all (records/writing.py): an interrupted run never
    leaves a half-written info file, and an earlier one stays as it was.

    Args:
        path: the `.mat` file to write; its folder is created if needed.
        info: what to write.
    """
    # the reader's rule, so that what is written reads back; the names are written in normal form
    names = checked_names(info.im_names, where=f"info file {path} to write: im_names", unit="entry", advice=WRITABLE)
    too_large = size_problem(len(names), np.shape(info.index)[1])
    if too_large is not None:
        raise ConfigError(f"info file {path} to write: {too_large}")
    image = _hdf5_image(replace(info, im_names=names))
    with replacing_path(path, what="info file", advice="free space, or pass another --out") as partial:
        with open(partial, "wb") as raw:
            raw.write(_matlab_header())  # the user block, which the in-memory image leaves out
            raw.write(image)


def _hdf5_image(info: IQAInfo) -> bytes:
    """The HDF5 file's bytes, built in memory: HDF5's own writes to a disk that fills (or to a
    file past its size limit) can crash the process, while Python's write raises an OSError,
    which replacing_path turns into one line and a file left as it was."""
    # the core driver keeps the file in memory; without a backing store the name is never opened
    with h5py.File(
        "info-in-memory.h5", "w", driver="core", backing_store=False, userblock_size=MATLAB_USERBLOCK_SIZE
    ) as file:
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
        file.flush()
        return file.id.get_file_image()


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
            f"need 0 <= train_ratio <= train_and_val_ratio <= 1: pass --train_ratio at most --train_and_val_ratio"
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
