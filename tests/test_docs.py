"""The README and the manual (docs/) stay true: the files and folders they name are there, their links lead somewhere,
every page is in mkdocs.yml's nav, and their Python examples that need no download run."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import make_info
import make_synthetic

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"
PAGES = sorted(DOCS.rglob("*.md"))
TEXTS = {path: path.read_text() for path in [README, *PAGES]}
# a repository path in backticks: a file of code, docs or settings, or a folder (ending in /)
REPOSITORY_FOLDERS = {"linearityiqa", "tests", "benchmarks", "reproduce", "checkpoints", "data", "docs"}
NAMED_PATH = re.compile(r"`([\w.-]+(?:/[\w.-]+)*(?:\.(?:py|md|sh|toml|txt|yml)|/))`")
# a Markdown link or image to a file of the repository: [text](target) that is no web address and no anchor alone
LINKED_PATH = re.compile(r"\]\((?!https?://|mailto:|#)([^)\s#]+)(?:#[^)\s]*)?\)")
PYTHON_EXAMPLE = re.compile(r"^ *```python\n(.*?)^ *```", re.S | re.M)
# Examples that cannot run here, each with what it needs; every marker must still name an example
NOT_RUN = {
    "checkpoints/p1q2.pth": "the authors' released checkpoint, a download",
    "create_supervised_evaluator": "the checkpoint's k, b and a test loader",
}


def test_the_files_and_folders_the_readme_and_the_manual_name_are_there():
    """Every path the README and the manual's pages name in the repository exists: the root's files and folders, and
    what lies in them, but for the folders under data/ that the scripts make. Other names are those of a download's
    folders (1024x768/, Images/). Every relative link leads to a file, from the page that holds it."""
    named = {path for text in TEXTS.values() for path in NAMED_PATH.findall(text)}
    ours = {path for path in named if path.split("/")[0] in REPOSITORY_FOLDERS or "/" not in path.rstrip("/")}
    checked = {path for path in ours if not (path.startswith("data/") and path.endswith("/") and path != "data/")}
    checked -= {
        path
        for path in checked
        if path.endswith("/") and path.count("/") == 1 and path.rstrip("/") not in REPOSITORY_FOLDERS
    }
    missing = sorted(path for path in checked if not (REPO / path).exists())
    assert "main.py" in checked and not missing, missing  # the pattern finds paths, and each is there
    links = {(page, target) for page, text in TEXTS.items() for target in LINKED_PATH.findall(text)}
    broken = sorted(f"{page.relative_to(REPO)}: {to}" for page, to in links if not (page.parent / to).exists())
    assert links and not broken, broken


def test_every_page_of_the_manual_is_in_the_nav_and_what_it_includes_is_there():
    config = (REPO / "mkdocs.yml").read_text()
    nav = config.split("\nnav:\n")[1].split("\n\n")[0]
    listed = re.findall(r"^\s*- (?:[^:\n]+: )?(\S+\.md)\s*$", nav, re.M)
    assert sorted(listed) == sorted(page.relative_to(DOCS).as_posix() for page in PAGES)
    assert len(listed) == len(set(listed))
    # a page may include a marked section of another file (pymdownx.snippets): the README's Layout, say
    included = re.findall(r'^--8<-- "([^":]+):([\w-]+)"$', "\n".join(TEXTS[page] for page in PAGES), re.M)
    assert included and all(
        f"[start:{section}]" in (REPO / name).read_text() and f"[end:{section}]" in (REPO / name).read_text()
        for name, section in included
    ), included


def test_the_python_examples_run(tmp_path, monkeypatch):
    """The Python of the README and of every page, in order, each page's examples in one scope (a later example may
    use an earlier one's names), in a folder where the README's commands made the synthetic data (smaller), but for
    those that need what a CPU without downloads lacks (NOT_RUN)."""
    monkeypatch.chdir(tmp_path)
    assert make_synthetic.main(["--out", "data/synthetic", "--count", "24", "--width", "64", "--height", "48"]) == 0
    sets = "data/synthetic/koniq10k/koniq10k_distributions_sets.csv"
    assert make_info.main(["koniq", "--csv", sets, "--out", "data/synthetic/KonIQ-10kinfo.mat"]) == 0
    ran, left = [], Counter()
    for page, text in TEXTS.items():
        scope = {"__name__": "__example__"}
        for number, example in enumerate(PYTHON_EXAMPLE.findall(text), 1):
            needs = [marker for marker in NOT_RUN if marker in example]
            left.update(needs)
            if needs:
                continue
            where = f"{page.relative_to(REPO)}, Python example {number}"
            small = example.replace("batch_size=8", "batch_size=2, num_workers=0")  # the data-loading example's
            exec(compile(small, where, "exec"), scope)
            ran.append(where)
            if "get_data_loaders" in example:  # "Point the loaders at it"
                assert tuple(scope["images"].shape) == (2, 3, 498, 498) and scope["x"].dtype.is_floating_point
    assert set(left) == set(NOT_RUN)  # each marker still stands for an example
    assert any("data.md" in where for where in ran) and len(ran) >= 3, ran
