"""The info-file format of the paper's authors and the split rule."""

from __future__ import annotations

from dataclasses import replace

import h5py
import numpy as np
import pytest
from data_helpers import write_authors_info

from linearityiqa.data.dataset_registry import ALL_FOR_TESTING, KNOWN_DATASETS, DataSource, Split, get_dataset_spec
from linearityiqa.data.info_files import IQAInfo, read_info, split_sizes_from_ratios, write_info
from linearityiqa.errors import BadFileError, ConfigError, MissingFileError

NAMES = ["a.jpg", "b.jpg", "c.bmp", "d.JPG", "e.png"]
# Two orderings of the ref ids 1..5.
INDEX = np.array([[3, 5], [1, 4], [4, 3], [5, 2], [2, 1]])


@pytest.fixture
def authors_file(tmp_path):
    path = tmp_path / "Xinfo.mat"
    write_authors_info(path, NAMES, [10.0, 20.5, 30.0, 40.0, 50.0], [1.0, 2.0, 3.0, 4.0, 5.5], INDEX)
    return path


def test_reads_the_authors_layout(authors_file):
    info = read_info(authors_file)
    assert info.im_names == NAMES
    assert info.scores.tolist() == [10.0, 20.5, 30.0, 40.0, 50.0]
    assert info.stds.tolist() == [1.0, 2.0, 3.0, 4.0, 5.5]
    assert info.ref_ids.tolist() == [1, 2, 3, 4, 5]
    assert info.index.tolist() == INDEX.tolist()
    assert info.split_sizes is None


def test_reads_names_beyond_ascii(tmp_path):
    path = tmp_path / "info.mat"
    write_authors_info(path, ["ärger.jpg", "b.jpg"], [1.0, 2.0], [0.0, 0.0], np.array([[1], [2]]))
    assert read_info(path).im_names == ["ärger.jpg", "b.jpg"]


def test_written_file_has_the_authors_layout(tmp_path):
    info = IQAInfo(
        im_names=NAMES,
        scores=np.arange(5.0),
        stds=np.ones(5),
        ref_ids=np.arange(1, 6),
        index=INDEX,
        split_sizes=(3, 1, 1),
    )
    path = tmp_path / "out" / "Yinfo.mat"
    write_info(path, info)
    with h5py.File(path, "r") as file:
        # The expressions the authors' code reads the file with.
        names = [bytes(file[ref][()].tobytes()[::2]).decode() for ref in file["im_names"][0, :]]
        assert names == NAMES
        assert file["im_names"].shape == (1, 5)
        assert file["ref_ids"][0, :].tolist() == [1, 2, 3, 4, 5]
        assert file["subjective_scores"].shape == (1, 5)
        assert file["subjective_scores"].dtype == np.float64
        assert file["index"][:, 1].tolist() == [5, 4, 3, 2, 1]
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    assert path.read_bytes()[124:128] == b"\x00\x02IM"
    again = read_info(path)
    assert again.im_names == NAMES and again.split_sizes == (3, 1, 1)
    assert again.scores.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [p.name for p in path.parent.iterdir()] == ["Yinfo.mat"]


def source_of(info: IQAInfo) -> DataSource:
    return DataSource(get_dataset_spec("mine", data_info="m.mat", im_dir="imgs"), info)


def test_split_takes_the_column_of_exp_id_and_lists_file_order(authors_file):
    source = source_of(read_info(authors_file))
    # Column 0 is 3, 1, 4, 5, 2: of the 5 images, int(0.4 * 5) = 2 train ids {3, 1}, val {4}, test {5, 2}.
    split = Split(exp_id=0, train_ratio=0.4, train_and_val_ratio=0.6)
    assert source.positions("train", split).tolist() == [0, 2]
    assert source.positions("val", split).tolist() == [3]
    assert source.positions("test", split).tolist() == [1, 4]
    # Column 1 is 5, 4, 3, 2, 1: train ids {5, 4}; exp_id 3 wraps to column 1.
    assert source.positions("train", replace(split, exp_id=1)).tolist() == [3, 4]
    assert source.positions("train", replace(split, exp_id=3)).tolist() == [3, 4]
    assert source.positions("test", split, max_items=1).tolist() == [1]


def test_splits_are_disjoint_and_cover_the_set():
    rng = np.random.default_rng(0)
    info = IQAInfo(
        im_names=[f"{k}.jpg" for k in range(50)],
        scores=np.zeros(50),
        stds=np.zeros(50),
        ref_ids=np.arange(1, 51),
        index=np.stack([rng.permutation(50) + 1 for _ in range(3)], axis=1),
    )
    assert split_sizes_from_ratios(50, 0.6, 0.8) == (30, 40)
    split = Split(exp_id=2, train_ratio=0.6, train_and_val_ratio=0.8)
    parts = [source_of(info).positions(s, split) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [30, 10, 10]
    assert sorted(np.concatenate(parts).tolist()) == list(range(50))
    assert all((np.diff(p) > 0).all() for p in parts)


def test_ratios_zero_make_the_whole_set_the_test_split(authors_file):
    source = source_of(read_info(authors_file))
    assert source.positions("test", ALL_FOR_TESTING).tolist() == [0, 1, 2, 3, 4]
    assert source.positions("train", ALL_FOR_TESTING).tolist() == []


def test_koniq_official_ratios_give_the_official_counts():
    train_ratio, train_and_val_ratio = KNOWN_DATASETS["KonIQ-10k"].official_split
    assert split_sizes_from_ratios(10073, train_ratio, train_and_val_ratio) == (7058, 8058)


def test_own_split_comes_from_the_file_then_the_registry_and_ratios_override(authors_file, tmp_path):
    info = read_info(authors_file)
    koniq = DataSource(get_dataset_spec("KonIQ-10k", data_info=authors_file), info)
    # The authors' KonIQ-10k file records no sizes: int(5 * 7058 / 10073) = 3, int(5 * 8058 / 10073) = 3.
    assert koniq.split_sizes(Split()) == (3, 3)
    assert koniq.split_sizes(Split(train_ratio=0.4, train_and_val_ratio=0.6)) == (2, 3)
    recorded = IQAInfo(**{**info.__dict__, "split_sizes": (1, 2, 2)})
    assert DataSource(koniq.spec, recorded).split_sizes(Split()) == (1, 3)
    clive = DataSource(get_dataset_spec("CLIVE"), info)
    assert koniq.has_own_split and not clive.has_own_split
    with pytest.raises(ConfigError, match=r"CLIVE .* has no split of its own"):
        clive.split_sizes(Split())
    with pytest.raises(ConfigError, match="both train_ratio and train_and_val_ratio"):
        Split(train_ratio=0.5)


def test_registry_defaults_and_user_data_sets(tmp_path):
    koniq = get_dataset_spec("KonIQ-10k")
    assert (str(koniq.info_path), str(koniq.im_dir)) == ("data/KonIQ-10kinfo.mat", "KonIQ-10k")
    clive = get_dataset_spec("CLIVE", im_dir=tmp_path)
    assert (str(clive.info_path), clive.im_dir, clive.square_size) == ("data/CLIVEinfo.mat", tmp_path, 500)
    mine = get_dataset_spec("mine", data_info="m.mat", im_dir="imgs")
    assert (mine.official_split, mine.square_size) == (None, None)
    with pytest.raises(ConfigError, match=r"'mine' is not one of KonIQ-10k, CLIVE: .* pass both"):
        get_dataset_spec("mine", data_info="m.mat")


def test_bad_ratios_and_status(authors_file):
    with pytest.raises(ConfigError, match=r"train_ratio=0.9, train_and_val_ratio=0.8"):
        split_sizes_from_ratios(10, 0.9, 0.8)
    with pytest.raises(ConfigError, match="status 'training' is not one of train, val, test"):
        source_of(read_info(authors_file)).positions("training", ALL_FOR_TESTING)


@pytest.mark.reliability
def test_missing_info_file_says_how_to_build_it(tmp_path):
    with pytest.raises(MissingFileError, match=r"info file .*nothere.mat not found: build it with make_info.py"):
        read_info(tmp_path / "nothere.mat")


@pytest.mark.reliability
def test_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "v5.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(BadFileError, match=r"v5.mat is not an HDF5 \(MATLAB v7.3\) file .*-v7.3"):
        read_info(path)


@pytest.mark.reliability
def test_a_missing_dataset(tmp_path):
    path = tmp_path / "info.mat"
    with h5py.File(path, "w") as file:
        file["subjective_scores"] = np.zeros((1, 2))
    with pytest.raises(BadFileError, match=r"lacks the dataset.* im_names, subjective_scoresSTD, ref_ids, index"):
        read_info(path)


@pytest.mark.parametrize(
    "scores, stds, names, index, message",
    [
        (
            [1.0, np.nan, 3.0],
            [0, 0, 0],
            ["a", "b", "c"],
            [[1], [2], [3]],
            r"subjective_scores entry 2 \(b\) is nan, not a finite number",
        ),
        (
            [1.0, 2.0, 3.0],
            [0, np.inf, 0],
            ["a", "b", "c"],
            [[1], [2], [3]],
            r"subjective_scoresSTD entry 2 \(b\) is inf",
        ),
        (
            [1.0, 2.0, 3.0],
            [0, 0, 0],
            ["a", "b", "a"],
            [[1], [2], [3]],
            "im_names entries 1 and 3 both name image 'a'; rebuild",
        ),
        (
            [1.0, 2.0, 3.0],
            [0, 0, 0],
            ["a", "b", "sub//../a"],
            [[1], [2], [3]],
            "im_names entry 3: image name 'sub//../a' is not a path inside the image folder",
        ),
        (
            [1.0, 2.0, 3.0],
            [0, 0, 0],
            ["x/a", "b", "./x//a"],
            [[1], [2], [3]],
            r"entries 1 and 3 both name image 'x/a' \(written 'x/a' and './x//a'\); rebuild it with make_info.py",
        ),
        (
            [1.0, 2.0, 3.0],
            [0, 0, 0],
            ["a", "b\nc", "c"],
            [[1], [2], [3]],
            r"entry 2: image name 'b\\nc' holds a control",
        ),
        (
            [1.0, 2.0, 3.0],
            [0, 0, 0],
            ["a", "b", "c"],
            [[1, 1], [2, 2], [3, 2]],
            "index column 2 is not an ordering of the 3 ref_ids",
        ),
        ([1.0, 2.0, 3.0], [0, 0, 0], ["a", "b", "c"], [[1], [2]], r"index has shape \(2, 1\), expected \(3, M\)"),
        (
            [1.0, 2.0, 3.0],
            [0, 0, 0],
            ["a", "../../etc/passwd", "c"],
            [[1], [2], [3]],
            "entry 2: image name '../../etc/passwd' is not a path inside the image folder",
        ),
        (
            [1.0, 2.0, 3.0],
            [0, 0, 0],
            ["a", "b", "/etc/passwd"],
            [[1], [2], [3]],
            "entry 3: image name '/etc/passwd' is not a path inside the image folder",
        ),
        (
            [1.0, 2.0, 3.0],
            [0, 0, 0],
            ["a", "sub/../../x.jpg", "c"],
            [[1], [2], [3]],
            "entry 2: image name 'sub/../../x.jpg'",
        ),
    ],
)
@pytest.mark.reliability
def test_content_errors_name_the_entry(tmp_path, scores, stds, names, index, message):
    path = tmp_path / "info.mat"
    write_authors_info(path, names, scores, stds, np.array(index))
    with pytest.raises(BadFileError, match=message):
        read_info(path)


@pytest.mark.reliability
def test_a_length_mismatch(tmp_path):
    path = tmp_path / "info.mat"
    write_authors_info(path, ["a", "b"], [1.0, 2.0], [0.0, 0.0], np.array([[1], [2]]))
    with h5py.File(path, "r+") as file:
        del file["subjective_scores"]
        file["subjective_scores"] = np.zeros((1, 3))
    with pytest.raises(BadFileError, match="subjective_scores has 3 entries but im_names has 2"):
        read_info(path)
