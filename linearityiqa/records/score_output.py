"""The scores of a scoring run, written as they come and resumable: CSV, a Parquet file, or a folder of Parquet shards.

While a run scores, `<output>.partial/` beside the output holds its record (`_run.json`, which --resume checks) and its
rows: the CSV as it will be, or a Parquet shard per piece (docs/scale.md, "Output that streams"). The output takes its
name only when the run completes; until then an earlier output stays as it was. Nothing here imports PyTorch.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, fields

from linearityiqa.errors import BadFileError, ConfigError, OutputError
from linearityiqa.image_scoring import ImageScore
from linearityiqa.records.run_lock import run_lock
from linearityiqa.records.score_rows import (
    METADATA_RUN,
    NAMES,
    ScoringRun,
    check_utf8_names,
    columns_named,
    csv_header,
    csv_rows,
    differences,
    parquet_schema,
    whole_rows,
    write_parquet,
)
from linearityiqa.records.writing import check_writable, replacing, replacing_path, write_target

CSV, PARQUET, SHARDS = "csv", "parquet", "parquet folder"
RUN_FILE = "_run.json"  # readers of Parquet folders skip names that start with _
CSV_ROWS = "scores.csv"
SHARD = re.compile(r"^part-(\d{6,})\.parquet$")
# rows per row group of a merged Parquet file: large enough for column statistics to pay
ROW_GROUP = 65536
_KIND = "linearityiqa scoring run"
# the version of _run.json: 2 is the first whose CSV starts with its header
FORMAT = 2
ADVICE = "pass another --output"


def output_format(output: str) -> str:
    """CSV, PARQUET (a name ending in .parquet) or SHARDS (a name ending in a slash: a folder)."""
    if output.endswith((os.sep, os.altsep or os.sep)):
        return SHARDS
    return PARQUET if output.lower().endswith(".parquet") else CSV


def partial_path(output: str) -> str:
    """The folder beside `output` (or the file a link there leads to) that holds its run until it completes."""
    if output_format(output) != SHARDS:
        with contextlib.suppress(OSError):  # check_writable names what is wrong with the output
            output = write_target(output)
    return output.rstrip(os.sep + (os.altsep or "")) + ".partial"


@contextlib.contextmanager
def score_writer(output: str, run: ScoringRun, *, paths: Sequence[str], resume: bool) -> Iterator[ScoreWriter]:
    """A ScoreWriter, holding the partial run's lock while the block runs; `output` (the file a link
    there leads to) is first checked to take the scores and their partial run."""
    if output_format(output) != SHARDS:
        check_writable(output, what="the scores", advice=ADVICE)
        output = write_target(output)
    elif os.path.basename(output.rstrip(os.sep)) in ("", ".", ".."):  # the folder a run is in, or the root
        raise ConfigError(f"--output {output} is a folder that a run cannot replace: name a new folder, e.g. scores/")
    elif os.path.exists(output) and not os.path.isdir(output):
        raise ConfigError(f"--output {output} names a folder, but a file is there: {ADVICE}")
    elif os.path.isdir(output) and os.listdir(output) and not os.path.isfile(os.path.join(output, RUN_FILE)):
        # it will be replaced whole: only a folder of scores written here before may be
        raise ConfigError(f"--output {output} holds files other than scores this project wrote: {ADVICE}")
    partial = partial_path(output)
    if not os.path.lexists(partial):
        check_writable(partial, what="the scores", advice=ADVICE)
    with run_lock([partial], advice=ADVICE):
        yield ScoreWriter(output, run, paths=paths, resume=resume)


def file_sha256(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def paths_sha256(paths: Sequence[str]) -> str:
    return hashlib.sha256(b"".join(os.fsencode(path) + b"\0" for path in paths)).hexdigest()


class ScoreWriter:
    """The output of one scoring run of `paths`, piece by piece; `finish` makes it the output.
    `resume` continues the partial run beside `output` (one that agrees with `run`), or finds that
    the run finished (`finished`); without it, a partial run there is refused, not lost.
    """

    def __init__(self, output: str, run: ScoringRun, *, paths: Sequence[str], resume: bool) -> None:
        self.output, self.format, self.partial = output, output_format(output), partial_path(output)
        self.run, self.paths, self.rows_file = run, paths, os.path.join(self.partial, CSV_ROWS)
        if self.format != CSV:
            check_utf8_names(paths)
            import pyarrow  # noqa: F401  (now, not after the first piece: a missing one is the scale extra's)
        self.done = self.failed = self.shards = 0
        self.finished = False
        self.notes: list[str] = []
        shutil.rmtree(self.partial + ".done", ignore_errors=True)  # what a run stopped while it tidied up left
        exists = os.path.lexists(self.partial)
        if exists and not resume:
            raise ConfigError(
                f"{self.partial} holds an interrupted run of these scores: pass --resume to continue it, "
                f"or remove it to score from the start"
            )
        if exists:
            self._resume()
        elif resume and self._output_is_this_run():
            self.finished = True
        else:
            if resume:
                self.notes.append(f"--resume: no interrupted run in {self.partial}; scoring from the start")
            self._begin()

    def _begin(self) -> None:
        """The partial run, made under another name and given its own once its record (and the CSV's
        header) are on the disk: a run stopped while it began leaves no partial run that --resume
        would find damaged, and the next run removes what it left."""
        begun = self.partial + ".begun"
        shutil.rmtree(begun, ignore_errors=True)
        try:
            with self._appending():
                os.makedirs(begun)
            with replacing(os.path.join(begun, RUN_FILE), what="the scoring run's record", advice=ADVICE) as file:
                json.dump({"kind": _KIND, "format": FORMAT, **asdict(self.run)}, file, indent=1)
            if self.format == CSV:
                self._write_csv(csv_header(heads=self.run.heads), mode="w", path=os.path.join(begun, CSV_ROWS))
            with self._appending():
                os.rename(begun, self.partial)
        except BaseException:
            shutil.rmtree(begun, ignore_errors=True)
            raise

    @contextlib.contextmanager
    def _appending(self) -> Iterator[None]:
        """A block that adds to the partial run, its OSErrors (a full disk) as one OutputError."""
        try:
            yield
        except OSError as error:
            raise OutputError(
                f"cannot write the scores {self.rows_file if self.format == CSV else self.partial}: "
                f"{error.strerror or error}; the rows of {self.done} images are kept there: make room, "
                f"then pass --resume to go on"
            ) from None

    def _write_csv(self, text: str, *, mode: str = "a", path: str | None = None) -> None:
        """`text` added to the partial CSV (or the CSV at `path`), on the disk when this returns."""
        path = path or self.rows_file
        with self._appending(), open(path, mode, newline="", encoding="utf-8", errors=NAMES) as file:
            file.write(text)
            _sync(file)

    def _resume(self) -> None:
        recorded = _recorded_run(os.path.join(self.partial, RUN_FILE), self.partial)
        differ = differences(recorded, self.run)
        if differ:
            raise ConfigError(
                f"--resume: {self.partial} was scored with another {'; another '.join(differ)}: pass the "
                f"options and images of that run, or remove {self.partial} to score from the start"
            )
        self.run = recorded  # its window, so that its images are batched as they were
        if self.format == CSV and not os.path.exists(self.rows_file) and self._output_is_this_run():
            self.finished = True  # stopped after its rows took the output's name: only the tidying up was left
            _remove_folder(self.partial)
            return
        errors = self._kept_csv() if self.format == CSV else self._kept_shards()
        self.done, self.failed = len(errors), sum(1 for error in errors if error)
        self.notes.append(f"--resume: {self.done} of {self.run.images} images were scored before; scoring the rest")

    def _kept_csv(self) -> list[str]:
        """The errors of the whole rows of the partial CSV, which is cut after them."""
        path = self.rows_file
        with open(path, "rb") as file:
            text = file.read().decode("utf-8", errors=NAMES)
        header = csv_header(heads=self.run.heads)
        if not text.startswith(header):
            raise _damaged(path, "its first line is not the scores' header")
        rows, length = whole_rows(text[len(header) :], width=len(header.split(",")))
        self._check_names([row[0] for row in rows], path, first=0)
        os.truncate(path, len(text[: len(header) + length].encode("utf-8", errors=NAMES)))
        return [row[2] for row in rows]

    def _kept_shards(self) -> list[str]:
        """The errors of the rows of the shards in the partial folder, numbered from 0 on."""
        import pyarrow.parquet as parquet

        errors: list[str] = []
        for name in os.listdir(self.partial):
            if name.endswith(".partial"):  # a shard's temporary file, cut short by the interrupt
                os.remove(os.path.join(self.partial, name))
        for number, name in enumerate(self._shard_names()):
            path = os.path.join(self.partial, name)
            if int(SHARD.match(name).group(1)) != number:
                raise _damaged(self.partial, f"shard {number} is missing before {name}")
            try:
                table = parquet.read_table(path)
            except (OSError, ValueError) as error:
                raise _damaged(path, f"it is no Parquet file ({error})") from None
            if not table.schema.equals(parquet_schema(self.run)):  # the shards are merged as they are
                columns = f"{columns_named(table.schema)}, not {columns_named(parquet_schema(self.run))}"
                raise _damaged(path, f"its columns are {columns}")
            self._check_names(table.column("image").to_pylist(), path, first=len(errors))
            errors += [error or "" for error in table.column("error").to_pylist()]
            self.shards += 1
        return errors

    def _shard_names(self) -> list[str]:
        names = (name for name in os.listdir(self.partial) if SHARD.match(name))
        return sorted(names, key=lambda name: (len(name), name))  # in their numbers' order

    def _check_names(self, names: Sequence[str], path: str, *, first: int) -> None:
        if list(names) != list(self.paths[first : first + len(names)]):
            raise _damaged(path, "its rows are not the images of this run, in their order")

    def _output_is_this_run(self) -> bool:
        """Whether the output is that of a finished run of these images (of this run, where it records it)."""
        with contextlib.suppress(OSError, ValueError, KeyError, csv.Error):  # then it is not
            if self.format == CSV:
                with open(self.output, newline="", encoding="utf-8", errors=NAMES) as file:
                    rows = list(csv.reader(file))
                header = csv_header(heads=self.run.heads).rstrip("\n").split(",")
                return bool(rows) and rows[0] == header and [row[0] for row in rows[1:]] == list(self.paths)
            if self.format == PARQUET:
                import pyarrow.parquet as parquet

                metadata = parquet.read_schema(self.output).metadata or {}
                recorded = json.loads(metadata.get(METADATA_RUN.encode(), b"{}"))
            else:
                with open(os.path.join(self.output, RUN_FILE), encoding="utf-8") as file:
                    recorded = json.load(file)
            known = {field.name for field in fields(ScoringRun)}
            return not differences(ScoringRun(**{name: recorded[name] for name in known}), self.run)
        return False

    def write(self, piece: Sequence[ImageScore]) -> None:
        """The next piece of results, on the disk when this returns."""
        expected = self.paths[self.done : self.done + len(piece)]
        if [result.path for result in piece] != list(expected):
            raise RuntimeError(f"results of images {self.done}.. are not in input order")
        if self.format == CSV:
            self._write_csv(csv_rows(piece, heads=self.run.heads))
        else:
            shard = os.path.join(self.partial, f"part-{self.shards:06d}.parquet")
            with replacing_path(shard, what="the scores", advice=ADVICE) as path:
                write_parquet(path, piece, parquet_schema(self.run))
            self.shards += 1
        self.done += len(piece)
        self.failed += sum(1 for result in piece if result.error)

    def finish(self) -> None:
        """The partial run becomes the output; every image must have its row."""
        if self.done != self.run.images:
            raise RuntimeError(f"{self.done} of {self.run.images} images were written")
        if self.format == SHARDS:
            output = self.output.rstrip(os.sep + (os.altsep or ""))
            if os.path.isdir(output):  # a folder there before is removed once the new one has its name
                os.replace(output, self.partial + ".done")
            os.replace(self.partial, output)
            shutil.rmtree(self.partial + ".done", ignore_errors=True)
            return
        if self.format == CSV:
            os.replace(self.rows_file, self.output)
        else:
            self._merge()
        _remove_folder(self.partial)

    def _merge(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as parquet

        with replacing_path(self.output, what="the scores", advice=ADVICE) as path:
            with parquet.ParquetWriter(path, parquet_schema(self.run)) as writer:
                tables: list = []
                for name in self._shard_names():
                    tables.append(parquet.read_table(os.path.join(self.partial, name)))
                    if sum(table.num_rows for table in tables) >= ROW_GROUP:
                        writer.write_table(pa.concat_tables(tables))
                        tables = []
                if tables:
                    writer.write_table(pa.concat_tables(tables))


def _recorded_run(path: str, partial: str) -> ScoringRun:
    try:
        with open(path, encoding="utf-8") as file:
            recorded = json.load(file)
    except (OSError, ValueError) as error:
        raise _damaged(path, f"it cannot be read as JSON ({error})") from None
    if not isinstance(recorded, dict) or recorded.get("kind") != _KIND:
        raise _damaged(path, f"it is not a {_KIND}")
    if recorded.get("format") != FORMAT:
        raise ConfigError(
            f"--resume: {partial} holds a run of an earlier version of LinearityIQA, which this one cannot "
            f"continue: remove {partial} to score from the start"
        )
    values = {}
    for field in fields(ScoringRun):
        value = values[field.name] = recorded.get(field.name)
        wanted = {"int": int, "bool": bool}.get(field.type, str)
        if type(value) is not wanted or (wanted is int and value < 1 and field.name != "max_pixels"):
            raise _damaged(path, f"its {field.name} is {value!r}")
    return ScoringRun(**values)


def _damaged(path: str, why: str) -> BadFileError:
    partial = path if path.endswith(".partial") else os.path.dirname(path)
    return BadFileError(f"partial run {path} is damaged ({why}): remove {partial} to score from the start")


def _remove_folder(folder: str) -> None:
    """`folder` removed: first renamed, so that a run stopped while it removes leaves no half of it."""
    os.replace(folder, folder + ".done")
    shutil.rmtree(folder + ".done", ignore_errors=True)


def _sync(file) -> None:
    file.flush()
    os.fsync(file.fileno())
