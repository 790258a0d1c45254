"""The synthetic data set: known degradations, monotone scores, and the official file layouts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from data_helpers import save_plain_images, sha256
from PIL import Image

import make_synthetic
from linearityiqa.data import synthetic
from linearityiqa.data.synthetic import (
    BLUR_RADIUS_AT_FULL,
    Degradation,
    degrade,
    jpeg_quality,
    quality_of,
    rate_on_five_point_scale,
    render_scene,
    write_clive_layout,
    write_koniq_layout,
)

KONIQ_SETS_HEADER = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "set"]
KONIQ_SCORES_HEADER = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"]


def test_quality_is_a_product_of_one_factor_per_distortion():
    assert quality_of(Degradation()) == 1.0
    assert quality_of(Degradation(blur=1.0)) == pytest.approx(0.2)
    assert quality_of(Degradation(noise=0.5)) == pytest.approx(0.65)
    assert quality_of(Degradation(blur=0.5, jpeg=0.5)) == pytest.approx(0.6 * 0.7)
    assert quality_of(Degradation(contrast=1, blur=1, noise=1, jpeg=1)) == pytest.approx(0.5 * 0.2 * 0.3 * 0.4)


@pytest.mark.parametrize("field", ["contrast", "blur", "noise", "jpeg"])
def test_quality_falls_as_each_severity_grows(field):
    others = {name: 0.2 for name in ("contrast", "blur", "noise", "jpeg") if name != field}
    qualities = [quality_of(Degradation(**others, **{field: severity})) for severity in np.linspace(0, 1, 6)]
    assert all(later < earlier for earlier, later in zip(qualities, qualities[1:]))


def test_jpeg_quality_setting():
    # Geometric from 95 to 5: below 50 the quantization step (5000 / setting) grows by equal factors too.
    assert [jpeg_quality(Degradation(jpeg=s)) for s in (0.0, 0.25, 0.5, 0.75, 1.0)] == [95, 46, 22, 10, 5]


def _gradient_energy(image: Image.Image) -> float:
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    return float(np.abs(np.diff(grey, axis=1)).mean())


@pytest.mark.parametrize("width, height", [(96, 64), (512, 384)])
def test_degradations_do_what_they_say(width, height):
    # Blur, noise and detail are on a fixed pixel scale, so small images show them as clearly as large ones.
    scene = render_scene(np.random.default_rng(0), width, height)
    clean = degrade(scene, Degradation(), np.random.default_rng(1))
    blurred = degrade(scene, Degradation(blur=1.0), np.random.default_rng(1))
    noisy = degrade(scene, Degradation(noise=1.0), np.random.default_rng(1))
    flat = degrade(scene, Degradation(contrast=1.0), np.random.default_rng(1))
    assert _gradient_energy(blurred) < 0.6 * _gradient_energy(clean)
    assert _gradient_energy(noisy) > 1.5 * _gradient_energy(clean)
    clean_std = np.asarray(clean, dtype=float).std()
    assert np.asarray(flat, dtype=float).std() == pytest.approx(0.2 * clean_std, rel=0.1)


def test_scenes_span_the_full_range():
    # So that only a contrast loss makes an image dull.
    for seed in range(5):
        pixels = np.asarray(render_scene(np.random.default_rng(seed), 96, 64))
        assert (pixels.min(), pixels.max()) == (0, 255)


def test_blur_radius_is_in_pixels():
    # 2.5 pixels at full severity, at any image size: it smooths away the 3-12 pixel textures.
    assert BLUR_RADIUS_AT_FULL == 2.5
    scene = render_scene(np.random.default_rng(2), 96, 64)
    energies = [_gradient_energy(degrade(scene, Degradation(blur=s), np.random.default_rng(1))) for s in (0, 0.5, 1)]
    assert energies[0] > energies[1] > energies[2]


def test_ratings_center_on_quality_and_grow_with_it():
    rng = np.random.default_rng(0)
    means = []
    for quality in (0.1, 0.5, 0.9):
        counts = sum(rate_on_five_point_scale(quality, rng) for _ in range(200))
        means.append(float((counts * np.arange(1, 6)).sum() / counts.sum()))
    # Symmetric noise around 1 + 4 * 0.5 = 3 keeps the mean at 3; clipping pulls the extremes inwards.
    assert means[1] == pytest.approx(3.0, abs=0.03)
    assert means[0] < means[1] < means[2]


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.reader(file))


def test_koniq_layout(tmp_path):
    sets_path = write_koniq_layout(tmp_path, count=30, width=40, height=30, seed=3)
    sets_rows, scores_rows = _rows(sets_path), _rows(tmp_path / "koniq10k_scores_and_distributions.csv")
    assert sets_rows[0] == KONIQ_SETS_HEADER and scores_rows[0] == KONIQ_SCORES_HEADER
    names = [row[0] for row in sets_rows[1:]]
    assert names == sorted(set(names)) and len(names) == 30 and all(n.endswith(".jpg") for n in names)
    assert [row[0] for row in scores_rows[1:]] == names
    assert [sum(row[-1] == s for row in sets_rows[1:]) for s in ("training", "validation", "test")] == [21, 3, 6]
    for sets_row, scores_row in zip(sets_rows[1:], scores_rows[1:]):
        counts = np.array([int(c) for c in scores_row[1:6]])
        assert int(sets_row[6]) == counts.sum() == int(scores_row[6])
        assert sum(float(share) for share in sets_row[1:6]) == pytest.approx(1.0, abs=1e-5)
        mean = float(scores_row[7])
        assert mean == pytest.approx((counts * np.arange(1, 6)).sum() / counts.sum(), abs=1e-6)
        assert float(sets_row[7]) == pytest.approx((mean - 1) * 25, abs=2e-5) == float(scores_row[9])
    with Image.open(tmp_path / "1024x768" / names[0]) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (40, 30), "RGB")


def test_same_seed_same_data_set(tmp_path):
    first = write_koniq_layout(tmp_path / "a", count=5, width=16, height=16, seed=9).read_bytes()
    assert write_koniq_layout(tmp_path / "b", count=5, width=16, height=16, seed=9).read_bytes() == first
    assert write_koniq_layout(tmp_path / "c", count=5, width=16, height=16, seed=8).read_bytes() != first


def test_clive_layout(tmp_path):
    write_clive_layout(tmp_path, count=10, width=24, height=20, seed=4)
    data = tmp_path / "Data"
    names = scipy.io.loadmat(data / "AllImages_release.mat")["AllImages_release"]
    mos = scipy.io.loadmat(data / "AllMOS_release.mat")["AllMOS_release"]
    std = scipy.io.loadmat(data / "AllStdDev_release.mat")["AllStdDev_release"]
    assert names.shape == (17, 1) and mos.shape == (1, 17) and std.shape == (1, 17)
    names = [str(cell[0][0]) for cell in names]
    assert names[:8] == ["t1.bmp", "t2.bmp", "t3.bmp", "t4.bmp", "t5.bmp", "t6.bmp", "t7.bmp", "1.bmp"]
    assert names[11:13] == ["5.JPG", "6.bmp"]
    for name in names[:7]:
        assert (tmp_path / "Images" / "trainingImages" / name).is_file()
    for name in names[7:]:
        with Image.open(tmp_path / "Images" / name) as image:
            assert image.size == (24, 20)
            assert image.format == ("JPEG" if name.endswith(".JPG") else "BMP")
    assert ((mos > 0) & (mos < 100)).all() and (std > 0).all()


def test_make_synthetic_writes_both_layouts(tmp_path, capsys):
    make_synthetic.main(["--out", str(tmp_path), "--count", "3", "--width", "16", "--height", "12"])
    assert len(list((tmp_path / "koniq10k" / "1024x768").iterdir())) == 3
    assert len(list((tmp_path / "ChallengeDB_release" / "Images").glob("*.*"))) == 3
    assert "3 images of 16x12" in capsys.readouterr().out


def test_make_synthetic_rejects_an_empty_data_set(tmp_path, capsys):
    with pytest.raises(SystemExit) as ended:
        make_synthetic.main(["--out", str(tmp_path), "--layout", "koniq", "--count", "0"])
    assert ended.value.code == 2 and "argument --count: 0 is out of range" in capsys.readouterr().err


SMALL = ["--count", "6", "--width", "8", "--height", "8"]


def contents(folder: Path) -> dict[str, str]:
    """Every file under `folder`, by its path relative to it: its SHA-256."""
    return {path.relative_to(folder).as_posix(): sha256(path) for path in folder.rglob("*") if path.is_file()}


def koniq_images_named(folder: Path) -> set[str]:
    return {f"1024x768/{row[0]}" for row in _rows(folder / "koniq10k_distributions_sets.csv")[1:]}


@pytest.mark.reliability
def test_a_smaller_run_into_the_same_folder_leaves_only_what_it_wrote(tmp_path, capsys):
    # A glob over the folder finds the images of the last run, and only those.
    assert make_synthetic.main(["--out", str(tmp_path), *SMALL]) == 0
    assert make_synthetic.main(["--out", str(tmp_path), *SMALL, "--count", "2", "--seed", "1"]) == 0
    koniq, clive = tmp_path / "koniq10k", tmp_path / "ChallengeDB_release"
    images = {path for path in contents(koniq) if path.startswith("1024x768/")}
    assert images == koniq_images_named(koniq) and len(images) == 2
    cells = scipy.io.loadmat(clive / "Data" / "AllImages_release.mat")["AllImages_release"]
    names = [str(cell[0][0]) for cell in cells]
    assert sorted(path.name for path in (clive / "Images").rglob("*.*")) == sorted(names) and len(names) == 9
    out = capsys.readouterr().out
    assert f"wrote {koniq}: 2 images of 8x8 in " in out and "removed 6 file(s) of an earlier run" in out
    assert "removed 4 file(s) of an earlier run" in out  # CLIVE's 3.bmp to 6.bmp: its names recur


@pytest.mark.reliability
@pytest.mark.parametrize("theirs", ["1024x768/1000000001.jpg", "notes.txt", "synthetic_files.txt"])
def test_a_folder_holding_files_it_did_not_write_is_refused_and_left_as_it_was(theirs, tmp_path, capsys):
    # A real KonIQ-10k download has the generator's names: only what a run recorded is its own.
    koniq = tmp_path / "koniq10k"
    save_plain_images(koniq / Path(theirs).parent, {Path(theirs).name: (8, 8)})
    before = contents(tmp_path)
    assert make_synthetic.main(["--out", str(tmp_path), *SMALL]) == 1
    assert capsys.readouterr().err == (
        f"make_synthetic.py: error: {koniq} holds 1 file(s) that no synthetic data set wrote, e.g. {koniq / theirs}: "
        "write the data set into a new or empty folder (make_synthetic.py --out), or one it wrote before; "
        "nothing was written or removed\n"
    )
    assert contents(tmp_path) == before


@pytest.mark.reliability
def test_a_file_added_to_a_folder_it_wrote_stops_the_next_run(tmp_path, capsys):
    # Both layouts are checked before either is written: CLIVE's folder holds a photo of the user's.
    assert make_synthetic.main(["--out", str(tmp_path), *SMALL]) == 0
    save_plain_images(tmp_path / "ChallengeDB_release" / "Images", {"7.bmp.jpg": (8, 8)})
    before = contents(tmp_path)
    assert make_synthetic.main(["--out", str(tmp_path), *SMALL, "--seed", "1"]) == 1
    assert "7.bmp.jpg: write the data set into a new or empty folder" in capsys.readouterr().err
    assert contents(tmp_path) == before


@pytest.mark.reliability
def test_a_record_naming_files_elsewhere_removes_none_of_them(tmp_path):
    # The record is read as names of the generator's own pattern: nothing outside the folder, nothing else.
    save_plain_images(tmp_path, {"photo.jpg": (8, 8)})
    kept = sha256(tmp_path / "photo.jpg")
    lines = [synthetic.RECORD_HEADER, "../photo.jpg", "1024x768/../../photo.jpg"]
    (tmp_path / "koniq10k").mkdir()
    (tmp_path / "koniq10k" / synthetic.RECORD).write_text("\n".join(lines) + "\n")
    write_koniq_layout(tmp_path / "koniq10k", count=2, width=8, height=8)
    assert sha256(tmp_path / "photo.jpg") == kept


@pytest.mark.reliability
def test_an_interrupted_run_leaves_no_file_unrecorded(tmp_path, monkeypatch, capsys):
    # Ctrl-C after 3 images: the next run into the folder still finds every file its own.
    calls = iter(range(1000))

    def degrade_then_stop(*args):
        if next(calls) == 3:
            raise KeyboardInterrupt
        return degrade(*args)

    monkeypatch.setattr(synthetic, "degrade", degrade_then_stop)
    assert make_synthetic.main(["--out", str(tmp_path), "--layout", "koniq", *SMALL]) == 130
    assert len(contents(tmp_path / "koniq10k")) == 4  # 3 images and the record
    monkeypatch.setattr(synthetic, "degrade", degrade)
    assert make_synthetic.main(["--out", str(tmp_path), "--layout", "koniq", *SMALL, "--seed", "1"]) == 0
    koniq = tmp_path / "koniq10k"
    images = {path for path in contents(koniq) if path.startswith("1024x768/")}
    assert images == koniq_images_named(koniq) and len(images) == 6
    assert "make_synthetic.py: interrupted; what was saved before is kept" in capsys.readouterr().err
