"""test_demo.py --ray on a local Ray cluster of two CPUs (conftest.ray_address): the plain path's rows,
in CSV and Parquet, a worker killed mid-run, a plain run resumed on Ray, and a cluster started
for the run.

Not marked slow, though it takes a minute: its time goes in waiting on the cluster's processes,
which grows many times over when they compete for the cores with the heavy files handed out first."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from data_helpers import read_scores

import test_demo as demo
from linearityiqa.errors import MissingFileError
from linearityiqa.ray_scoring import _users_mistake
from linearityiqa.records import score_output

# Ray's workers may use other thread counts than the plain path: float32 rounding, times k[0] = 50
TOLERANCE = 1e-4


def argv(scoring, output, *more) -> list[str]:
    return ["--img", str(scoring / "images"), "-modelfile", str(scoring / "model.pth"), "-o", str(output),
            "--window", "4", *more]  # fmt: skip


def assert_plain_rows(scoring, rows):
    """`rows` (dicts of image, score, error) are the plain path's, each once and in order."""
    plain = read_scores((scoring / "reference.csv").read_text())
    assert [row["image"] for row in rows] == [row["image"] for row in plain]
    assert [row["error"] or "" for row in rows] == [row["error"] for row in plain]
    for row, expected in zip(rows, plain):
        if expected["score"]:
            assert float(row["score"]) == pytest.approx(float(expected["score"]), abs=TOLERANCE)


def test_ray_gives_the_plain_paths_rows_in_csv_and_parquet(scoring, ray_address, tmp_path):
    import pyarrow.parquet as parquet

    csv_file, parquet_file = tmp_path / "scores.csv", tmp_path / "scores.parquet"
    assert demo.main(argv(scoring, csv_file, "--ray", ray_address, "--ray_workers", "2")) == demo.EXIT_SOME_FAILED
    assert demo.main(argv(scoring, parquet_file, "--ray", ray_address)) == demo.EXIT_SOME_FAILED
    assert csv_file.read_text().partition("\n")[0] == (scoring / "reference.csv").read_text().partition("\n")[0]
    assert_plain_rows(scoring, read_scores(csv_file.read_text()))
    assert_plain_rows(scoring, parquet.read_table(parquet_file).to_pylist())


def actor_processes() -> list[int]:
    listed = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in listed.splitlines() if "MapWorker(MapBatches(WindowScorer))" in line]


@pytest.mark.reliability
def test_a_worker_killed_mid_run_is_replaced_and_no_row_is_lost_or_doubled(scoring, ray_address, tmp_path):
    """The workers are the cluster's processes, killed by a thread of this one while it drives the run."""
    output = tmp_path / "scores.csv"
    options = argv(scoring, output, "--ray", ray_address)
    options[options.index("4")] = "2"  # --window 2: many windows, so that the kill comes in the middle
    rows, killed, ended = tmp_path / "scores.csv.partial" / "scores.csv", [], threading.Event()

    def kill_the_workers_once_two_windows_are_written():
        deadline = time.monotonic() + 180
        while not killed and not ended.is_set() and time.monotonic() < deadline:
            if rows.exists() and rows.read_text().count("\n") >= 4:  # two windows written
                for pid in actor_processes():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_the_workers_once_two_windows_are_written)
    killer.start()
    try:
        status = demo.main(options)
    finally:
        ended.set()
        killer.join()
    assert killed and status == demo.EXIT_SOME_FAILED
    assert_plain_rows(scoring, read_scores(output.read_text()))


def test_a_plain_run_goes_on_on_a_cluster_started_for_the_run(scoring, tmp_path, monkeypatch, capsys):
    output = tmp_path / "scores.csv"
    write = score_output.ScoreWriter.write

    def interrupt_after_two(writer, window):
        if writer.done == 8:
            raise KeyboardInterrupt
        write(writer, window)

    with monkeypatch.context() as patch:
        patch.setattr(score_output.ScoreWriter, "write", interrupt_after_two)
        assert demo.main(argv(scoring, output)) == 130
    with open(tmp_path / "scores.csv.partial" / "scores.csv", "a") as partial:  # a row in the third window
        partial.write((scoring / "reference.csv").read_text().splitlines(keepends=True)[9])
    # RAY_ADDRESS would make ray.init join a cluster: --ray without an address starts one of its own
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    capsys.readouterr()
    status = demo.main(argv(scoring, output, "--ray", "--resume"))
    err = capsys.readouterr().err
    assert status == demo.EXIT_SOME_FAILED, err
    assert "--resume: 9 of 30 images were scored before; scoring the rest" in err
    assert_plain_rows(scoring, read_scores(output.read_text()))


def test_a_run_that_stopped_after_its_last_row_is_finished_without_work(scoring, ray_address, tmp_path, monkeypatch):
    import pyarrow.parquet as parquet

    output = tmp_path / "scores.parquet"

    def interrupted(writer):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(score_output.ScoreWriter, "finish", interrupted)  # every row written, none made the output
        assert demo.main(argv(scoring, output)) == 130
    assert not output.exists()
    assert demo.main(argv(scoring, output, "--ray", ray_address, "--resume")) == demo.EXIT_SOME_FAILED
    assert_plain_rows(scoring, parquet.read_table(output).to_pylist())


@pytest.mark.reliability
def test_an_address_where_no_cluster_answers_is_one_line_at_once(scoring, tmp_path, capsys):
    with socket.socket() as probe:  # a port that nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    assert demo.main(argv(scoring, tmp_path / "scores.csv", "--ray", f"127.0.0.1:{port}")) == 1
    assert time.monotonic() - started < 60  # ray.init alone tries for minutes
    assert capsys.readouterr().err == (
        f"test_demo.py: error: nothing answers at 127.0.0.1:{port} (Connection refused): check --ray's address and "
        f"that the cluster is up (ray status on its head node)\n"
    )
    assert list(tmp_path.iterdir()) == []  # no partial run begun


def test_a_workers_mistake_is_found_in_rays_wrapping():
    mistake = MissingFileError("checkpoint x.pth does not exist")

    class Wrapped(Exception):  # as Ray wraps what a task raised: the task's error as `cause`
        cause = mistake

    try:
        raise Wrapped from ValueError("Ray's own words")
    except Wrapped as error:
        assert _users_mistake(error) is mistake
    assert _users_mistake(ValueError("a bug")) is None
