"""The method stays readable: from main.py's top to the paper's loss a reader follows few calls in
few files, and the paper's modules stand on their own, free of the machinery that guards a run."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from benchmarks.reading_path import REPOSITORY, frames_to_loss, small_run

PAPER_MODULES = ("IQAdataset.py", "IQAloss.py", "IQAmodel.py", "IQAperformance.py")
MACHINERY = ("linearityiqa.training", "linearityiqa.records", "linearityiqa.cli")


def test_the_loss_is_at_most_7_project_frames_in_3_files_below_main_py(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = frames_to_loss(small_run(tmp_path))
    assert frames[0] == ("main.py", "<module>") and frames[-1] == ("IQAloss.py", "norm_loss_with_normalization")
    assert ("main.py", "train_step") in frames  # the step a reader looks for is main.py's own
    assert len(frames) <= 7 and len({path for path, _ in frames}) <= 3, frames


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_papers_modules_import_nothing_of_the_training_records_or_command_line_machinery():
    for name in PAPER_MODULES:
        machinery = {module for module in imported_modules(REPOSITORY / name) if module.startswith(MACHINERY)}
        assert not machinery, (name, machinery)


def test_no_library_module_imports_an_entry_script():
    scripts = {path.stem for path in REPOSITORY.glob("*.py")} - {Path(name).stem for name in PAPER_MODULES}
    for folder, _, files in os.walk(REPOSITORY / "linearityiqa"):
        for file in files:
            if file.endswith(".py"):
                path = Path(folder) / file
                assert not imported_modules(path) & scripts, path
