"""main.py --quickstart, as a user runs it: every step of the pipeline runs on the synthetic data it
makes, in a process of its own, and each prints the command that runs it. (Shrunk here to a few
images and one epoch; tests/test_learning.py checks that the quick start's settings learn.)"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from data_helpers import read_scores

import main
from linearityiqa.cli import quickstart

REPO = Path(__file__).resolve().parents[1]
STEPS = [
    ("train on the synthetic KonIQ-10k", "main.py"),
    ("test across data sets on the synthetic CLIVE", "test_dataset.py"),
    ("score one image", "test_demo.py"),
    ("score a folder into a CSV file", "test_demo.py"),
]


@pytest.fixture
def shrunk(monkeypatch):
    """The quick start's data sets and training, shrunk: a few images, one epoch."""
    monkeypatch.setattr(quickstart, "KONIQ", dict(count=30, width=64, height=48, seed=0))
    monkeypatch.setattr(quickstart, "CLIVE", dict(count=6, width=80, height=80, seed=1))
    monkeypatch.setattr(quickstart, "TRAINING", [*quickstart.TRAINING])
    quickstart.TRAINING[quickstart.TRAINING.index("-e") + 1] = "1"


def printed_commands(out: str) -> dict[str, list[str]]:
    """Each step's title and the command printed under it, split as a shell would."""
    lines = out.splitlines()
    return {line[3:]: shlex.split(lines[number + 1]) for number, line in enumerate(lines) if line.startswith("== ")}


def test_quickstart_trains_tests_and_scores_printing_each_command(shrunk, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert main.main(["--quickstart"]) == 0  # its steps in processes of their own, as printed
    out = capfd.readouterr().out
    assert "KonIQ-10k, SROCC: " in out and "CLIVE, PLCC_logistic: " in out
    assert "The image quality score is " in out
    commands = printed_commands(out)
    assert list(commands) == [title for title, _ in STEPS]
    for (title, script), command in zip(STEPS, commands.values()):
        # what a user types from here: python, the script (found from this folder), its options
        assert command[0] == "python" and (tmp_path / command[1]).resolve() == REPO / script, title
    assert commands[STEPS[0][0]][2:4] == ["--arch", "resnet18"]
    assert (tmp_path / quickstart.CHECKPOINT).is_file()
    rows = read_scores((tmp_path / quickstart.SCORES).read_text())
    assert len(rows) == 6 and all(row["score"] and not row["error"] for row in rows)
    # a second run reuses the data sets it made (run here, its steps only printed: the first run ran them)
    infos = [tmp_path / quickstart.ROOT / name for name in ("KonIQ-10kinfo.mat", "CLIVEinfo.mat")]
    made = [info.stat().st_mtime_ns for info in infos]
    monkeypatch.setattr(quickstart, "run_script", lambda script, argv: 0)
    assert main.main(["--quickstart"]) == 0
    assert printed_commands(capfd.readouterr().out) == commands
    assert [info.stat().st_mtime_ns for info in infos] == made
