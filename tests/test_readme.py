"""The README's Reliability table counts what the suite tries: each row's number is the count
of tests marked `reliability` in the files the row names."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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
