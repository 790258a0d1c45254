"""Files are data to check, not to trust: an info file in any layout but the authors' is one
BadFileError line that names the file and the dataset, and a damaged image cache is rebuilt
with a notice, never read as pixels."""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from data_helpers import sha256, write_authors_info

import main
import test_dataset
from linearityiqa.data import image_store
from linearityiqa.data.decoding import ImageSizing, decode_image
from linearityiqa.data.image_store import ImageLoading, load_images
from linearityiqa.data.info_files import read_info
from linearityiqa.errors import BadFileError

pytestmark = pytest.mark.reliability

NAMES = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
REBUILD = "; rebuild it with make_info.py"


def write_good_info(path: Path) -> Path:
    """An info file of four images in the authors' layout, written independently of info_files.py."""
    index = np.array([[1, 4], [2, 3], [3, 2], [4, 1]])
    write_authors_info(path, NAMES, [1.0, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3, 0.4], index)
    return path


def replace(file: h5py.File, key: str, data) -> None:
    del file[key]
    file[key] = data


def point_name_at(file: h5py.File, entry: int, target) -> None:
    """Make im_names entry `entry` (1-based) a reference to `target` (an HDF5 object, or None for a null one)."""
    refs = file["im_names"][()]
    refs[0, entry - 1] = target.ref if target is not None else h5py.Reference()
    replace(file, "im_names", refs)


def name_codes(file: h5py.File, entry: int, codes) -> None:
    """Make im_names entry `entry` a char array of these uint16 codes."""
    point_name_at(file, entry, file["#refs#"].create_dataset(f"odd{entry}", data=np.array(codes, dtype="<u2")))


def dangling_name(file: h5py.File) -> None:
    target = file["#refs#"].create_dataset("gone", data=np.array([[97]], dtype="<u2"))
    point_name_at(file, 2, target)
    del file["#refs#/gone"]


def unreadable_index(file: h5py.File) -> None:
    """A compressed index whose stored chunk is overwritten with bytes gzip cannot inflate."""
    del file["index"]
    chunk = file.create_dataset("index", data=np.array([[1, 4], [2, 3], [3, 2], [4, 1]], dtype=float), compression=9)
    file.flush()
    start, size = chunk.id.get_chunk_info(0).byte_offset, chunk.id.get_chunk_info(0).size
    path = file.filename
    file.close()
    with open(path, "r+b") as raw:
        raw.seek(start)
        raw.write(b"\xff" * size)


def group_instead(file: h5py.File, key: str) -> None:
    del file[key]
    file.create_group(key)


def named_datatype(file: h5py.File, key: str) -> h5py.Datatype:
    """A named datatype at `key`, in place of what was there."""
    if key in file:
        del file[key]
    file[key] = np.dtype("<u2")
    return file[key]


def times(file: h5py.File, key: str) -> h5py.Dataset:
    """A (1, 4) dataset of HDF5 times, a type NumPy has no dtype for, in place of what was at `key`."""
    if key in file:
        del file[key]
    h5py.h5d.create(file.id, key.encode(), h5py.h5t.UNIX_D32LE, h5py.h5s.create_simple((1, 4)))
    return file[key]


def split_sizes(file: h5py.File, sizes) -> None:
    file["split_sizes"] = np.array([sizes], dtype=float)


def zero_images(file: h5py.File) -> None:
    for key in ("im_names", "subjective_scores", "subjective_scoresSTD", "ref_ids"):
        replace(file, key, file[key][()][:, :0])
    replace(file, "index", np.zeros((0, 1)))


def huge(file: h5py.File, key: str, shape: tuple[int, ...], dtype) -> None:
    """A dataset that declares a huge shape and stores nothing (HDF5 fills it on reading)."""
    del file[key]
    file.create_dataset(key, shape=shape, dtype=dtype)


# (what is wrong, how to make it so, what the message names after "<file>: ": the dataset, the entry, and
# for what the reader checks itself, the problem)
INFO_FILE_CASES = [
    # im_names stored another way than references
    ("names as byte strings", lambda f: replace(f, "im_names", np.array([[n.encode() for n in NAMES]])), "im_names"),
    ("names as strings", lambda f: replace(f, "im_names", np.array([NAMES], dtype=h5py.string_dtype())), "im_names"),
    ("names as numbers", lambda f: replace(f, "im_names", np.ones((1, 4))), "im_names"),
    ("names as region references",
     lambda f: replace(f, "im_names", np.array([[f["index"].regionref[0:1]] * 4], dtype=h5py.regionref_dtype)),
     "im_names"),
    # references to the wrong kind of object
    ("a null reference", lambda f: point_name_at(f, 2, None), "im_names entry 2"),
    ("a reference to a group", lambda f: point_name_at(f, 3, f["#refs#"]), "im_names entry 3"),
    ("a reference to a named datatype", lambda f: point_name_at(f, 1, named_datatype(f, "kind")), "im_names entry 1"),
    ("a reference to floats", lambda f: point_name_at(f, 2, f["subjective_scores"]),
     "im_names entry 2 is not a reference to a MATLAB char array"),
    ("a reference to a 2-D array of codes", lambda f: name_codes(f, 4, np.full((3, 4), 97)),
     "im_names entry 4 is not a reference to a MATLAB char array"),
    ("a reference to signed codes", lambda f: point_name_at(f, 2, f.create_dataset("s", data=np.full((5, 1), 97))),
     "im_names entry 2 is not a reference to a MATLAB char array"),
    ("a name of a million chars", lambda f: point_name_at(f, 2, f.create_dataset("h", shape=(10**6, 1), dtype="<u2")),
     "im_names entry 2 is not a reference to a MATLAB char array (one row of at most 4096 codes)"),
    ("a reference to a dataset without an array",
     lambda f: point_name_at(f, 2, f.create_dataset("no array", data=h5py.Empty("<u2"))), "im_names entry 2"),
    ("a reference to times", lambda f: point_name_at(f, 2, times(f, "when")), "im_names entry 2"),
    ("a reference that leads nowhere", dangling_name, "im_names entry 2"),
    # names that are not text
    ("an unpaired high surrogate", lambda f: name_codes(f, 2, [[0xD800], [97]]), "im_names entry 2"),
    ("an unpaired low surrogate", lambda f: name_codes(f, 2, [[97], [0xDC00]]), "im_names entry 2"),
    ("a NUL in a name", lambda f: name_codes(f, 3, [[ord(c)] for c in "c\x00.jpg"]),
     "im_names entry 3: image name 'c\\x00.jpg' holds a control character"),
    # sizes and shapes
    ("zero images", zero_images, "im_names lists no images"),
    ("a billion images declared", lambda f: huge(f, "im_names", (1, 2**30), h5py.ref_dtype),
     "im_names declares 1,073,741,824 entries, more than the 134,217,728 this project reads"),
    ("names in a 2 x 2 array", lambda f: replace(f, "im_names", f["im_names"][()].reshape(2, 2)),
     "im_names has shape (2, 2), expected one row (1, N)"),
    ("ref_ids in a 2 x 2 array", lambda f: replace(f, "ref_ids", np.array([[1.0, 2.0], [3.0, 4.0]])),
     "ref_ids has shape (2, 2), expected one row (1, N)"),
    ("scores in three dimensions", lambda f: replace(f, "subjective_scores", np.ones((1, 1, 4))),
     "subjective_scores has shape (1, 1, 4), expected one row (1, N)"),
    ("a scalar std", lambda f: replace(f, "subjective_scoresSTD", 1.0),
     "subjective_scoresSTD has shape (), expected one row (1, N)"),
    ("an index of one dimension", lambda f: replace(f, "index", np.arange(1.0, 5.0)),
     "index has shape (4,), expected (4, M) with M >= 1"),
    ("an index without columns", lambda f: replace(f, "index", np.zeros((4, 0))),
     "index has shape (4, 0), expected (4, M) with M >= 1"),
    ("an index of 2**26 columns declared", lambda f: huge(f, "index", (4, 2**26), float),
     "index declares 268,435,456 entries, more than the 134,217,728 this project reads"),
    # a key that is not a dataset
    ("im_names a group", lambda f: group_instead(f, "im_names"), "im_names"),
    ("scores a group", lambda f: group_instead(f, "subjective_scores"), "subjective_scores"),
    ("index a named datatype", lambda f: named_datatype(f, "index"), "index"),
    ("split_sizes without an array", lambda f: f.create_dataset("split_sizes", data=h5py.Empty("f8")),
     "split_sizes"),
    # text, booleans or complex numbers where numbers belong
    ("scores as strings", lambda f: replace(f, "subjective_scores", np.array([["1", "2", "3", "4"]], dtype="S1")),
     "subjective_scores holds |S1, not real numbers"),
    ("stds as complex numbers", lambda f: replace(f, "subjective_scoresSTD", np.ones((1, 4), dtype=complex)),
     "subjective_scoresSTD holds complex128, not real numbers"),
    ("scores as times", lambda f: times(f, "subjective_scores"), "subjective_scores"),
    ("names as times", lambda f: times(f, "im_names"), "im_names"),
    ("ref_ids as booleans", lambda f: replace(f, "ref_ids", np.ones((1, 4), dtype=bool)),
     "ref_ids holds bool, not real numbers"),
    ("split_sizes as strings", lambda f: f.create_dataset("split_sizes", data=np.array([[b"2", b"1", b"1"]])),
     "split_sizes holds |S1, not real numbers"),
    # numbers that are not ids or counts
    ("an index with NaN", lambda f: replace(f, "index", np.array([[1, 4], [np.nan, 3], [3, 2], [4, 1]])),
     "index row 2, column 1 is nan, not a whole number within ±2**53"),
    ("an index with a fraction", lambda f: replace(f, "index", np.array([[1, 4], [2, 3], [3, 2.5], [4, 1]])),
     "index row 3, column 2 is 2.5, not a whole number within ±2**53"),
    ("ref_ids beyond float64's whole numbers", lambda f: replace(f, "ref_ids", np.array([[1, 2, 3, 1e300]])),
     "ref_ids entry 4 is 1e+300, not a whole number within ±2**53"),
    ("split_sizes infinite", lambda f: split_sizes(f, [2, np.inf, 1]),
     "split_sizes entry 2 is inf, not a whole number within ±2**53"),
    ("split_sizes a fraction", lambda f: split_sizes(f, [2, 1.5, 0.5]),
     "split_sizes entry 2 is 1.5, not a whole number within ±2**53"),
    ("split_sizes negative", lambda f: split_sizes(f, [5, -1, 0]),
     "split_sizes [5, -1, 0] are not 3 image counts that add up to the 4 images"),
    ("split_sizes of four sets", lambda f: split_sizes(f, [1, 1, 1, 1]),
     "split_sizes [1, 1, 1, 1] are not 3 image counts that add up to the 4 images"),
    # a dataset HDF5 cannot read
    ("an index HDF5 cannot inflate", unreadable_index, "index cannot be read as the layout has it"),
]  # fmt: skip


@pytest.mark.parametrize(
    "mutate, named", [case[1:] for case in INFO_FILE_CASES], ids=[case[0] for case in INFO_FILE_CASES]
)
def test_an_info_file_off_the_layout_is_one_line_naming_file_and_dataset(tmp_path, mutate, named):
    path = write_good_info(tmp_path / "info.mat")
    file = h5py.File(path, "r+")
    mutate(file)
    file.close()
    with pytest.raises(BadFileError) as caught:
        read_info(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: {named}") and message.endswith(REBUILD)


def test_a_link_to_nothing_is_a_missing_dataset(tmp_path):
    path = write_good_info(tmp_path / "info.mat")
    with h5py.File(path, "r+") as file:
        del file["subjective_scores"]
        file["subjective_scores"] = h5py.SoftLink("/nowhere")
    with pytest.raises(BadFileError) as caught:
        read_info(path)
    expected = f"{path} lacks the dataset(s) subjective_scores of an info file: rebuild it with make_info.py"
    assert str(caught.value) == expected


def test_the_good_file_of_these_cases_reads(tmp_path):
    path = write_good_info(tmp_path / "info.mat")
    with h5py.File(path, "r+") as file:
        split_sizes(file, [2, 1, 1])
    info = read_info(path)
    assert info.im_names == NAMES and info.split_sizes == (2, 1, 1) and info.index.dtype == np.int64


def script_argv(script: str, koniq: list[str], info: Path, checkpoint: Path) -> list[str]:
    options = [*koniq[koniq.index("--im_dir") : koniq.index("--im_dir") + 2], "--data_info", str(info)]
    if script == "main.py":
        return ["--arch", "resnet18", "--pretrained", "none", "-e", "1", "--num_workers", "0", *options]
    return ["--dataset", "KonIQ-10k", "--trained_model_file", str(checkpoint), "--num_workers", "0", *options]


@pytest.mark.parametrize("script", ["main.py", "test_dataset.py"])
@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda f: point_name_at(f, 3, f["#refs#"]), "im_names entry 3 is not a reference to a MATLAB char array"),
        (lambda f: f["index"].__setitem__((1, 0), np.nan), "index row 2, column 1 is nan"),
    ],
    ids=["reference to a group", "index with NaN"],
)
def test_a_script_given_a_malformed_info_file_says_so_in_one_line(
    script, mutate, expected, koniq, resnet18_checkpoint, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    info = tmp_path / "KonIQ-10kinfo.mat"
    info.write_bytes(Path(koniq[koniq.index("--data_info") + 1]).read_bytes())
    with h5py.File(info, "r+") as file:
        mutate(file)
    before = sha256(info)
    run = main.main if script == "main.py" else test_dataset.main
    assert run(script_argv(script, koniq, info, resnet18_checkpoint)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"{script}: error: {info}: {expected}") and err.endswith(f"{REBUILD}\n")
    assert sha256(info) == before


# The image cache


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# Each damage says whether the cache would give wrong pixels (and so must be rebuilt) or still reads right.
def cut_in_half(npy: Path, layout: Path) -> bool:
    whole = npy.read_bytes()
    npy.write_bytes(whole[: len(whole) // 2])
    return True


def one_byte_more(npy: Path, layout: Path) -> bool:
    npy.write_bytes(npy.read_bytes() + b"\x00")
    return False


def garbage(npy: Path, layout: Path) -> bool:
    npy.write_bytes(b"GIF89a, not a buffer of pixels" * 100)
    return True


def cut_in_its_header(npy: Path, layout: Path) -> bool:
    npy.write_bytes(npy.read_bytes()[:40])
    return True


def floats_in_its_place(npy: Path, layout: Path) -> bool:
    # As many elements as the pixels, so that only the header's dtype gives it away.
    npy.write_bytes(npy_bytes(np.zeros((200 + 48 + 200) * 3, dtype=np.float32)))
    return True


def layout_cut_short(npy: Path, layout: Path) -> bool:
    layout.write_bytes(layout.read_bytes()[:25])
    return True


def layout_not_utf8(npy: Path, layout: Path) -> bool:
    layout.write_bytes(b"\xff\xfe\x00garbage")
    return True


def layout_a_list(npy: Path, layout: Path) -> bool:
    layout.write_text("[1, 2, 3]")
    return True


def layout_of_other_images(npy: Path, layout: Path) -> bool:
    content = json.loads(layout.read_text())
    layout.write_text(json.dumps({**content, "names": content["names"][::-1]}))
    return True


def layout_with_text_sizes(npy: Path, layout: Path) -> bool:
    content = json.loads(layout.read_text())
    content["shapes"][1] = ["six", 8, 3]
    layout.write_text(json.dumps(content))
    return True


def layout_disagreeing_with_the_buffer(npy: Path, layout: Path) -> bool:
    content = json.loads(layout.read_text())
    content["shapes"][1] = [6, 9, 3]
    layout.write_text(json.dumps(content))
    return True


def layout_of_one_channel(npy: Path, layout: Path) -> bool:
    content = json.loads(layout.read_text())
    content["shapes"] = [[10, 60, 1], [6, 8, 3], [10, 20, 3]]  # as many pixels, taken as gray
    layout.write_text(json.dumps(content))
    return True


@pytest.mark.parametrize(
    "damage",
    [
        cut_in_half,
        one_byte_more,
        garbage,
        cut_in_its_header,
        floats_in_its_place,
        layout_cut_short,
        layout_not_utf8,
        layout_a_list,
        layout_of_other_images,
        layout_with_text_sizes,
        layout_disagreeing_with_the_buffer,
        layout_of_one_channel,
    ],
)
def test_a_damaged_cache_is_rebuilt_with_a_notice(damage, images, tmp_path, monkeypatch, capsys):
    folder, names = images
    cache = tmp_path / "cache"

    def load(verbose: bool):
        return load_images(folder, names, label="t", loading=ImageLoading(cache_dir=cache, verbose=verbose))

    npy = load(verbose=False).cache_path
    layout = npy.with_suffix(".json")
    must_rebuild = damage(npy, layout)
    store = load(verbose=True)
    notice = capsys.readouterr().out.splitlines()[0]
    assert notice.startswith(f"t: the image cache at {npy} was damaged (") == must_rebuild
    assert notice.endswith(") and is rebuilt") == must_rebuild
    for row, name in enumerate(names):
        assert (store[row] == decode_image(folder / name, ImageSizing())).all()
    # Whole again, with nothing beside it: the next load maps it, without a notice and without decoding.
    assert sorted(path.name for path in npy.parent.iterdir()) == [layout.name, npy.name]
    assert json.loads(layout.read_text()) == {"names": names, "shapes": [[10, 20, 3], [6, 8, 3], [10, 20, 3]]}
    monkeypatch.setattr(image_store, "decode_image", lambda *args, **kwargs: pytest.fail("decoded again"))
    again = load(verbose=True)
    (summary,) = capsys.readouterr().out.splitlines()
    assert summary.startswith(f"t: 3 images, 0.0 MiB as uint8, cached in {npy} (mapped from cache in ")
    assert np.array_equal(np.load(npy), store.pixels) and np.array_equal(again.pixels, store.pixels)
