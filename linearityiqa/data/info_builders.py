"""Build info files (see info_files.py) from the KonIQ-10k and CLIVE downloads and from a user's own CSV."""

from __future__ import annotations

import csv
import math
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.io

from linearityiqa.data.dataset_registry import CLIVE_TRAINING_EXAMPLES
from linearityiqa.data.info_files import SPLITS, IQAInfo, checked_names, size_problem
from linearityiqa.errors import BadFileError, ConfigError, MissingFileError, file_problem, first_line

# The release's files in Data/, each holding the variable of its name: names, MOS, their std.
CLIVE_RELEASE_FILES = ("AllImages_release", "AllMOS_release", "AllStdDev_release")
# Set names of the KonIQ-10k file; the short forms are accepted in users' files.
SET_NAMES = {"training": "train", "train": "train", "validation": "val", "val": "val", "test": "test"}


def koniq_info_from_csv(scores_csv: str | Path, *, sets_csv: str | Path | None = None) -> IQAInfo:
    """KonIQ-10k with its official split, from `koniq10k_distributions_sets.csv` (score: MOS) or
    `koniq10k_scores_and_distributions.csv` (score: MOS_zscore), SD the std; the split is the `set`
    column of `sets_csv`, by default of `scores_csv` itself."""
    scores_csv = Path(scores_csv)
    header, rows = _read_csv(scores_csv)
    score_column = "mos_zscore" if "mos_zscore" in header else "mos"
    names, scores, stds = _names_and_scores(scores_csv, header, rows, score_column, "sd")
    if sets_csv is None:
        _require_columns(scores_csv, header, ["set"], hint="pass the sets file koniq10k_distributions_sets.csv as well")
        sets = [_set_of(scores_csv, line, row) for line, row in rows]
    else:
        sets = _sets_by_name(Path(sets_csv), names, scores_csv)
    return _info(names, scores, stds, sets=sets)


def user_info_from_csv(csv_path: str | Path, *, num_orderings: int = 1000, seed: int = 0) -> IQAInfo:
    """A user's data set from a CSV with the columns `image_name,mos[,std][,set]` (in any case);
    without a `set` column, its index holds `num_orderings` random orderings drawn with `seed`."""
    csv_path = Path(csv_path)
    header, rows = _read_csv(csv_path)
    names, scores, stds = _names_and_scores(csv_path, header, rows, "mos", "std" if "std" in header else None)
    sets = [_set_of(csv_path, line, row) for line, row in rows] if "set" in header else None
    return _info(names, scores, stds, sets=sets, orderings=num_orderings, seed=seed)


def clive_info_from_release(release_dir: str | Path, *, num_orderings: int = 1000, seed: int = 0) -> IQAInfo:
    """CLIVE from its release folder (`ChallengeDB_release`, which holds `Data/` and `Images/`) without
    the 7 rater training examples; its index holds `num_orderings` random orderings (the paper:
    1,000) drawn with `seed`."""
    data_dir = Path(release_dir) / "Data"
    names, scores, stds = (
        _release_variable(data_dir / f"{name}.mat", read)
        for name, read in zip(CLIVE_RELEASE_FILES, (_cell_texts, _floats, _floats))
    )
    if not len(names) == len(scores) == len(stds):
        raise BadFileError(
            f"{data_dir}: AllImages_release has {len(names)} entries, AllMOS_release {len(scores)}, "
            f"AllStdDev_release {len(stds)}; they must match entry for entry"
        )
    if len(names) <= CLIVE_TRAINING_EXAMPLES:
        raise BadFileError(
            f"{data_dir / 'AllImages_release.mat'} has {len(names)} entries: the first "
            f"{CLIVE_TRAINING_EXAMPLES} are rater training examples, which leaves no images"
        )
    kept = slice(CLIVE_TRAINING_EXAMPLES, None)
    entries = range(CLIVE_TRAINING_EXAMPLES + 1, len(names) + 1)  # as the release files count them, from 1
    release = "use the files of the release"
    where = str(data_dir / "AllImages_release.mat")
    names = checked_names(names[kept], where=where, unit="entry", advice=release, numbers=entries)
    for key, values in (("AllMOS_release", scores[kept]), ("AllStdDev_release", stds[kept])):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise BadFileError(
                f"{data_dir / (key + '.mat')} entry {entries[bad[0]]} ({names[bad[0]]}) is {values[bad[0]]}, "
                f"not a finite number; {release}"
            )
    return _info(names, scores[kept], stds[kept], sets=None, orderings=num_orderings, seed=seed)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The lower-cased header and the rows with their line numbers."""
    problem = file_problem(path)
    if problem is not None:
        raise MissingFileError(f"score file {path} {problem}: check the path")
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = [column.strip().lower() for column in next(reader, [])]
            fields_of = ((reader.line_num, [field.strip() for field in fields]) for fields in reader)
            rows = [(line, dict(zip(header, fields))) for line, fields in fields_of if any(fields)]
    except UnicodeDecodeError as error:
        raise BadFileError(
            f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} at byte {error.start}): "
            f"save it as UTF-8 (CSV UTF-8 in a spreadsheet)"
        ) from None
    except csv.Error as error:  # e.g. a field longer than the csv module's limit: an unclosed quote
        raise BadFileError(f"{path} is not a CSV file it can read ({error}): check its quotes") from None
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        raise BadFileError(f"{path} has the column {', '.join(repeated)} twice (case aside): keep one")
    if not rows:
        raise BadFileError(f"{path} has no data rows")
    return header, rows


def _require_columns(path: Path, header: list[str], columns: list[str], hint: str = "") -> None:
    missing = [column for column in columns if column not in header]
    if missing:
        advice = hint or "add it, or check that this is the right file"
        raise BadFileError(f"{path} has no column {', '.join(missing)} (its columns: {', '.join(header)}); {advice}")


def _names_and_scores(
    path: Path, header: list[str], rows: list[tuple[int, dict[str, str]]], score_column: str, std_column: str | None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Image names, scores and stds (0 without a std column), the columns and each row checked."""
    _require_columns(path, header, [column for column in ("image_name", score_column, std_column) if column])
    names = _image_names(path, rows)
    scores = [_number(path, line, row, score_column) for line, row in rows]
    stds = [_number(path, line, row, std_column, spread=True) if std_column else 0.0 for line, row in rows]
    return names, np.array(scores), np.array(stds)


def _image_names(path: Path, rows: list[tuple[int, dict[str, str]]]) -> list[str]:
    """The image_name of each row, by the rule of info_files.py (normal forms, each image once)."""
    names = [row.get("image_name", "") for _, row in rows]
    return checked_names(names, where=str(path), unit="line", advice="fix the file", numbers=[line for line, _ in rows])


def _number(path: Path, line: int, row: dict[str, str], column: str, *, spread: bool = False) -> float:
    """A finite number; a spread (a standard deviation) also not negative."""
    text = row.get(column, "")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadFileError(f"{path} line {line}: {column} {text!r} is not a finite number")
    if spread and value < 0:
        raise BadFileError(f"{path} line {line}: {column} {text!r} is negative, which no spread of scores is")
    return value


def _set_of(path: Path, line: int, row: dict[str, str]) -> str:
    text = row.get("set", "")
    if text.lower() not in SET_NAMES:
        raise BadFileError(f"{path} line {line}: set {text!r} is not one of training, validation, test")
    return SET_NAMES[text.lower()]


def _sets_by_name(sets_csv: Path, names: list[str], scores_csv: Path) -> list[str]:
    """The split of each of `names`, from a file that must list exactly the same images."""
    header, rows = _read_csv(sets_csv)
    _require_columns(sets_csv, header, ["image_name", "set"])
    scored, set_of_name = set(names), {}
    for name, (line, row) in zip(_image_names(sets_csv, rows), rows):
        if name not in scored:
            raise BadFileError(
                f"split count does not add up: {sets_csv} line {line} lists image {name}, "
                f"which {scores_csv} does not score; use the sets file of the same release"
            )
        set_of_name[name] = _set_of(sets_csv, line, row)
    unassigned = [name for name in names if name not in set_of_name]
    if unassigned:
        raise BadFileError(
            f"split count does not add up: {sets_csv} gives no set for {len(unassigned)} image(s) of "
            f"{scores_csv}, e.g. {unassigned[0]}; use the sets file of the same release"
        )
    return [set_of_name[name] for name in names]


def _info(
    names: list[str], scores: np.ndarray, stds: np.ndarray, *, sets: list[str] | None, orderings: int = 1, seed: int = 0
) -> IQAInfo:
    """The images with ids 1..N. With `sets`, the data set keeps that split: the index's one column holds
    the training ids, then validation, then test, and the file records the split sizes. Without, the index
    holds `orderings` random orderings drawn with `seed`, and the experiment's ratios decide the split."""
    ref_ids = np.arange(1, len(names) + 1)
    if sets is not None:
        members = [ref_ids[[s == split for s in sets]] for split in SPLITS]
        index, sizes = np.concatenate(members).reshape(-1, 1), tuple(len(ids) for ids in members)
        return IQAInfo(im_names=names, scores=scores, stds=stds, ref_ids=ref_ids, index=index, split_sizes=sizes)
    if orderings < 1:
        raise ConfigError(f"num_orderings (make_info.py's --orderings) is {orderings}; it needs to be at least 1")
    too_large = size_problem(len(names), orderings)
    if too_large is not None:  # found before the orderings take their memory
        raise ConfigError(f"num_orderings (make_info.py's --orderings): {too_large}")
    index = np.random.default_rng(seed).permuted(np.tile(ref_ids[:, None], (1, orderings)), axis=0)
    return IQAInfo(im_names=list(names), scores=scores, stds=stds, ref_ids=ref_ids, index=index)


def _release_variable(path: Path, read: Callable[[np.ndarray], Any]) -> Any:
    """The variable named after the file (e.g. AllMOS_release in AllMOS_release.mat), flattened, as
    `read` makes it; any failure to read it so is one line naming the file."""
    if not path.is_file():
        raise MissingFileError(f"{path} not found: pass the CLIVE release folder, the one that holds Data/ and Images/")
    try:
        content = scipy.io.loadmat(path)
    except (ValueError, NotImplementedError, OSError, scipy.io.matlab.MatReadError) as error:
        raise BadFileError(f"cannot read {path} as a MATLAB file ({error}); use the file from the release") from error
    if path.stem not in content:
        raise BadFileError(f"{path} holds no variable {path.stem}; use the file from the release")
    try:
        return read(np.asarray(content[path.stem]).ravel())
    except (ValueError, TypeError) as error:  # text where numbers belong, cells of another kind
        raise BadFileError(
            f"{path}: {path.stem} is not what the release holds ({first_line(error)}); use the file from the release"
        ) from None


_floats = partial(np.asarray, dtype=np.float64)


def _cell_texts(cells: np.ndarray) -> list[str]:
    """The text of each cell of a MATLAB cell array of strings."""
    texts = [np.asarray(cell).ravel() for cell in cells]
    for text in texts:
        if text.size and not isinstance(text[0], str):
            raise TypeError(f"a cell holds {text.dtype}, not a file name")
    return [text[0].strip() if text.size else "" for text in texts]
