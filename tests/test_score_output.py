"""test_demo.py's output at scale: rows written a window (or a few seconds) at a time, --resume after
SIGINT and SIGKILL at any moment, Parquet files and folders, lists of paths and URIs. The Ray path is
test_ray_scoring.py's."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from data_helpers import SCORING_B, SCORING_K, ScriptForks, read_scores

import test_demo as demo
from linearityiqa import image_scoring
from linearityiqa.records import score_output

REPO = Path(__file__).resolve().parents[1]
K, B = SCORING_K, SCORING_B  # conftest.scoring's checkpoints
WINDOW = ["--window", "4"]


def argv(scoring, output, *more) -> list[str]:
    return ["--img", str(scoring / "images"), "-modelfile", str(scoring / "model.pth"), "-o", str(output), *WINDOW,
            *more]  # fmt: skip


@pytest.fixture(scope="module")
def reference(scoring):
    """The CSV of an uninterrupted run, with the window the tests use (conftest.scoring's)."""
    return (scoring / "reference.csv").read_bytes()


def test_rows_are_on_the_disk_a_window_at_a_time_and_the_output_appears_at_the_end(scoring, reference, tmp_path,
                                                                                      monkeypatch):  # fmt: skip
    output = tmp_path / "scores.csv"
    output.write_text("an earlier output\n")
    partial = tmp_path / "scores.csv.partial" / "scores.csv"
    seen = []
    real = score_output.ScoreWriter.write

    def watched(writer, window):
        real(writer, window)
        seen.append((len(read_scores(partial.read_text())), output.read_text()))

    monkeypatch.setattr(score_output.ScoreWriter, "write", watched)
    monkeypatch.setattr(image_scoring, "WINDOW_SECONDS", 1e9)  # pieces of whole windows only
    assert demo.main(argv(scoring, output)) == demo.EXIT_SOME_FAILED
    assert seen == [(rows, "an earlier output\n") for rows in (4, 8, 12, 16, 20, 24, 28, 30)]
    assert output.read_bytes() == reference and not partial.parent.exists()
    rows = read_scores(reference.decode())
    assert [row["image"] for row in rows] == [str(scoring / "images" / f"{index:02d}.jpg") for index in range(30)]
    assert [index for index, row in enumerate(rows) if row["error"]] == [15] and rows[15]["score"] == ""


def test_a_window_is_written_in_pieces_when_its_seconds_are_up(scoring, reference, tmp_path, monkeypatch, capsys):
    output = tmp_path / "scores.csv"
    pieces = []
    real = score_output.ScoreWriter.write
    monkeypatch.setattr(score_output.ScoreWriter, "write", lambda writer, piece: pieces.append(len(piece)) or real(
        writer, piece))  # fmt: skip
    monkeypatch.setattr(image_scoring, "WINDOW_SECONDS", 0.0)  # each batch (one image on a CPU) closes a piece
    assert demo.main(argv(scoring, output)) == demo.EXIT_SOME_FAILED
    # one row a piece, but 14.jpg's and the unreadable 15.jpg's, which no batch holds
    assert pieces == [1] * 14 + [2] + [1] * 14 and output.read_bytes() == reference
    err = capsys.readouterr().err.splitlines()
    assert err[-2].startswith("test_demo.py: scores are k*y+b of the fused head, on the scale of the training MOS")


def test_the_csv_reads_with_the_defaults_of_pandas_and_the_csv_module(scoring, reference):
    import pandas

    frame = pandas.read_csv(io.BytesIO(reference))
    assert list(frame.columns) == ["image", "score", "error"] and len(frame) == 30
    assert frame["image"][0] == str(scoring / "images" / "00.jpg") and frame["score"].isna().tolist() == [
        index == 15 for index in range(30)
    ]
    rows = list(csv.DictReader(io.StringIO(reference.decode(), newline="")))
    assert [float(row["score"]) for row in rows if row["score"]] == frame["score"].dropna().tolist()


@pytest.fixture(scope="module")
def forks():
    """Runs of test_demo.py as processes of their own, to stop with a signal, each started without
    importing torch again (data_helpers.ScriptForks); with what a run imports to write Parquet."""
    modules = ["test_demo", "linearityiqa.scoring", "linearityiqa.records.score_output", "pyarrow.parquet"]
    with ScriptForks(*modules) as forks:
        yield forks


@pytest.mark.reliability
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
def test_a_run_stopped_by_a_signal_goes_on_with_resume_to_the_uninterrupted_output(stop, forks, scoring, reference,
                                                                                    tmp_path, capsys):  # fmt: skip
    """The run stopped is a process of its own, which the signal stops (SIGINT as a terminal's
    Ctrl-C sends it); the run that resumes it runs in this one."""
    output = tmp_path / "scores.csv"
    options = argv(scoring, output, "--window", "2")
    process = forks.start([str(REPO / "test_demo.py"), *options], cwd=tmp_path, stderr=tmp_path / "stderr.txt")
    rows = tmp_path / "scores.csv.partial" / "scores.csv"
    deadline = time.monotonic() + 120
    while not (rows.exists() and rows.read_text().count("\n") >= 4) and time.monotonic() < deadline:
        time.sleep(0.01)  # until a window is on the disk (two lines of header, two rows)
    process.send_signal(stop)
    process.wait(timeout=60)
    err = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == (130 if stop == signal.SIGINT else -signal.SIGKILL)
    if stop == signal.SIGINT:
        assert err.endswith("test_demo.py: interrupted; what was saved before is kept; pass --resume to go on "
                            "from the rows written\n")  # fmt: skip
    kept = len(read_scores(rows.read_text()))
    assert not output.exists() and 2 <= kept < 30
    capsys.readouterr()
    assert demo.main([*options, "--resume"]) == demo.EXIT_SOME_FAILED
    assert f"test_demo.py: note: --resume: {kept} of 30 images were scored before" in capsys.readouterr().err
    # --window 2 batches as --window 4 does here: one image per batch on a CPU
    assert output.read_bytes() == reference and not rows.parent.exists()


def interrupted_run(scoring, output, *more, windows=2):
    """A partial run of `windows` windows, as Ctrl-C after them leaves it."""
    real = score_output.ScoreWriter.write
    written = []

    def interrupt_after(writer, window):
        if len(written) == windows:
            raise KeyboardInterrupt
        real(writer, window)
        written.append(window)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(score_output.ScoreWriter, "write", interrupt_after)
        assert demo.main(argv(scoring, output, *more)) == 130


@pytest.mark.reliability
def test_a_row_cut_short_by_a_crash_is_scored_again_and_the_whole_ones_are_kept(scoring, reference, tmp_path, capsys):
    output = tmp_path / "scores.csv"
    interrupted_run(scoring, output)
    rows = tmp_path / "scores.csv.partial" / "scores.csv"
    lines = reference.decode().splitlines(keepends=True)
    with open(rows, "a") as file:  # a third window's first row, and its second cut in the middle
        file.write(lines[9] + lines[10][:-5])
    capsys.readouterr()
    assert demo.main([*argv(scoring, output), "--resume"]) == demo.EXIT_SOME_FAILED
    assert "--resume: 9 of 30 images were scored before; scoring the rest" in capsys.readouterr().err
    assert output.read_bytes() == reference


@pytest.mark.reliability
@pytest.mark.parametrize(
    "change, differs",
    [
        (["-modelfile", "{other}"], "another model (checkpoint {model}, sha256 "),
        (["--resize", "-rs_h", "64", "-rs_w", "96"], "another resize (native; this run: 64x96)"),
        (["--heads"], "another --heads (False; this run: True)"),
        (["--img", "{glob}"], "another input list (30 images; this run: 20 images)"),
    ],
)
def test_resume_refuses_a_partial_run_of_other_options_in_one_line(change, differs, scoring, tmp_path, capsys):
    output = tmp_path / "scores.csv"
    interrupted_run(scoring, output)
    before = (tmp_path / "scores.csv.partial" / "scores.csv").read_bytes()
    names = {"other": scoring / "other.pth", "model": scoring / "model.pth", "glob": scoring / "images" / "[01]*.jpg"}
    capsys.readouterr()
    assert demo.main([*argv(scoring, output), *[word.format(**names) for word in change], "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"test_demo.py: error: --resume: {output}.partial was scored with")
    assert differs.format(**names) in err and err.endswith(f"or remove {output}.partial to score from the start\n")
    assert (tmp_path / "scores.csv.partial" / "scores.csv").read_bytes() == before


@pytest.mark.reliability
def test_a_partial_run_is_never_lost_to_a_run_without_resume(scoring, tmp_path, capsys):
    output = tmp_path / "scores.csv"
    interrupted_run(scoring, output)
    capsys.readouterr()
    assert demo.main(argv(scoring, output)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"test_demo.py: error: {output}.partial holds an interrupted run") and err.count("\n") == 1
    assert "pass --resume to continue it, or remove it" in err
    assert len(read_scores((tmp_path / "scores.csv.partial" / "scores.csv").read_text())) == 8


@pytest.mark.reliability
@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda run: run.write_text("{"), "it cannot be read as JSON"),
        (lambda run: run.write_text(json.dumps({**json.loads(run.read_text()), "window": 0})), "its window is 0"),
        (lambda run: run.write_text(json.dumps({"kind": "something else"})), "it is not a linearityiqa scoring run"),
    ],
)
def test_a_damaged_record_of_a_partial_run_is_one_line(damage, why, scoring, tmp_path, capsys):
    output = tmp_path / "scores.csv"
    interrupted_run(scoring, output)
    record = tmp_path / "scores.csv.partial" / "_run.json"
    damage(record)
    capsys.readouterr()
    assert demo.main([*argv(scoring, output), "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"test_demo.py: error: partial run {record} is damaged ({why}")
    assert err.endswith(f"): remove {output}.partial to score from the start\n") and err.count("\n") == 1


@pytest.mark.reliability
def test_a_partial_run_of_an_earlier_version_is_refused_not_mixed(scoring, tmp_path, capsys):
    output = tmp_path / "scores.csv"
    interrupted_run(scoring, output)
    record = tmp_path / "scores.csv.partial" / "_run.json"  # as the version whose CSV began with "# score:"
    run = json.loads(record.read_text())
    del run["format"]
    record.write_text(json.dumps(run))
    capsys.readouterr()
    assert demo.main([*argv(scoring, output), "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "earlier version" in err and f"remove {output}.partial to score" in err
    assert not output.exists()


@pytest.mark.parametrize("name", ["scores.csv", "scores.parquet", "shards/"])
def test_resume_after_a_run_that_finished_scores_nothing_and_says_where_its_scores_are(name, scoring, tmp_path,
                                                                                        capsys):  # fmt: skip
    output = str(tmp_path / name) + (os.sep if name.endswith("/") else "")  # a folder's name ends with a slash
    assert demo.main(argv(scoring, output)) == demo.EXIT_SOME_FAILED
    written = {path: path.read_bytes() for path in sorted(tmp_path.rglob("*")) if path.is_file()}
    capsys.readouterr()
    assert demo.main([*argv(scoring, output), "--resume"]) == 0
    err = capsys.readouterr().err
    assert err == f"test_demo.py: --resume: the run finished; its scores are in {output}\n"
    assert {path: path.read_bytes() for path in sorted(tmp_path.rglob("*")) if path.is_file()} == written
    # the output of another run is no finished run of this one: scored again from the start
    assert demo.main([*argv(scoring, output), "--heads", "--resume"]) == demo.EXIT_SOME_FAILED
    assert "no interrupted run" in capsys.readouterr().err


# a run of window 6 in batches of 3 images of one size, its pieces written every 0.2 s
KILLED = ["--window", "6", "--eval_batch_size", "3"]
PIECES_OF_A_FIFTH = "import linearityiqa.image_scoring as s; s.WINDOW_SECONDS = 0.2"


@pytest.fixture(scope="module")
def killed_whole(scoring, tmp_path_factory):
    """The rows of a run of KILLED never stopped, and the seconds it took here."""
    output = tmp_path_factory.mktemp("whole") / "whole.csv"
    started = time.monotonic()
    assert demo.main([*argv(scoring, output, *KILLED)]) == demo.EXIT_SOME_FAILED
    return read_scores(output.read_text()), time.monotonic() - started


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["scores.csv", "scores.parquet", "shards/"])
def test_a_run_killed_at_any_moment_resumes_to_the_uninterrupted_output(name, forks, killed_whole, scoring, tmp_path,
                                                                        monkeypatch, capsys):  # fmt: skip
    """SIGKILL at a random moment, from before the first row to after the last: whatever the run
    left, --resume ends with the output of a run never stopped, and keeps every row written. The
    run killed is a process of its own; the run that resumes it runs in this one."""
    output = str(tmp_path / name) + (os.sep if name.endswith("/") else "")  # a folder's name ends with a slash
    options = argv(scoring, output, *KILLED)
    whole, took = killed_whole
    seed = random.randrange(2**32)
    # the run killed takes about as long as the one in this process, its imports done before it starts
    moment = random.Random(seed).uniform(0, 1.5) * took
    process = forks.start([str(REPO / "test_demo.py"), *options], cwd=tmp_path, stderr=tmp_path / "stderr.txt",
                          before=PIECES_OF_A_FIFTH)  # fmt: skip
    try:
        process.wait(timeout=moment)
    except subprocess.TimeoutExpired:
        process.kill()
    process.wait(timeout=60)
    kept = kept_rows(output)
    assert kept == whole[: len(kept)], f"seed {seed}: the rows kept are the first rows of the whole run"
    monkeypatch.setattr(image_scoring, "WINDOW_SECONDS", 0.2)  # as in the run killed (PIECES_OF_A_FIFTH)
    capsys.readouterr()
    status = demo.main([*options, "--resume"])
    err = capsys.readouterr().err
    assert status in (0, demo.EXIT_SOME_FAILED), f"seed {seed}: {err}"
    if status == 0:  # it had finished
        assert "the run finished" in err, f"seed {seed}"
    elif 0 < len(kept) < 30:
        assert f"--resume: {len(kept)} of 30 images were scored before" in err, f"seed {seed}"
    assert kept_rows(output) == whole and not os.path.exists(score_output.partial_path(output)), f"seed {seed}"


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["scores.csv", "shards/"])
def test_a_run_killed_as_it_begins_its_partial_run_leaves_none_that_resume_refuses(name, forks, scoring, reference,
                                                                                    tmp_path, capsys):  # fmt: skip
    """Killed once the partial run's folder is made, before its record is in it."""
    output = str(tmp_path / name) + (os.sep if name.endswith("/") else "")
    killed = "import os, signal, linearityiqa.records.score_output as o; "
    killed += "o.replacing = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)"
    process = forks.start([str(REPO / "test_demo.py"), *argv(scoring, output)], cwd=tmp_path,
                          stderr=tmp_path / "stderr.txt", before=killed)  # fmt: skip
    assert process.wait(timeout=120) == -signal.SIGKILL
    capsys.readouterr()
    assert demo.main([*argv(scoring, output), "--resume"]) == demo.EXIT_SOME_FAILED
    assert "--resume: no interrupted run" in capsys.readouterr().err
    assert [row["score"] for row in kept_rows(output)] == [row["score"] for row in read_scores(reference.decode())]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([name.rstrip("/"), "stderr.txt"])


def kept_rows(output: str) -> list[dict]:
    """The whole rows of the output, else of the partial run beside it, as a CSV reader reads them (text)."""
    import pyarrow.dataset as dataset

    source = output if os.path.exists(output) else score_output.partial_path(output)
    if output.endswith(".csv"):
        source = source if source == output else os.path.join(source, "scores.csv")
        text = Path(source).read_text() if os.path.exists(source) else ""
        return read_scores(text[: text.rfind("\n") + 1]) if text else []  # a row cut short is not kept
    if not os.path.exists(source):
        return []
    table = dataset.dataset(source, format="parquet").to_table()
    text = lambda value: "" if value is None else str(value)  # noqa: E731  (as csv writes it)
    return [{name: text(value) for name, value in row.items()} for row in table.to_pylist()]


@pytest.mark.reliability
@pytest.mark.parametrize(
    "folder, message",
    [
        ("./", "--output ./ is a folder that a run cannot replace: name a new folder, e.g. scores/"),
        ("/", "--output / is a folder that a run cannot replace: name a new folder, e.g. scores/"),
        ("{images}/", "--output {images}/ holds files other than scores this project wrote: pass another --output"),
    ],
)
def test_a_folder_of_shards_never_replaces_a_folder_that_holds_other_files(folder, message, scoring, tmp_path,
                                                                            monkeypatch, capsys):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("a file of the user's")
    images = scoring / "images"
    assert demo.main(argv(scoring, folder.format(images=images))) == 1
    assert capsys.readouterr().err == f"test_demo.py: error: {message.format(images=images)}\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"] and len(list(images.iterdir())) == 30


@pytest.mark.reliability
def test_a_shard_of_other_columns_is_refused_before_it_is_merged(scoring, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as parquet

    output = tmp_path / "scores.parquet"
    interrupted_run(scoring, output)
    shard = tmp_path / "scores.parquet.partial" / "part-000001.parquet"
    rows = parquet.read_table(shard)
    parquet.write_table(
        rows.set_column(1, "score", pa.array([str(score) for score in rows["score"].to_pylist()])), shard
    )
    before = {path.name: path.read_bytes() for path in shard.parent.iterdir()}
    capsys.readouterr()
    assert demo.main([*argv(scoring, output), "--resume"]) == 1
    assert capsys.readouterr().err == (
        f"test_demo.py: error: partial run {shard} is damaged (its columns are image (string), score (string), "
        f"error (string), not image (string), score (double), error (string)): remove {output}.partial to score "
        f"from the start\n"
    )
    assert {path.name: path.read_bytes() for path in shard.parent.iterdir()} == before and not output.exists()


def test_resume_with_nothing_to_resume_scores_from_the_start(scoring, reference, tmp_path, capsys):
    output = tmp_path / "scores.csv"
    assert demo.main([*argv(scoring, output), "--resume"]) == demo.EXIT_SOME_FAILED
    assert f"--resume: no interrupted run in {output}.partial; scoring from the start" in capsys.readouterr().err
    assert output.read_bytes() == reference


def test_parquet_files_and_folders_hold_the_csv_rows_and_the_heads(scoring, reference, tmp_path):
    import pyarrow.dataset as dataset
    import pyarrow.parquet as parquet

    file, folder = tmp_path / "scores.parquet", tmp_path / "shards"
    interrupted_run(scoring, file, "--heads")  # Parquet resumes from its shards
    assert demo.main([*argv(scoring, file, "--heads"), "--resume"]) == demo.EXIT_SOME_FAILED
    assert demo.main(argv(scoring, f"{folder}{os.sep}")) == demo.EXIT_SOME_FAILED
    expected = read_scores(reference.decode())
    table = parquet.read_table(file)
    assert table.column_names == ["image", "score", "error", "pq6", "pq7", "pq"]
    metadata = parquet.ParquetFile(file).schema_arrow.metadata
    assert metadata[b"linearityiqa.score"].startswith(b"k*y+b of the fused head, on the scale of the training MOS")
    assert json.loads(metadata[b"linearityiqa.run"])["scale"] == metadata[b"linearityiqa.score"].decode()
    assert json.loads((folder / "_run.json").read_text())["scale"] == metadata[b"linearityiqa.score"].decode()
    shards = dataset.dataset(folder, format="parquet").to_table()  # _run.json is skipped by Parquet readers
    names = sorted(os.listdir(folder))
    assert names == ["_run.json", *[f"part-{number:06d}.parquet" for number in range(len(names) - 1)]]
    for rows in (table.to_pylist(), shards.to_pylist()):
        assert [row["image"] for row in rows] == [row["image"] for row in expected]
        assert [row["score"] for row in rows] == [float(row["score"]) if row["score"] else None for row in expected]
        assert [row["error"] for row in rows] == [row["error"] or None for row in expected]
    for row in table.to_pylist():  # the fused head mapped with k[0], b[0] is the score
        assert row["score"] is None or row["score"] == pytest.approx(K[0] * row["pq"] + B[0], abs=1e-9)


def test_a_list_of_paths_in_csv_or_parquet_is_scored_in_its_order(scoring, reference, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as parquet

    listed = tmp_path / "list.parquet"
    rows = read_scores(reference.decode())
    parquet.write_table(pa.table({"id": range(30), "path": [row["image"] for row in rows]}), listed)
    for source in (listed, tmp_path / "earlier.csv"):
        (tmp_path / "earlier.csv").write_bytes(reference)  # an output of test_demo.py lists its images too
        output = tmp_path / f"from-{source.suffix[1:]}.csv"
        assert demo.main(["--img", str(source), "-modelfile", str(scoring / "model.pth"), "-o", str(output),
                          *WINDOW]) == demo.EXIT_SOME_FAILED  # fmt: skip
        assert output.read_bytes() == reference


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["list.csv", "list.parquet"])
def test_an_output_over_its_list_of_images_is_refused(name, scoring, reference, tmp_path, capsys):
    listed = tmp_path / name
    if name.endswith(".csv"):
        listed.write_bytes(reference)  # an earlier output lists its images
    else:
        assert demo.main(argv(scoring, listed)) == demo.EXIT_SOME_FAILED
    before = hashlib.sha256(listed.read_bytes()).hexdigest()
    capsys.readouterr()
    assert demo.main(["--img", str(listed), "-modelfile", str(scoring / "model.pth"), "-o", str(listed)]) == 1
    assert capsys.readouterr().err == (
        f"test_demo.py: error: --output {listed} is the list of images {listed} itself, which writing it would "
        f"destroy: choose another --output; nothing was written\n"
    )
    assert hashlib.sha256(listed.read_bytes()).hexdigest() == before and sorted(tmp_path.iterdir()) == [listed]


@pytest.mark.reliability
@pytest.mark.parametrize(
    "paths, message",
    [
        (["a.jpg", "./b.jpg", "b.jpg"], "rows 2 and 3 of list {listed} name the same image, b.jpg: remove one (an "
         "image has one row)"),
        (["a.jpg", None], "row 2 of list {listed} has no path in column path: fill it in or remove the row"),
        ([7, 8], "row 1 of list {listed} holds 7 (int) in column path, not a path: write the column as text"),
    ],
)  # fmt: skip
def test_a_list_with_a_repeated_missing_or_non_text_path_is_one_line(paths, message, scoring, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as parquet

    listed = tmp_path / "list.parquet"
    parquet.write_table(pa.table({"path": pa.array(paths)}), listed)
    model = ["-modelfile", str(scoring / "model.pth")]
    assert demo.main(["--img", str(listed), *model, "-o", str(tmp_path / "s.csv")]) == 1
    assert capsys.readouterr().err == f"test_demo.py: error: {message.format(listed=listed)}\n"
    assert sorted(tmp_path.iterdir()) == [listed]


@pytest.mark.reliability
def test_a_list_without_a_column_of_paths_is_one_line(scoring, tmp_path, capsys):
    listed = tmp_path / "list.csv"
    listed.write_text("id,name\n1,a.jpg\n")
    assert demo.main(["--img", str(listed), "-modelfile", str(scoring / "model.pth")]) == 1
    assert capsys.readouterr().err == (
        f"test_demo.py: error: list {listed} has columns id, name, none of them image or path: name the column "
        f"of image paths image\n"
    )


def test_images_named_by_uri_are_read_with_pyarrow(scoring, reference, tmp_path):
    output = tmp_path / "scores.csv"
    folder = (scoring / "images").as_uri()
    assert demo.main(["--img", folder, "-modelfile", str(scoring / "model.pth"), "-o", str(output), *WINDOW]) == 3
    got, expected = read_scores(output.read_text()), read_scores(reference.decode())
    assert [row["image"] for row in got] == [f"file://{row['image']}" for row in expected]
    assert [row["score"] for row in got] == [row["score"] for row in expected]
    assert got[15]["error"].startswith(f"cannot decode image file://{scoring / 'images' / '15.jpg'} (")


def test_heads_on_standard_output_are_columns_of_the_csv(scoring, reference, capsys):
    assert demo.main([*argv(scoring, "-"), "--heads"]) == demo.EXIT_SOME_FAILED
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["image", "score", "error", "pq6", "pq7", "pq"]
    assert [row["score"] for row in rows] == [row["score"] for row in read_scores(reference.decode())]
    assert rows[15]["pq"] == "" and float(rows[0]["score"]) == pytest.approx(K[0] * float(rows[0]["pq"]) + B[0])


@pytest.fixture(scope="module")
def object_store(scoring):
    """A local S3 server (moto's) holding the images under s3://photos/set/; the variables that lead
    pyarrow's S3 file system to it."""
    from moto.server import ThreadedMotoServer
    from pyarrow import fs

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": f"http://{host}:{port}"}  # fmt: skip
    store = fs.S3FileSystem(
        access_key="testing", secret_key="testing", region="us-east-1", endpoint_override=f"http://{host}:{port}",
        allow_bucket_creation=True,
    )  # fmt: skip
    store.create_dir("photos")
    for image in sorted((scoring / "images").iterdir()):
        with store.open_output_stream(f"photos/set/{image.name}") as file:
            file.write(image.read_bytes())
    yield settings
    server.stop()


def test_images_on_an_s3_object_store_score_as_local_ones(object_store, scoring, reference, tmp_path, monkeypatch):
    for name, value in object_store.items():
        monkeypatch.setenv(name, value)
    output = tmp_path / "scores.csv"
    model = ["-modelfile", str(scoring / "model.pth"), *WINDOW]
    assert demo.main(["--img", "s3://photos/set/", *model, "-o", str(output)]) == demo.EXIT_SOME_FAILED
    got, expected = read_scores(output.read_text()), read_scores(reference.decode())
    assert [row["image"] for row in got] == [f"s3://photos/set/{index:02d}.jpg" for index in range(30)]
    assert [row["score"] for row in got] == [row["score"] for row in expected]
    assert got[15]["error"].startswith("cannot decode image s3://photos/set/15.jpg (")
    listed = tmp_path / "list.csv"
    listed.write_text("image\ns3://photos/set/00.jpg\ns3://photos/set/gone.jpg\n")
    assert demo.main(["--img", str(listed), *model, "-o", str(output)]) == demo.EXIT_SOME_FAILED
    rows = read_scores(output.read_text())
    assert rows[0]["score"] == expected[0]["score"]
    assert rows[1]["error"] == "image s3://photos/set/gone.jpg does not exist"
