"""The README stays true: its Reliability table counts what the suite tries (each row's number
is the count of tests marked `reliability` in the files the row names), the files and folders
it names are there, and its data-loading example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import make_info
import make_synthetic

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
# a repository path in backticks: a file of code, docs or settings, or a folder (ending in /)
REPOSITORY_FOLDERS = {"linearityiqa", "tests", "benchmarks", "reproduce", "checkpoints", "data"}
NAMED_PATH = re.compile(r"`([\w.-]+(?:/[\w.-]+)*(?:\.(?:py|md|sh|toml)|/))`")
ROW = re.compile(r"^\| .+ \| (\d+) \| ((?:`tests/\w+\.py`(?:, )?)+) \|$")


def reliability_table():
    """{files named by a row: its number}, from the section's table."""
    section = REPO.joinpath("README.md").read_text().split("\n## Reliability\n")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert lines[0] == "| what is tried | tests | where |"
    rows = {}
    for line in lines[2:]:
        match = ROW.match(line)
        assert match, f"a row that names no count or no test file: {line[:80]}"
        rows[tuple(re.findall(r"`(tests/\w+\.py)`", match.group(2)))] = int(match.group(1))
    return rows


def test_the_reliability_counts_in_the_readme_are_those_of_the_suite():
    table = reliability_table()
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-m",
            "reliability",
            "-p",
            "no:cacheprovider",
            "tests",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    per_file = Counter(line.split("::")[0] for line in listed.stdout.splitlines() if "::" in line)
    assert sum(per_file.values()) > 0, listed.stdout + listed.stderr
    assert {files: sum(per_file[name] for name in files) for files in table} == table
    assert set(per_file) == {name for files in table for name in files}  # no marked file left out of the table
    stated = re.search(r"`pytest -m reliability` runs just these (\d+) tests", REPO.joinpath("README.md").read_text())
    assert int(stated.group(1)) == sum(per_file.values())


def test_the_files_and_folders_the_readme_names_are_there():
    """Every path the README names in the repository exists: the root's files and folders, and
    what lies in them, but for the folders under data/ that the scripts make. Other names are
    those of a download's folders (1024x768/, Images/)."""
    named = set(NAMED_PATH.findall(README))
    ours = {path for path in named if path.split("/")[0] in REPOSITORY_FOLDERS or "/" not in path.rstrip("/")}
    checked = {path for path in ours if not (path.startswith("data/") and path.endswith("/") and path != "data/")}
    checked -= {
        path
        for path in checked
        if path.endswith("/") and path.count("/") == 1 and path.rstrip("/") not in REPOSITORY_FOLDERS
    }
    missing = sorted(path for path in checked if not (REPO / path).exists())
    assert len(checked) > 40 and not missing, missing


def test_the_data_loading_example_runs(tmp_path, monkeypatch):
    """The Python of "Point the loaders at it", after the README's commands that make its data (smaller)."""
    monkeypatch.chdir(tmp_path)
    assert make_synthetic.main(["--out", "data/synthetic", "--count", "24", "--width", "64", "--height", "48"]) == 0
    sets = "data/synthetic/koniq10k/koniq10k_distributions_sets.csv"
    assert make_info.main(["koniq", "--csv", sets, "--out", "data/synthetic/KonIQ-10kinfo.mat"]) == 0
    example = README.split("Point the loaders at it")[1].split("```python\n")[1].split("```")[0]
    scope = {}
    exec(compile(example.replace("batch_size=8", "batch_size=2, num_workers=0"), "README.md", "exec"), scope)
    assert tuple(scope["images"].shape) == (2, 3, 498, 498) and scope["x"].dtype.is_floating_point
