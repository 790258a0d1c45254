"""Building info files from the official KonIQ-10k and CLIVE files and from a user's CSV."""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from data_helpers import KONIQ_REFERENCE_CSV, sha256, write_csv

import make_info
from linearityiqa.data.dataset_registry import CLIVE_TRAINING_EXAMPLES, DataSource, Split, get_dataset_spec
from linearityiqa.data.info_builders import clive_info_from_release, koniq_info_from_csv, user_info_from_csv
from linearityiqa.data.info_files import read_info, write_info
from linearityiqa.data.synthetic import write_clive_layout, write_koniq_layout
from linearityiqa.errors import BadFileError, ConfigError, MissingFileError


@pytest.fixture(scope="module")
def koniq_download(tmp_path_factory):
    folder = tmp_path_factory.mktemp("koniq10k")
    write_koniq_layout(folder, count=30, width=32, height=24, seed=1)
    return folder


@pytest.fixture(scope="module")
def clive_release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ChallengeDB_release")
    write_clive_layout(folder, count=12, width=32, height=32, seed=2)
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _split_names(info, spec, status):
    """The names of a split of the data set's own split."""
    return {info.im_names[p] for p in DataSource(spec, info).positions(status, Split())}


def test_koniq_from_the_sets_file_keeps_order_scores_and_split(koniq_download):
    rows = _rows(koniq_download / "koniq10k_distributions_sets.csv")
    info = koniq_info_from_csv(koniq_download / "koniq10k_distributions_sets.csv")
    assert info.im_names == [row["image_name"] for row in rows]
    assert info.scores.tolist() == [float(row["MOS"]) for row in rows]
    assert info.stds.tolist() == [float(row["SD"]) for row in rows]
    counts = [sum(row["set"] == s for row in rows) for s in ("training", "validation", "test")]
    assert info.split_sizes == tuple(counts)
    spec = get_dataset_spec("KonIQ-10k")
    for status, set_name in (("train", "training"), ("val", "validation"), ("test", "test")):
        assert _split_names(info, spec, status) == {row["image_name"] for row in rows if row["set"] == set_name}


def test_koniq_from_the_scores_file_uses_mos_zscore_and_the_sets_file(koniq_download):
    scores_rows = _rows(koniq_download / "koniq10k_scores_and_distributions.csv")
    info = koniq_info_from_csv(
        koniq_download / "koniq10k_scores_and_distributions.csv",
        sets_csv=koniq_download / "koniq10k_distributions_sets.csv",
    )
    assert info.scores.tolist() == [float(row["MOS_zscore"]) for row in scores_rows]
    from_sets = koniq_info_from_csv(koniq_download / "koniq10k_distributions_sets.csv")
    assert info.split_sizes == from_sets.split_sizes
    assert info.index.tolist() == from_sets.index.tolist()


@pytest.mark.skipif(not KONIQ_REFERENCE_CSV.is_file(), reason="the real KonIQ-10k sets file is not on this machine")
def test_koniq_from_the_real_sets_file(tmp_path):
    info = koniq_info_from_csv(KONIQ_REFERENCE_CSV)
    assert len(info) == 10073 and len(set(info.im_names)) == 10073
    assert info.split_sizes == (7058, 1000, 2015)
    write_info(tmp_path / "KonIQ-10kinfo.mat", info)
    info = read_info(tmp_path / "KonIQ-10kinfo.mat")
    rows = _rows(KONIQ_REFERENCE_CSV)
    # The official ratios of the registry alone (as for the authors' file) give the same split.
    authors_like = info.__class__(**{**info.__dict__, "split_sizes": None})
    spec = get_dataset_spec("KonIQ-10k")
    for status, set_name in (("train", "training"), ("val", "validation"), ("test", "test")):
        assert _split_names(authors_like, spec, status) == {r["image_name"] for r in rows if r["set"] == set_name}


def test_clive_drops_the_training_examples_and_draws_seeded_orderings(clive_release):
    mos = scipy.io.loadmat(clive_release / "Data" / "AllMOS_release.mat")["AllMOS_release"].ravel()
    info = clive_info_from_release(clive_release, num_orderings=40, seed=5)
    assert info.im_names[:6] == ["1.bmp", "2.bmp", "3.bmp", "4.bmp", "5.JPG", "6.bmp"]
    assert len(info) == 12 and not any(name.startswith("t") for name in info.im_names)
    assert info.scores.tolist() == mos[7:].tolist()
    assert info.index.shape == (12, 40)
    assert (np.sort(info.index, axis=0) == np.arange(1, 13)[:, None]).all()
    assert len({tuple(column) for column in info.index.T}) > 1
    assert info.index.tolist() == clive_info_from_release(clive_release, num_orderings=40, seed=5).index.tolist()
    assert info.index.tolist() != clive_info_from_release(clive_release, num_orderings=40, seed=6).index.tolist()
    assert info.split_sizes is None
    assert clive_info_from_release(clive_release).index.shape == (12, 1000)


def test_user_csv_with_and_without_optional_columns(tmp_path):
    with_set = write_csv(
        tmp_path / "a.csv",
        ["Image_Name", "MOS", "Std", "Set"],
        [
            ["x.jpg", 3.5, 0.5, "test"],
            ["y.jpg", 1, 0.1, "train"],
            ["z.jpg", 2, 0.2, "training"],
            ["w.jpg", 4, 0.3, "val"],
        ],
    )
    info = user_info_from_csv(with_set)
    assert info.im_names == ["x.jpg", "y.jpg", "z.jpg", "w.jpg"]
    assert info.scores.tolist() == [3.5, 1.0, 2.0, 4.0] and info.stds.tolist() == [0.5, 0.1, 0.2, 0.3]
    assert info.split_sizes == (2, 1, 1)
    assert info.index[:, 0].tolist() == [2, 3, 4, 1]
    plain = write_csv(tmp_path / "b.csv", ["image_name", "mos"], [[f"{k}.png", k] for k in range(6)])
    info = user_info_from_csv(plain, num_orderings=3, seed=0)
    assert info.stds.tolist() == [0.0] * 6
    assert info.split_sizes is None and info.index.shape == (6, 3)


@pytest.mark.parametrize(
    "header, rows, message",
    [
        (["image_name", "score"], [["a.jpg", 1]], r"has no column mos \(its columns: image_name, score\)"),
        (["image_name", "mos"], [["a.jpg", 1], ["b.jpg", "high"]], r"line 3: mos 'high' is not a finite number"),
        (["image_name", "mos"], [["a.jpg", "nan"]], r"line 2: mos 'nan' is not a finite number"),
        (["image_name", "mos", "std"], [["a.jpg", 1, "inf"]], r"line 2: std 'inf' is not a finite number"),
        (
            ["image_name", "mos"],
            [["a.jpg", 1], ["b.jpg", 2], ["a.jpg", 3]],
            "lines 2 and 4 both name image 'a.jpg'; fix",
        ),
        (["image_name", "mos"], [["", 1]], "line 2: image name '' is empty; fix the file"),
        (
            ["image_name", "mos"],
            [["./a.jpg", 1], ["b.jpg", 2], ["a.jpg", 3]],
            r"lines 2 and 4 both name image 'a.jpg' \(written './a.jpg' and 'a.jpg'\); fix the file",
        ),
        (["image_name", "mos"], [["a.jpg", 1], ["./", 2]], "line 3: image name './' names the image folder itself"),
        (["image_name", "mos", "set"], [["a.jpg", 1, "tarin"]], "line 2: set 'tarin' is not one of training"),
        (["image_name", "mos"], [], "has no data rows"),
        (
            ["image_name", "mos"],
            [["a.jpg", 1], ["../../etc/passwd", 2]],
            r"line 3: image name '../../etc/passwd' is not a path inside the image folder \(relative to it, without",
        ),
        (["image_name", "mos"], [["/etc/passwd", 1]], "line 2: image name '/etc/passwd' is not a path inside"),
        (["image_name;mos"], [["a.jpg;1"]], r"has no column image_name, mos \(its columns: image_name;mos\)"),
    ],
)
@pytest.mark.reliability
def test_user_csv_errors_name_file_and_line(tmp_path, header, rows, message):
    path = write_csv(tmp_path / "mine.csv", header, rows)
    with pytest.raises(BadFileError, match=message) as caught:
        user_info_from_csv(path)
    assert str(path) in str(caught.value)


def test_koniq_scores_file_without_sets_says_what_to_pass(koniq_download):
    with pytest.raises(BadFileError, match=r"has no column set .*pass the sets file"):
        koniq_info_from_csv(koniq_download / "koniq10k_scores_and_distributions.csv")


def test_koniq_split_count_that_does_not_add_up(koniq_download, tmp_path):
    rows = _rows(koniq_download / "koniq10k_distributions_sets.csv")
    short = write_csv(tmp_path / "short.csv", ["image_name", "set"], [[r["image_name"], r["set"]] for r in rows[1:]])
    with pytest.raises(BadFileError, match=f"gives no set for 1 image.*e.g. {rows[0]['image_name']}"):
        koniq_info_from_csv(koniq_download / "koniq10k_scores_and_distributions.csv", sets_csv=short)
    extra = write_csv(
        tmp_path / "extra.csv",
        ["image_name", "set"],
        [[r["image_name"], r["set"]] for r in rows] + [["stranger.jpg", "test"]],
    )
    with pytest.raises(BadFileError, match=f"line {len(rows) + 2} lists image stranger.jpg, which .* does not score"):
        koniq_info_from_csv(koniq_download / "koniq10k_scores_and_distributions.csv", sets_csv=extra)


def _copy_release(source: Path, target: Path) -> Path:
    (target / "Data").mkdir(parents=True)
    for name in ("AllImages_release", "AllMOS_release", "AllStdDev_release"):
        (target / "Data" / f"{name}.mat").write_bytes((source / "Data" / f"{name}.mat").read_bytes())
    return target


def test_clive_errors(clive_release, tmp_path):
    with pytest.raises(MissingFileError, match=r"AllImages_release.mat not found: pass the CLIVE release folder"):
        clive_info_from_release(tmp_path / "nowhere")
    release = _copy_release(clive_release, tmp_path / "nan")
    mos = np.arange(19, dtype=float).reshape(1, -1)
    mos[0, 9] = np.nan
    scipy.io.savemat(release / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos})
    with pytest.raises(BadFileError, match=r"AllMOS_release.mat entry 10 \(3.bmp\) is nan"):
        clive_info_from_release(release)
    scipy.io.savemat(release / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.zeros((1, 18))})
    with pytest.raises(BadFileError, match="AllImages_release has 19 entries, AllMOS_release 18"):
        clive_info_from_release(release)
    scipy.io.savemat(release / "Data" / "AllMOS_release.mat", {"Other": np.zeros((1, 19))})
    with pytest.raises(BadFileError, match="holds no variable AllMOS_release"):
        clive_info_from_release(release)
    with pytest.raises(ConfigError, match=r"num_orderings \(make_info.py's --orderings\) is 0"):
        clive_info_from_release(clive_release, num_orderings=0)


def test_make_info_writes_each_kind(koniq_download, clive_release, tmp_path, capsys):
    make_info.main(
        ["koniq", "--csv", str(koniq_download / "koniq10k_distributions_sets.csv"), "--out", str(tmp_path / "k.mat")]
    )
    assert read_info(tmp_path / "k.mat").split_sizes is not None
    make_info.main(["clive", "--release", str(clive_release), "--out", str(tmp_path / "c.mat"), "--orderings", "7"])
    assert read_info(tmp_path / "c.mat").index.shape == (12, 7)
    mine = write_csv(tmp_path / "mine.csv", ["image_name", "mos"], [["a.jpg", 1], ["b.jpg", 2]])
    make_info.main(["csv", "--csv", str(mine), "--out", str(tmp_path / "m.mat")])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("k.mat: 30 images; split 21 / 3 / 6 (train / val / test)")
    assert printed[1].endswith("c.mat: 12 images; 7 random orderings")
    assert printed[2].endswith("m.mat: 2 images; 1,000 random orderings")


def test_make_info_reports_a_bad_file_in_one_line(tmp_path, capsys):
    # the script as a program, with its exit status, is test_reliability_outputs' (a file size limit)
    bad = write_csv(tmp_path / "bad.csv", ["image_name", "mos"], [["a.jpg", "x"]])
    assert make_info.main(["csv", "--csv", str(bad), "--out", str(tmp_path / "o.mat")]) == 1
    assert capsys.readouterr().err == f"make_info.py: error: {bad} line 2: mos 'x' is not a finite number\n"
    assert not (tmp_path / "o.mat").exists()


def test_names_are_kept_in_normal_form_by_every_builder_and_read_back_so(koniq_download, tmp_path):
    mine = write_csv(tmp_path / "mine.csv", ["image_name", "mos"], [["./x/./a.jpg", 1], ["sub//b.jpg", 2]])
    info = user_info_from_csv(mine, num_orderings=2)
    assert info.im_names == ["x/a.jpg", "sub/b.jpg"]
    write_info(tmp_path / "mine.mat", info)
    assert read_info(tmp_path / "mine.mat").im_names == info.im_names
    sets = koniq_download / "koniq10k_distributions_sets.csv"
    respelled = [["./" + row["image_name"], row["set"]] for row in _rows(sets)]
    scores = koniq_download / "koniq10k_scores_and_distributions.csv"
    official = koniq_info_from_csv(scores, sets_csv=sets)
    spelled = koniq_info_from_csv(scores, sets_csv=write_csv(tmp_path / "sets.csv", ["image_name", "set"], respelled))
    assert spelled.im_names == official.im_names and spelled.split_sizes == official.split_sizes
    assert spelled.index.tolist() == official.index.tolist()


@pytest.mark.reliability
@pytest.mark.parametrize("name, problem", [
    ("../../etc/passwd", "is not a path inside the image folder (relative to it, without '..' or a leading /)"),
    ("./1.bmp", "and 9 both name image '1.bmp' (written '1.bmp' and './1.bmp')"),
])  # fmt: skip
def test_make_info_clive_refuses_a_name_its_reader_would_in_one_line(clive_release, name, problem, tmp_path, capsys):
    release = _copy_release(clive_release, tmp_path / "release")
    images = release / "Data" / "AllImages_release.mat"
    cells = scipy.io.loadmat(images)["AllImages_release"]
    first_kept = cells[CLIVE_TRAINING_EXAMPLES, 0][0]
    cells[CLIVE_TRAINING_EXAMPLES + 1, 0] = np.array([name])
    scipy.io.savemat(images, {"AllImages_release": cells})
    out = tmp_path / "CLIVEinfo.mat"
    write_info(out, clive_info_from_release(clive_release, num_orderings=2))  # an earlier file, to keep
    before = {path: sha256(path) for path in [out, *sorted((release / "Data").iterdir())]}
    assert make_info.main(["clive", "--release", str(release), "--out", str(out)]) == 1
    where = f"make_info.py: error: {images} entr"
    expected = f"{where}y 9: image name {name!r} {problem}" if ".." in name else f"{where}ies 8 {problem}"
    assert first_kept == "1.bmp" and capsys.readouterr().err == f"{expected}; use the files of the release\n"
    assert {path: sha256(path) for path in before} == before and sorted(tmp_path.iterdir()) == [out, release]


@pytest.mark.reliability
def test_write_info_refuses_names_that_read_info_would(tmp_path):
    info = user_info_from_csv(write_csv(tmp_path / "mine.csv", ["image_name", "mos"], [["a.jpg", 1], ["b.jpg", 2]]))
    for names, problem in ((["a.jpg", "../b.jpg"], "entry 2: image name '../b.jpg' is not a path inside"),
                           (["a.jpg", "./a.jpg"], "entries 1 and 2 both name image 'a.jpg'")):  # fmt: skip
        with pytest.raises(
            BadFileError, match=re.escape(f"info file {tmp_path / 'i.mat'} to write: im_names {problem}")
        ):
            write_info(tmp_path / "i.mat", replace(info, im_names=names))
    assert not (tmp_path / "i.mat").exists()


@pytest.mark.reliability
def test_make_info_refuses_what_the_reader_would_take_as_too_large_in_one_line(tmp_path, capsys):
    long_name = "a" * 5000 + ".jpg"
    rows = [["a.jpg", 1], ["b.jpg", 2], [long_name, 3]]
    mine = write_csv(tmp_path / "mine.csv", ["image_name", "mos"], rows)
    assert make_info.main(["csv", "--csv", str(mine), "--out", str(tmp_path / "i.mat")]) == 1
    assert capsys.readouterr().err == (
        f"make_info.py: error: {mine} line 4: image name '{'a' * 60}'...'{'a' * 26}.jpg' (5,004 characters) is longer "
        f"than the 4,096 UTF-16 codes an info file holds; fix the file\n"
    )
    mine = write_csv(tmp_path / "mine.csv", ["image_name", "mos"], rows[:2])
    orderings = 2**26 + 1  # twice that is one more index entry than the reader takes
    assert (
        make_info.main(["csv", "--csv", str(mine), "--out", str(tmp_path / "i.mat"), "--orderings", f"{orderings}"])
        == 1
    )
    assert capsys.readouterr().err == (
        "make_info.py: error: num_orderings (make_info.py's --orderings): 2 images x 67,108,865 orderings are more "
        "than the 134,217,728 index entries an info file may hold; keep to 67,108,864 orderings or fewer\n"
    )
    assert sorted(tmp_path.iterdir()) == [mine]


def _save_variable(path: Path, value) -> None:
    scipy.io.savemat(path, {path.stem: value})


# (the release file, how it goes wrong, what the message says of it)
RELEASE_MISTAKES = [
    ("AllStdDev_release", lambda path: path.write_bytes(b""), "cannot read"),
    ("AllMOS_release", lambda path: path.write_text("hello\n"), "cannot read"),
    ("AllMOS_release", lambda path: _save_variable(path, np.array([["a"] * 27], dtype=object)), "is not what"),
    ("AllImages_release", lambda path: _save_variable(path, np.arange(27.0)), "is not what"),
    ("AllMOS_release", lambda path: _save_variable(path.with_name("other.mat"), 1) or path.unlink(), "not found"),
]


@pytest.mark.parametrize("name, spoil, words", RELEASE_MISTAKES)
def test_a_release_file_of_the_wrong_content_is_one_line_naming_it(name, spoil, words, clive_release, tmp_path, capsys):
    release = tmp_path / "release"
    shutil.copytree(clive_release, release)
    path = release / "Data" / f"{name}.mat"
    spoil(path)
    assert make_info.main(["clive", "--release", str(release), "--out", str(tmp_path / "c.mat")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("make_info.py: error: ") and str(path) in err and words in err
    assert not (tmp_path / "c.mat").exists()
