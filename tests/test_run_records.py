"""run_records: the per-epoch metrics CSV and the per-image scores CSV, written and read back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from linearityiqa.errors import BadFileError, MissingFileError
from linearityiqa.records.run_records import (
    EpochLog,
    EpochMetrics,
    Series,
    first_epoch_reaching,
    read_scores,
    write_scores,
)


def test_rows_are_read_back_as_series_in_epoch_order(tmp_path):
    path = str(tmp_path / "sub" / "run-epochs.csv")
    log = EpochLog(path)
    log.add(2, "val", {"PLCC": 0.75, "SROCC": 0.7})
    log.add(1, "val", {"PLCC": 0.5})
    log.add(2, "final_test", {"PLCC": 0.8})
    with open(path) as file:
        assert file.read().splitlines() == [
            "epoch,split,metric,value",
            "2,val,PLCC,0.75",
            "2,val,SROCC,0.7",
            "1,val,PLCC,0.5",
            "2,final_test,PLCC,0.8",
        ]
    metrics = EpochMetrics(path)
    assert metrics.series("val", "PLCC") == Series([1, 2], [0.5, 0.75])
    assert metrics.series("test", "PLCC") == Series([], [])
    assert metrics.final("PLCC") == 0.8 and math.isnan(metrics.final("SROCC"))
    assert metrics.has("val") and not metrics.has("train")


def test_a_resumed_log_keeps_the_finished_epochs_and_drops_the_interrupted_one(tmp_path):
    path = str(tmp_path / "run-epochs.csv")
    log = EpochLog(path)
    for epoch in (1, 2, 3):
        log.add(epoch, "val", {"PLCC": epoch / 10})
    EpochLog(path, resume_after=2).add(3, "val", {"PLCC": 0.9})
    assert EpochMetrics(path).series("val", "PLCC") == Series([1, 2, 3], [0.1, 0.2, 0.9])
    EpochLog(path)  # a new run starts the file again
    assert EpochMetrics(path).series("val", "PLCC") == Series([], [])


def test_first_epoch_reaching_a_threshold():
    series = Series([1, 2, 3, 4], [0.5, 0.85, 0.8, 0.92])
    assert first_epoch_reaching(series, 0.8) == 2
    assert first_epoch_reaching(series, 0.9) == 4
    assert first_epoch_reaching(series, 0.95) == 0  # never


def test_scores_round_trip(tmp_path):
    path = str(tmp_path / "scores.csv")
    performance = {
        "sq": np.array([10.0, 20.0]),
        "pq_before": np.array([[1.5], [2.5]]),
        "pq": np.array([[12.0], [18.5]]),
    }
    write_scores(path, performance)
    scores = read_scores(path)
    np.testing.assert_array_equal(scores["score"], [10, 20])
    np.testing.assert_array_equal(scores["prediction"], [1.5, 2.5])
    np.testing.assert_array_equal(scores["mapped"], [12, 18.5])


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch,value\n1,2\n", "header should be epoch,split,metric,value"),
        ("epoch,split,metric,value\n1,val,PLCC,high\n", "line 2: epoch '1' and value 'high' should be numbers"),
        ("epoch,split,metric,value\none,val,PLCC,0.5\n", "line 2"),
    ],
)
def test_a_broken_metrics_file_is_named_with_its_fault(tmp_path, text, message):
    path = tmp_path / "broken-epochs.csv"
    path.write_text(text)
    with pytest.raises(BadFileError, match=message) as error:
        EpochMetrics(str(path))
    assert str(path) in str(error.value)


def test_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(MissingFileError, match="train it first"):
        EpochMetrics(str(tmp_path / "none-epochs.csv"))
    with pytest.raises(MissingFileError, match="test the checkpoint first"):
        read_scores(str(tmp_path / "none-scores.csv"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b,c\n1,2,3\n", "header should be score,prediction,mapped"),
        ("score,prediction,mapped\n1,2,x\n", "not a scores file"),
    ],
)
def test_a_broken_scores_file_is_named(tmp_path, text, message):
    path = tmp_path / "broken-scores.csv"
    path.write_text(text)
    with pytest.raises(BadFileError, match=message):
        read_scores(str(path))
