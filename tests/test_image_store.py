"""Decoding images once (any pixel mode, the paper's resizing) and caching them on disk."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from data_helpers import save_plain_images
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from linearityiqa.data import image_store
from linearityiqa.data.decoding import ImageSizing, decode_image, sized_rgb
from linearityiqa.data.image_store import ImageLoading, ImageStore, load_images
from linearityiqa.errors import BadFileError, ConfigError, MissingFileError


@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("L", 77, (77, 77, 77)),
        ("1", 1, (255, 255, 255)),
        ("RGBA", (10, 20, 30, 0), (10, 20, 30)),
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
        ("I;16", 65535, (255, 255, 255)),
        ("I;16", 32896, (128, 128, 128)),
    ],
)
def test_every_pixel_mode_becomes_rgb(tmp_path, mode, value, expected):
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    Image.new(mode, (6, 4), value).save(path)
    pixels = decode_image(path, ImageSizing())
    assert pixels.dtype == np.uint8 and pixels.shape == (4, 6, 3)
    assert (pixels == expected).all()


def test_palette_images_take_their_palette_colours(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    image.save(tmp_path / "p.png")
    assert (decode_image(tmp_path / "p.png", ImageSizing()) == (200, 100, 50)).all()


def test_resizing_is_torchvisions_bilinear_resize_of_the_pil_image(tmp_path):
    save_plain_images(tmp_path, {"a.jpg": (60, 40)})
    with Image.open(tmp_path / "a.jpg") as image:
        expected = np.asarray(F.resize(image.convert("RGB"), [30, 50], interpolation=InterpolationMode.BILINEAR))
    assert (decode_image(tmp_path / "a.jpg", ImageSizing(resize_hw=(30, 50))) == expected).all()


def test_square_size_applies_to_other_sizes_first(tmp_path):
    save_plain_images(tmp_path, {"odd.jpg": (60, 40), "square.jpg": (50, 50)})
    sizing = ImageSizing(square_size=50)
    assert decode_image(tmp_path / "odd.jpg", sizing).shape == (50, 50, 3)
    with Image.open(tmp_path / "square.jpg") as image:
        assert (decode_image(tmp_path / "square.jpg", sizing) == np.asarray(image)).all()
    with Image.open(tmp_path / "odd.jpg") as image:
        squared = F.resize(image, [50, 50], interpolation=InterpolationMode.BILINEAR)
        expected = np.asarray(F.resize(squared, [20, 30], interpolation=InterpolationMode.BILINEAR))
    both = ImageSizing(square_size=50, resize_hw=(20, 30))
    assert (decode_image(tmp_path / "odd.jpg", both) == expected).all()
    assert both.tag() == "sq50-20x30" and ImageSizing().tag() == "native"


def test_store_holds_each_image_as_decoded(images):
    folder, names = images
    store = load_images(folder, names, label="t", loading=ImageLoading(cache_dir=None, verbose=False))
    assert len(store) == 3 and store.nbytes == (200 + 48 + 200) * 3
    for row, name in enumerate(names):
        assert (store[row] == decode_image(folder / name, ImageSizing())).all()
    assert store.rows_of(["c.jpg", "a.jpg"]).tolist() == [2, 0]


def test_second_load_maps_the_cache_without_decoding(images, tmp_path, monkeypatch, capsys):
    folder, names = images
    cache = tmp_path / "cache"
    first = load_images(folder, names, label="my set", loading=ImageLoading(cache_dir=cache, workers=2))
    assert "my set: 3 images, 0.0 MiB as uint8, cached in" in capsys.readouterr().out
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".npy"]
    monkeypatch.setattr(image_store, "decode_image", lambda *args: pytest.fail("decoded again"))
    second = load_images(folder, names, label="my set", loading=ImageLoading(cache_dir=cache, verbose=False))
    assert second.cache_path == first.cache_path and second.cache_path.name.startswith("my_set-native-")
    for row in range(3):
        assert (second[row] == first[row]).all()


def test_a_changed_file_size_or_list_makes_a_new_cache(images, tmp_path):
    folder, names = images
    cache = tmp_path / "cache"
    original = load_images(folder, names, label="t", loading=ImageLoading(cache_dir=cache, verbose=False))
    resized_loading = ImageLoading(resize_hw=(4, 4), cache_dir=cache, verbose=False)
    resized = load_images(folder, names, label="t", loading=resized_loading)
    fewer = load_images(folder, names[:2], label="t", loading=ImageLoading(cache_dir=cache, verbose=False))
    Image.new("RGB", (20, 10), (1, 2, 3)).save(folder / "c.jpg")
    os.utime(folder / "c.jpg", ns=(1, 1))
    changed = load_images(folder, names, label="t", loading=ImageLoading(cache_dir=cache, verbose=False))
    paths = {store.cache_path for store in (original, resized, fewer, changed)}
    assert len(paths) == 4
    assert (changed[2] == decode_image(folder / "c.jpg", ImageSizing())).all()
    assert not (changed[2] == original[2]).all()


def test_a_cached_store_pickles_without_its_pixels(images, tmp_path):
    folder, names = images
    store = load_images(folder, names, label="t", loading=ImageLoading(cache_dir=tmp_path / "c", verbose=False))
    payload = pickle.dumps(store)
    assert len(payload) < store.nbytes
    restored = pickle.loads(payload)
    assert all((restored[row] == store[row]).all() for row in range(3))
    in_memory = load_images(folder, names, label="t", loading=ImageLoading(cache_dir=None, verbose=False))
    assert (pickle.loads(pickle.dumps(in_memory))[1] == store[1]).all()


def test_missing_images_are_all_counted_in_one_message(images):
    folder, names = images
    with pytest.raises(
        MissingFileError,
        match=r"image .*images/x.jpg not found and 1 more of the 5 images: "
        r"link the data set's image folder to .*images \(ln -s",
    ):
        load_images(folder, names + ["x.jpg", "y.jpg"], label="t", loading=ImageLoading(cache_dir=None, verbose=False))


@pytest.mark.parametrize("kind", ["not an image", "truncated"])
def test_an_undecodable_image_is_named_and_leaves_no_partial_cache(images, tmp_path, kind):
    folder, names = images
    if kind == "truncated":
        # The header still gives the size; decoding fails part way through the file.
        save_plain_images(folder, {"bad.jpg": (400, 300)})
        whole = (folder / "bad.jpg").read_bytes()
        (folder / "bad.jpg").write_bytes(whole[: len(whole) // 2])
    else:
        (folder / "bad.jpg").write_bytes(b"not an image at all")
    cache = tmp_path / "cache"
    with pytest.raises(BadFileError, match=r"cannot decode image .*bad.jpg .*replace it with an intact"):
        load_images(folder, names + ["bad.jpg"], label="t", loading=ImageLoading(cache_dir=cache, verbose=False))
    assert not cache.exists() or list(cache.iterdir()) == []


def test_an_unwritable_cache_says_what_to_do(images, tmp_path):
    folder, names = images
    (tmp_path / "a file").write_text("")
    with pytest.raises(
        ConfigError,
        match=r"cannot write the image cache .*a file/t-native-.*\.npy .*"
        r"pass another --cache_dir, or --cache_dir none to keep the images in memory only "
        r"\(ImageLoading\(cache_dir=None\)\)",
    ):
        load_images(folder, names, label="t", loading=ImageLoading(cache_dir=tmp_path / "a file", verbose=False))


def test_floating_point_images_are_refused(tmp_path):
    Image.new("F", (4, 4), 0.5).save(tmp_path / "f.tif")
    with pytest.raises(BadFileError, match=r"f.tif \(floating-point pixels \(mode F\) are not supported\)"):
        decode_image(tmp_path / "f.tif", ImageSizing())


def test_store_views_share_one_buffer():
    pixels = np.arange(2 * 3 * 3 + 1 * 2 * 3, dtype=np.uint8)
    store = ImageStore(names=["a", "b"], shapes=np.array([[2, 3, 3], [1, 2, 3]]), pixels=pixels)
    assert store[1].tolist() == [[[18, 19, 20], [21, 22, 23]]]
    assert np.shares_memory(store[0], pixels)


def test_decoding_resizes_as_torchvision_resizes_a_pil_image():
    """data/decoding.py resizes with Pillow alone (the ONNX path imports no torch); torchvision's
    resize of a PIL image, which the paper's code used, gives the same pixels."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        height, width, to_h, to_w = (int(size) for size in rng.integers(3, 200, size=4))
        image = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
        expected = np.asarray(F.resize(image, [to_h, to_w], interpolation=InterpolationMode.BILINEAR))
        assert np.array_equal(sized_rgb(image, ImageSizing(resize_hw=(to_h, to_w))), expected)
