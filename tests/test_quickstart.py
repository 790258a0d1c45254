"""main.py --quickstart: every step of the pipeline runs on the synthetic data it makes.
(Shrunk here to a few images and one epoch; tests/test_learning.py checks that the full
settings learn.)"""

import csv

import pytest

import main
import quickstart


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(quickstart, 'KONIQ', dict(count=30, width=64, height=48, seed=0))
    monkeypatch.setattr(quickstart, 'CLIVE', dict(count=6, width=80, height=80, seed=1))
    epochs = quickstart.TRAINING.index('-e') + 1
    monkeypatch.setattr(quickstart, 'TRAINING', quickstart.TRAINING[:epochs] + ['1'] +
                        quickstart.TRAINING[epochs + 1:])
    return tmp_path


def test_quickstart_trains_tests_and_scores(tiny, capsys):
    assert main.main(['--quickstart']) == 0
    out = capsys.readouterr().out
    assert 'KonIQ-10k, SROCC: ' in out and 'CLIVE, PLCC_logistic: ' in out
    assert 'The image quality score is ' in out
    assert (tiny / quickstart.CHECKPOINT).is_file()
    with open(tiny / quickstart.ROOT / 'scores.csv', newline='') as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 6 and all(row['score'] and not row['error'] for row in rows)
    # a second run reuses the data sets it made
    made = (tiny / quickstart.ROOT / 'KonIQ-10kinfo.mat').stat().st_mtime_ns
    assert main.main(['--quickstart']) == 0
    assert (tiny / quickstart.ROOT / 'KonIQ-10kinfo.mat').stat().st_mtime_ns == made
