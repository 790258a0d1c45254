"""The info files that describe a data set, in the paper authors' layout, and the split rule.

An info file is a MATLAB v7.3 `.mat` file, which is HDF5, of the datasets and shapes that docs/data.md
lists; `split_sizes` is written by this project only, and the authors' reader ignores it.

Experiment `exp_id` takes column `exp_id % M` of the (N, M) `index`; its first `train_size` ids are the
training images, the ids up to `train_and_val_size` the validation images, the rest the test images.
A split lists its images in file order, not in index order, as the authors' code did.

One rule for the names of a data set's images holds wherever a list of them is built (make_info.py's
builders, `write_info`) and read, so that no builder writes a file its reader refuses: a name is text
without control characters, a path relative to the image folder that stays inside it (not absolute, no
`..` part), kept in its normal form (`./a.jpg` and `a//b.jpg` are the images `a.jpg` and `a/b.jpg`),
and a list holds each image once.
"""

from __future__ import annotations

import math
import posixpath
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from linearityiqa.errors import BadFileError, ConfigError, MissingFileError, file_problem, first_line
from linearityiqa.records.writing import replacing_path

SPLITS = ("train", "val", "test")
ROWS = ("subjective_scores", "subjective_scoresSTD", "ref_ids")  # the (1, N) rows of numbers
REQUIRED_KEYS = ("im_names", *ROWS, "index")
NUMBERS = (*REQUIRED_KEYS[1:], "split_sizes")  # split_sizes optional
IDS = ("ref_ids", "index", "split_sizes")  # whole numbers, read as int64
# MATLAB v7.3 files are HDF5 files behind a 512-byte header that MATLAB checks before opening.
MATLAB_USERBLOCK_SIZE = 512
REBUILD = "rebuild it with make_info.py"
WRITABLE = "give write_info names by the rule of linearityiqa/data/info_files.py"
# Far above any IQA data set (KonIQ-10k has 10,073 images), and low enough that a file which
# declares a huge shape without storing it (HDF5 allows that) is refused before memory is set
# aside for it.
MAX_INDEX_ENTRIES = 2**27
# float64 holds every whole number up to 2**53; beyond it an id may not be the one written.
MAX_ID = 2**53
PLURAL = {"line": "lines", "entry": "entries"}
# The longest name an info file holds (MATLAB char arrays of UTF-16 codes), far beyond any file
# system's 255 bytes per part.
MAX_NAME_LENGTH = 4096
SHOWN = 120  # characters of a name a message quotes


@dataclass(frozen=True)
class IQAInfo:
    """The content of one info file; arrays are 1-D over the N images unless noted."""

    im_names: list[str]  # relative to the data set's image folder
    scores: np.ndarray  # mean opinion scores
    stds: np.ndarray  # standard deviations of the opinion scores
    ref_ids: np.ndarray  # the id of each image, as used in `index`
    index: np.ndarray  # (N, M) integers; each column is one ordering of the ref ids
    split_sizes: tuple[int, int, int] | None = None  # (train, val, test) image counts of a data set's own split

    def __len__(self) -> int:
        return len(self.im_names)


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an image of a data set (a phrase to follow the name), or None."""
    if not name:
        return "is empty"
    # isprintable() first: the categories are looked up only for the rare name it is false for
    # (a non-breaking space, say, is a fair part of a file name; a tab or a NUL is not).
    categories = set() if name.isprintable() else {unicodedata.category(char) for char in name}
    if "Cc" in categories:
        return "holds a control character (a tab, a line break, a NUL ...)"
    if "Cs" in categories:
        return "is not valid text (it holds half of a UTF-16 pair)"
    if len(name) > MAX_NAME_LENGTH // 2 and len(name.encode("utf-16-le")) > 2 * MAX_NAME_LENGTH:
        return f"is longer than the {MAX_NAME_LENGTH:,} UTF-16 codes an info file holds"
    # The ".." test on the text first spares splitting each of KonIQ's 10,073 names.
    if name.startswith("/") or (".." in name and ".." in name.split("/")):
        return "is not a path inside the image folder (relative to it, without '..' or a leading /)"
    if posixpath.normpath(name) == ".":
        return "names the image folder itself, not an image in it"
    return None


def checked_names(
    names: Sequence[str], *, where: str, unit: str, advice: str, numbers: Sequence[int] | None = None
) -> list[str]:
    """`names`, as a file lists them, in their normal forms; else a BadFileError naming the first that
    breaks the rule, its message starting with `where` (the file, and its dataset if any), counting by
    `unit` ("line 4", "entry 4") with `numbers` (by default 1, 2, ...), ending with `advice`."""
    numbers = range(1, len(names) + 1) if numbers is None else numbers
    first: dict[str, int] = {}  # each normal form, in list order, at the position of its name
    for position, (name, number) in enumerate(zip(names, numbers)):
        problem = name_problem(name)
        if problem is not None:
            raise BadFileError(f"{where} {unit} {number}: image name {_shown(name)} {problem}; {advice}")
        normal = posixpath.normpath(name)
        if normal in first:
            earlier = names[first[normal]]
            spelled = "" if earlier == name else f" (written {earlier!r} and {name!r})"
            raise BadFileError(
                f"{where} {PLURAL[unit]} {numbers[first[normal]]} and {number} both name image {normal!r}{spelled}; "
                f"{advice}"
            )
        first[normal] = position
    return list(first)


def _shown(name: str) -> str:
    """The name as a message quotes it: whole, unless it would fill the screen."""
    if len(name) <= SHOWN:
        return repr(name)
    return f"{name[: SHOWN // 2]!r}...{name[-SHOWN // 4 :]!r} ({len(name):,} characters)"


def read_info(path: str | Path) -> IQAInfo:
    """Read an info file (`.mat`, HDF5) written by the paper's authors or by `write_info`; MissingFileError
    or BadFileError (not HDF5, or a content that breaks the layout) naming it."""
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
    return replace(info, im_names=checked_names(info.im_names, where=f"{path}: im_names", unit="entry", advice=REBUILD))


class _OffLayout(ValueError):
    """What makes a dataset break the layout, in words that follow its name in the message."""


@contextmanager
def _reading(path: Path, where: str) -> Iterator[None]:
    """Turn any failure to read `where` (a dataset, an entry of one) into one line naming the file and it."""
    try:
        yield
    except _OffLayout as error:
        raise _bad(path, where, str(error)) from None
    # h5py's and numpy's words for an object of another kind, type or shape, or data HDF5 cannot read
    except (OSError, KeyError, TypeError, ValueError, AttributeError, IndexError, MemoryError) as error:
        words = error.args[0] if isinstance(error, KeyError) and error.args else first_line(error)
        raise BadFileError(f"{path}: {where} cannot be read as the layout has it ({words}); {REBUILD}") from None


def _read_open_info(file: h5py.File, path: Path) -> IQAInfo:
    # get() also answers None for a link that leads nowhere, which `key in file` counts as there.
    missing = [key for key in REQUIRED_KEYS if file.get(key) is None]
    if missing:
        raise BadFileError(f"{path} lacks the dataset(s) {', '.join(missing)} of an info file: {REBUILD}")
    numbers = {key: _numbers(file, key, path) for key in NUMBERS if file.get(key) is not None}
    with _reading(path, "im_names"):
        refs = _row_of(_dataset(file, "im_names")[()])
    names = []
    for entry, ref in enumerate(refs, start=1):
        with _reading(path, f"im_names entry {entry}"):
            names.append(_read_name(file, ref))
    return IQAInfo(
        im_names=names,
        scores=numbers["subjective_scores"],
        stds=numbers["subjective_scoresSTD"],
        ref_ids=numbers["ref_ids"],
        index=numbers["index"],
        split_sizes=tuple(numbers["split_sizes"].tolist()) if "split_sizes" in numbers else None,
    )


def _dataset(file: h5py.File, key: str) -> h5py.Dataset:
    """The dataset `key`, no larger than this project reads (HDF5 lets a file declare a shape it never stores)."""
    dataset = file[key]
    if dataset.size is not None and dataset.size > MAX_INDEX_ENTRIES:
        raise _OffLayout(f"declares {dataset.size:,} entries, more than the {MAX_INDEX_ENTRIES:,} this project reads")
    return dataset


def _numbers(file: h5py.File, key: str, path: Path) -> np.ndarray:
    """A dataset of real numbers as float64 (int64 for IDS), a row but for the index (text, booleans and
    complex numbers would convert silently)."""
    with _reading(path, key):
        values = np.asarray(_dataset(file, key)[()])
        if values.dtype.kind not in "iuf":
            raise _OffLayout(f"holds {values.dtype}, not real numbers")
        values = values.astype(np.float64) if key == "index" else _row_of(values.astype(np.float64))
        return _as_ids(values) if key in IDS else values


def _row_of(values: np.ndarray) -> np.ndarray:
    """The entries of a dataset that MATLAB writes as a (1, N) row; (N,) and (N, 1) do too."""
    if values.ndim not in (1, 2) or (values.ndim == 2 and min(values.shape) > 1):
        raise _OffLayout(f"has shape {values.shape}, expected one row (1, N)")
    return values.ravel()


def _read_name(file: h5py.File, ref: h5py.Reference) -> str:
    """One image name: the MATLAB char array that `ref` points to."""
    # h5py's low-level calls read the 10,073 KonIQ names 4x faster than `file[ref][()]`.
    cell = h5py.h5r.dereference(ref, file.id)
    shape = cell.get_space().get_simple_extent_dims() or () if isinstance(cell, h5py.h5d.DatasetID) else None
    # HDF5 would convert any numbers to codes: only unsigned codes of at most 16 bits are text
    kind = cell.get_type() if shape is not None else None
    if not (
        isinstance(kind, h5py.h5t.TypeIntegerID)
        and kind.get_sign() == h5py.h5t.SGN_NONE
        and kind.get_size() <= 2
        and len(shape) in (1, 2)
        and min(shape) <= 1
        and math.prod(shape) <= MAX_NAME_LENGTH
    ):
        raise _OffLayout(f"is not a reference to a MATLAB char array (one row of at most {MAX_NAME_LENGTH} codes)")
    codes = np.empty(shape, dtype="<u2")
    cell.read(h5py.h5s.ALL, h5py.h5s.ALL, codes)
    # MATLAB stores char arrays as UTF-16 code units, one uint16 each; a row reads the same in C and F order.
    return codes.tobytes().decode("utf-16-le")


def size_problem(count: int, orderings: int) -> str | None:
    """What makes an info file of `count` images and `orderings` index columns one `read_info`
    refuses, or None; builders ask before they draw the orderings."""
    if count * orderings > MAX_INDEX_ENTRIES:
        fewer = max(1, MAX_INDEX_ENTRIES // count)
        return (
            f"{count:,} images x {orderings:,} orderings are more than the {MAX_INDEX_ENTRIES:,} index entries an "
            f"info file may hold; keep to {fewer:,} orderings or fewer"
        )
    return None


def _as_ids(values: np.ndarray) -> np.ndarray:
    """Whole numbers as int64; _OffLayout naming the first entry that is not one."""
    whole = np.isfinite(values) & (np.abs(values) <= MAX_ID) & (np.rint(values) == values)
    if not whole.all():
        where = np.unravel_index(np.argmin(whole), values.shape)
        position = f"row {where[0] + 1}, column {where[1] + 1}" if values.ndim == 2 else f"entry {where[0] + 1}"
        raise _OffLayout(f"{position} is {values[where]}, not a whole number within ±2**53")
    return values.astype(np.int64)


def _bad(path: Path, key: str, problem: str) -> BadFileError:
    return BadFileError(f"{path}: {key} {problem}; {REBUILD}")


def _check_info(info: IQAInfo, path: Path) -> None:
    """What reads without an error and would give a wrong result: lengths, scores, ids and split sizes."""
    count = len(info.im_names)
    if count == 0:
        raise _bad(path, "im_names", "lists no images")
    for key, values in zip(ROWS, (info.scores, info.stds, info.ref_ids)):
        if len(values) != count:
            raise _bad(path, key, f"has {len(values)} entries but im_names has {count}")
    if info.index.ndim != 2 or info.index.shape[0] != count or info.index.shape[1] == 0:
        raise _bad(path, "index", f"has shape {info.index.shape}, expected ({count}, M) with M >= 1")
    for key, values in (("subjective_scores", info.scores), ("subjective_scoresSTD", info.stds)):
        # scores train in float32: a larger one would be infinite there
        bad = np.flatnonzero(~(np.abs(values) <= np.finfo(np.float32).max))
        if bad.size:
            entry = bad[0]
            raise BadFileError(
                f"{path}: {key} entry {entry + 1} ({info.im_names[entry]}) is {values[entry]}, "
                f"not a finite number (of float32's range); fix the source scores and rebuild the file"
            )
    if len(np.unique(info.ref_ids)) != count:
        raise _bad(path, "ref_ids", "repeat an id; each image needs its own id")
    orderings = np.sort(info.index, axis=0)
    wrong = np.flatnonzero((orderings != np.sort(info.ref_ids)[:, None]).any(axis=0))
    if wrong.size:
        raise _bad(path, "index", f"column {wrong[0] + 1} is not an ordering of the {count} ref_ids")
    if info.split_sizes is not None and (
        len(info.split_sizes) != 3 or min(info.split_sizes) < 0 or sum(info.split_sizes) != count
    ):
        raise _bad(
            path, "split_sizes", f"{list(info.split_sizes)} are not 3 image counts that add up to the {count} images"
        )


def write_info(path: str | Path, info: IQAInfo) -> None:
    """Write `info` to the `.mat` file `path` as MATLAB v7.3 does, so that MATLAB, the authors' code
    and `read_info` read it; whole or not at all (records/writing.py), an earlier file kept as it was."""
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
    rows = zip(ROWS, (info.scores, info.stds, info.ref_ids))
    doubles = {key: np.reshape(values, (1, -1)) for key, values in rows} | {"index": info.index}
    if info.split_sizes is not None:
        doubles["split_sizes"] = np.reshape(info.split_sizes, (1, 3))
    # the core driver keeps the file in memory; without a backing store the name is never opened
    with h5py.File(
        "info-in-memory.h5", "w", driver="core", backing_store=False, userblock_size=MATLAB_USERBLOCK_SIZE
    ) as file:
        # MATLAB keeps the cells of a cell array in the "#refs#" group and stores references to them.
        cells = file.create_group("#refs#")
        refs = np.empty((1, len(info.im_names)), dtype=h5py.ref_dtype)
        for position, name in enumerate(info.im_names):
            codes = np.frombuffer(name.encode("utf-16-le"), dtype="<u2").reshape(-1, 1)
            cell = cells.create_dataset(f"n{position}", data=codes)
            cell.attrs.update(MATLAB_class=np.bytes_("char"), MATLAB_int_decode=np.int32(2))
            refs[0, position] = cell.ref
        file.create_dataset("im_names", data=refs).attrs["MATLAB_class"] = np.bytes_("cell")
        for key, values in doubles.items():
            dataset = file.create_dataset(key, data=np.asarray(values, dtype=np.float64))
            dataset.attrs["MATLAB_class"] = np.bytes_("double")
        file.flush()
        return file.id.get_file_image()


def _matlab_header() -> bytes:
    # 116 bytes of text, 8 bytes of subsystem offset, version 0x0200 and the endian mark "IM".
    created = time.strftime("%a %b %d %H:%M:%S %Y")
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} HDF5 schema 1.00 ."
    header = text.encode("ascii").ljust(116, b" ") + b" " * 8 + b"\x00\x02" + b"IM"
    return header.ljust(MATLAB_USERBLOCK_SIZE, b"\x00")


def split_sizes_from_ratios(count: int, train_ratio: float, train_and_val_ratio: float) -> tuple[int, int]:
    """(train_size, train_and_val_size) of `count` images by the authors' rule."""
    if not 0 <= train_ratio <= train_and_val_ratio <= 1:
        raise ConfigError(
            f"split ratios train_ratio={train_ratio}, train_and_val_ratio={train_and_val_ratio} "
            f"need 0 <= train_ratio <= train_and_val_ratio <= 1: pass --train_ratio at most --train_and_val_ratio"
        )
    return int(train_ratio * count), int(train_and_val_ratio * count)
