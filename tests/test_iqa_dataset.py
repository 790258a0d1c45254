"""IQADataset and get_data_loaders on small generated data sets in the official layouts."""

import csv

import numpy as np
import pytest
import torch

from data_helpers import save_plain_images, write_csv
from errors import ConfigError, MissingFileError
from image_store import ImageSizing, decode_image
from image_transforms import to_uint8_tensor
from info_builders import clive_info_from_release, koniq_info_from_csv, user_info_from_csv
from info_files import write_info
from IQAdataset import IQADataset, NoSingletonBatchSampler, SizeGroupedBatches, get_data_loaders
from synthetic import write_clive_layout, write_koniq_layout


@pytest.fixture(scope="module")
def koniq(tmp_path_factory):
    """A 20-image KonIQ-10k download of 48x32 JPEGs and its info file."""
    root = tmp_path_factory.mktemp("koniq")
    sets_csv = write_koniq_layout(root / "download", count=20, width=48, height=32, seed=0)
    write_info(root / "KonIQ-10kinfo.mat", koniq_info_from_csv(sets_csv))
    with open(sets_csv, newline="") as file:
        rows = list(csv.DictReader(file))
    return dict(dataset="KonIQ-10k", data_info=str(root / "KonIQ-10kinfo.mat"),
                im_dir=str(root / "download" / "1024x768"), cache_dir=None, verbose=False), rows


@pytest.fixture(scope="module")
def clive(tmp_path_factory):
    """A CLIVE release of 10 rated 40x30 images (not 500x500, like a few real ones)."""
    root = tmp_path_factory.mktemp("clive")
    write_clive_layout(root / "release", count=10, width=40, height=30, seed=0)
    write_info(root / "CLIVEinfo.mat", clive_info_from_release(root / "release", num_orderings=4))
    return dict(dataset="CLIVE", data_info=str(root / "CLIVEinfo.mat"), im_dir=str(root / "release" / "Images"),
                train_ratio=0.6, train_and_val_ratio=0.8, cache_dir=None, verbose=False)


def make_user_data_set(folder, splits, size=(24, 16), odd_sizes=()):
    """Images named 0.jpg, 1.jpg, ... with mos = their number, and a CSV giving each one's set."""
    sets = [name for name, count in splits.items() for _ in range(count)]
    sizes = {f"{k}.jpg": size for k in range(len(sets))}
    sizes.update({f"{k}.jpg": (size[0] + 2, size[1]) for k in odd_sizes})
    save_plain_images(folder / "images", sizes)
    csv_path = write_csv(folder / "scores.csv", ["image_name", "mos", "std", "set"],
                         [[f"{k}.jpg", k, k / 10, image_set] for k, image_set in enumerate(sets)])
    write_info(folder / "mine.mat", user_info_from_csv(csv_path))
    return dict(dataset="mine", data_info=str(folder / "mine.mat"), im_dir=str(folder / "images"),
                cache_dir=None, verbose=False, num_workers=0)


def test_splits_follow_the_official_sets_in_file_order(koniq):
    kwargs, rows = koniq
    for status, set_name in (("train", "training"), ("val", "validation"), ("test", "test")):
        split = IQADataset(status=status, **kwargs)
        members = [row for row in rows if row["set"] == set_name]
        assert split.im_names == [row["image_name"] for row in members]
        assert split.mos.tolist() == pytest.approx([float(row["MOS"]) for row in members])
        assert split.mos_std.dtype == torch.float32


def test_an_item_is_the_uint8_image_and_its_scores(koniq):
    kwargs, rows = koniq
    split = IQADataset(status="test", **kwargs)
    image, (mos, mos_std) = split[1]
    path = f"{kwargs['im_dir']}/{split.im_names[1]}"
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 48)
    assert torch.equal(image, to_uint8_tensor(decode_image(path, ImageSizing())))
    row = next(row for row in rows if row["image_name"] == split.im_names[1])
    assert mos.dtype == mos_std.dtype == torch.float32
    assert (mos.item(), mos_std.item()) == (np.float32(row["MOS"]), np.float32(row["SD"]))


def test_resize_and_augmentation_shapes(koniq):
    kwargs, _ = koniq
    sizing = dict(resize=True, resize_size_h=24, resize_size_w=36, augment=True, crop_size_h=16, crop_size_w=20)
    assert IQADataset(status="train", **sizing, **kwargs)[0][0].shape == (3, 16, 20)
    # Validation and test images are used whole, augmentation or not.
    assert IQADataset(status="val", **sizing, **kwargs)[0][0].shape == (3, 24, 36)
    # Without augment, training images are used whole too.
    assert IQADataset(status="train", **{**sizing, "augment": False}, **kwargs)[0][0].shape == (3, 24, 36)


@pytest.mark.reliability
def test_a_crop_larger_than_the_images_names_one(koniq):
    kwargs, _ = koniq
    with pytest.raises(ConfigError, match=r"image .*\.jpg is 48x32 after loading, smaller than the 40x40 "
                                          r"training crop: lower crop_size_w/crop_size_h or resize"):
        IQADataset(status="train", augment=True, crop_size_h=40, crop_size_w=40, **kwargs)


def test_clive_images_are_made_500x500_then_resized(clive):
    train = IQADataset(status="train", **clive)
    assert len(train) == 6 and train[0][0].shape == (3, 500, 500)
    resized = IQADataset(status="val", resize=True, resize_size_h=50, resize_size_w=60, **clive)
    assert len(resized) == 2 and resized[0][0].shape == (3, 50, 60)


def test_exp_id_picks_the_ordering(clive):
    names = {exp_id: IQADataset(status="train", exp_id=exp_id, **clive).im_names for exp_id in range(5)}
    assert names[4] == names[0]
    assert len({tuple(n) for n in names.values()}) > 1
    everything = IQADataset(status="test", **{**clive, "train_ratio": 0, "train_and_val_ratio": 0})
    assert len(everything) == 10


def test_missing_files_say_what_to_do(koniq, tmp_path):
    kwargs, _ = koniq
    with pytest.raises(MissingFileError, match="info file .*none.mat not found: build it with make_info.py"):
        IQADataset(**{**kwargs, "data_info": str(tmp_path / "none.mat")})
    with pytest.raises(MissingFileError, match=r"not found and 19 more of the 20 images: link the data set's "
                                                r"image folder to .*KonIQ-10k \(ln -s"):
        IQADataset(**{**kwargs, "im_dir": str(tmp_path / "KonIQ-10k")})


@pytest.mark.parametrize("num_samples, batch_size, sizes", [
    (16, 8, [8, 8]), (17, 8, [8, 9]), (18, 8, [8, 8, 2]), (9, 8, [9]), (3, 2, [3]), (5, 8, [5]),
])
def test_no_batch_of_one(num_samples, batch_size, sizes):
    sampler = NoSingletonBatchSampler(num_samples, batch_size)
    batches = list(sampler)
    assert [len(batch) for batch in batches] == sizes and len(sampler) == len(sizes)
    assert sorted(sum(batches, [])) == list(range(num_samples))


def test_loaders_batch_every_training_image_once_per_epoch(tmp_path):
    kwargs = make_user_data_set(tmp_path, {"train": 17, "val": 3, "test": 4})
    train, val, test = get_data_loaders(batch_size=8, **kwargs)
    assert train.dataset.image_store is val.dataset.image_store is test.dataset.image_store
    for _ in range(2):
        batches = list(train)
        assert sorted(len(mos) for _, (mos, _) in batches) == [8, 9]
        assert sorted(torch.cat([mos for _, (mos, _) in batches]).tolist()) == list(range(17))
        assert batches[0][0].shape[1:] == (3, 16, 24)
        assert batches[0][0].dtype == torch.uint8
    assert [mos.tolist() for _, (mos, _) in val] == [[17.0, 18.0, 19.0]]  # whole, in file order
    assert len(test) == 1 and next(iter(test))[0].shape == (4, 3, 16, 24)
    _, val, test = get_data_loaders(batch_size=8, eval_batch_size=2, **kwargs)
    assert [mos.tolist() for _, (mos, _) in val] == [[17.0, 18.0], [19.0]]
    assert [len(mos) for _, (mos, _) in test] == [2, 2]


def test_evaluation_batches_hold_images_of_one_size_in_file_order():
    sizes = [(4, 6), (4, 6), (8, 8), (4, 6), (8, 8), (2, 2), (4, 6)]
    batches = SizeGroupedBatches(sizes, batch_size=3)
    assert list(batches) == [[0, 1, 3], [6], [2, 4], [5]] and len(batches) == 4
    assert list(SizeGroupedBatches([(5, 5)] * 5, batch_size=2)) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ConfigError, match="evaluation batch size 0 is not positive"):
        SizeGroupedBatches(sizes, batch_size=0)


def test_debug_keeps_five_batches_and_five_images_and_decodes_only_those(tmp_path):
    kwargs = make_user_data_set(tmp_path, {"train": 14, "val": 8, "test": 8})
    train, val, test = get_data_loaders(batch_size=2, debug=True, **kwargs)
    assert (len(train), len(val.dataset), len(test.dataset)) == (5, 5, 5)
    assert len(train.dataset.image_store) == 20


def test_loaders_refuse_what_would_break_training(tmp_path):
    kwargs = make_user_data_set(tmp_path, {"train": 4, "val": 1, "test": 1}, odd_sizes=[2])
    with pytest.raises(ConfigError, match="batch_size is 1: BatchNorm cannot train on batches of one image"):
        get_data_loaders(batch_size=1, **kwargs)
    with pytest.raises(ConfigError, match=r"training images differ in size \(.*0.jpg is 24x16, .*2.jpg is 26x16\)"):
        get_data_loaders(batch_size=2, **kwargs)
    train, _, _ = get_data_loaders(batch_size=2, augment=True, crop_size_h=8, crop_size_w=8, **kwargs)
    assert next(iter(train))[0].shape == (2, 3, 8, 8)
    with pytest.raises(ConfigError, match="the val split of mine has 0 image"):
        get_data_loaders(batch_size=2, train_ratio=0.5, train_and_val_ratio=0.5, **kwargs)


def test_worker_processes_deliver_the_same_batches(tmp_path):
    kwargs = make_user_data_set(tmp_path, {"train": 6, "val": 2, "test": 2})
    _, val, _ = get_data_loaders(batch_size=3, **kwargs)
    # Workers read the images from the cache file's memory map.
    _, val_workers, _ = get_data_loaders(batch_size=3, **{**kwargs, "cache_dir": str(tmp_path / "cache"),
                                                          "num_workers": 2})
    for (image, (mos, _)), (image_w, (mos_w, _)) in zip(val, val_workers):
        assert torch.equal(image, image_w) and torch.equal(mos, mos_w)
