"""IQADataset and get_data_loaders on small generated data sets in the official layouts."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from data_helpers import save_plain_images, write_csv

from IQAdataset import Batching, IQADataset, NoSingletonBatchSampler, get_data_loaders
from linearityiqa.data.dataset_registry import ALL_FOR_TESTING, DataSource, Split
from linearityiqa.data.decoding import ImageSizing, batches_by_size, decode_image
from linearityiqa.data.image_store import ImageLoading
from linearityiqa.data.image_transforms import TrainAugmentation, to_uint8_tensor
from linearityiqa.data.info_builders import clive_info_from_release, koniq_info_from_csv, user_info_from_csv
from linearityiqa.data.info_files import write_info
from linearityiqa.data.synthetic import write_clive_layout, write_koniq_layout
from linearityiqa.errors import ConfigError, MissingFileError

IN_MEMORY = ImageLoading(cache_dir=None, verbose=False)
ONE_PROCESS = Batching(num_workers=0)


def crop(height, width):
    """The paper's augmentation with a crop of this size."""
    return TrainAugmentation(angle=2, hflip_p=0.5, crop_h=height, crop_w=width)


@pytest.fixture(scope="module")
def koniq(tmp_path_factory):
    """A 20-image KonIQ-10k download of 48x32 JPEGs and its info file, and the rows of its sets file."""
    root = tmp_path_factory.mktemp("koniq")
    sets_csv = write_koniq_layout(root / "download", count=20, width=48, height=32, seed=0)
    write_info(root / "KonIQ-10kinfo.mat", koniq_info_from_csv(sets_csv))
    with open(sets_csv, newline="") as file:
        rows = list(csv.DictReader(file))
    source = DataSource.open("KonIQ-10k", data_info=root / "KonIQ-10kinfo.mat", im_dir=root / "download" / "1024x768")
    return source, rows


@pytest.fixture(scope="module")
def clive(tmp_path_factory):
    """A CLIVE release of 10 rated 40x30 images (not 500x500, like a few real ones)."""
    root = tmp_path_factory.mktemp("clive")
    write_clive_layout(root / "release", count=10, width=40, height=30, seed=0)
    write_info(root / "CLIVEinfo.mat", clive_info_from_release(root / "release", num_orderings=4))
    return DataSource.open("CLIVE", data_info=root / "CLIVEinfo.mat", im_dir=root / "release" / "Images")


SIXTY_TWENTY_TWENTY = Split(train_ratio=0.6, train_and_val_ratio=0.8)


def make_user_data_set(folder, splits, size=(24, 16), odd_sizes=()):
    """Images named 0.jpg, 1.jpg, ... with mos = their number, and a CSV giving each one's set."""
    sets = [name for name, count in splits.items() for _ in range(count)]
    sizes = {f"{k}.jpg": size for k in range(len(sets))}
    sizes.update({f"{k}.jpg": (size[0] + 2, size[1]) for k in odd_sizes})
    save_plain_images(folder / "images", sizes)
    csv_path = write_csv(
        folder / "scores.csv",
        ["image_name", "mos", "std", "set"],
        [[f"{k}.jpg", k, k / 10, image_set] for k, image_set in enumerate(sets)],
    )
    write_info(folder / "mine.mat", user_info_from_csv(csv_path))
    return DataSource.open("mine", data_info=folder / "mine.mat", im_dir=folder / "images")


def test_splits_follow_the_official_sets_in_file_order(koniq):
    source, rows = koniq
    for status, set_name in (("train", "training"), ("val", "validation"), ("test", "test")):
        split = IQADataset(source, status=status, loading=IN_MEMORY)
        members = [row for row in rows if row["set"] == set_name]
        assert split.im_names == [row["image_name"] for row in members]
        assert split.mos.tolist() == pytest.approx([float(row["MOS"]) for row in members])
        assert split.mos_std.dtype == torch.float32


def test_an_item_is_the_uint8_image_and_its_scores(koniq):
    source, rows = koniq
    split = IQADataset(source, status="test", loading=IN_MEMORY)
    image, (mos, mos_std) = split[1]
    path = source.spec.im_dir / split.im_names[1]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 48)
    assert torch.equal(image, to_uint8_tensor(decode_image(path, ImageSizing())))
    row = next(row for row in rows if row["image_name"] == split.im_names[1])
    assert mos.dtype == mos_std.dtype == torch.float32
    assert (mos.item(), mos_std.item()) == (np.float32(row["MOS"]), np.float32(row["SD"]))


def test_resize_and_augmentation_shapes(koniq):
    source, _ = koniq
    resized = ImageLoading(resize_hw=(24, 36), cache_dir=None, verbose=False)
    assert IQADataset(source, status="train", loading=resized, augmentation=crop(16, 20))[0][0].shape == (3, 16, 20)
    # Without an augmentation images are used whole; get_data_loaders gives one to training images only.
    assert IQADataset(source, status="train", loading=resized)[0][0].shape == (3, 24, 36)
    train, val, _ = get_data_loaders(source, loading=resized, augmentation=crop(16, 20), batching=ONE_PROCESS)
    assert next(iter(train))[0].shape[1:] == (3, 16, 20) and next(iter(val))[0].shape[1:] == (3, 24, 36)


@pytest.mark.reliability
def test_a_crop_larger_than_the_images_names_one(koniq):
    source, _ = koniq
    with pytest.raises(
        ConfigError,
        match=r"image .*\.jpg is 48x32 after loading, smaller than the 40x40 "
        r"training crop: lower the crop \(--crop_size_w, --crop_size_h\) or resize",
    ):
        IQADataset(source, status="train", loading=IN_MEMORY, augmentation=crop(40, 40))


def test_clive_images_are_made_500x500_then_resized(clive):
    train = IQADataset(clive, status="train", split=SIXTY_TWENTY_TWENTY, loading=IN_MEMORY)
    assert len(train) == 6 and train[0][0].shape == (3, 500, 500)
    resized = ImageLoading(resize_hw=(50, 60), cache_dir=None, verbose=False)
    val = IQADataset(clive, status="val", split=SIXTY_TWENTY_TWENTY, loading=resized)
    assert len(val) == 2 and val[0][0].shape == (3, 50, 60)


def test_exp_id_picks_the_ordering(clive):
    names = {
        exp_id: IQADataset(clive, status="train", split=Split(exp_id, 0.6, 0.8), loading=IN_MEMORY).im_names
        for exp_id in range(5)
    }
    assert names[4] == names[0]
    assert len({tuple(n) for n in names.values()}) > 1
    assert len(IQADataset(clive, status="test", split=ALL_FOR_TESTING, loading=IN_MEMORY)) == 10


def test_missing_files_say_what_to_do(koniq, tmp_path):
    source, _ = koniq
    with pytest.raises(MissingFileError, match=r"KonIQ-10k is not set up \(.*none.mat not found\): link its images"):
        DataSource.open("KonIQ-10k", data_info=tmp_path / "none.mat", im_dir=source.spec.im_dir)
    (tmp_path / "KonIQ-10k").mkdir()
    empty = DataSource.open("KonIQ-10k", data_info=source.spec.info_path, im_dir=tmp_path / "KonIQ-10k")
    with pytest.raises(
        MissingFileError,
        match=r"not found and 19 more of the 20 images: link the data set's "
        r"image folder to .*KonIQ-10k \(ln -s",
    ):
        IQADataset(empty, loading=IN_MEMORY)


@pytest.mark.parametrize(
    "num_samples, batch_size, sizes",
    [
        (16, 8, [8, 8]),
        (17, 8, [8, 9]),
        (18, 8, [8, 8, 2]),
        (9, 8, [9]),
        (3, 2, [3]),
        (5, 8, [5]),
    ],
)
def test_no_batch_of_one(num_samples, batch_size, sizes):
    sampler = NoSingletonBatchSampler(num_samples, batch_size)
    batches = list(sampler)
    assert [len(batch) for batch in batches] == sizes and len(sampler) == len(sizes)
    assert sorted(item for batch in batches for item in batch) == list(range(num_samples))


def test_loaders_batch_every_training_image_once_per_epoch(tmp_path):
    source = make_user_data_set(tmp_path, {"train": 17, "val": 3, "test": 4})
    train, val, test = get_data_loaders(source, loading=IN_MEMORY, batching=ONE_PROCESS)
    assert train.dataset.image_store is val.dataset.image_store is test.dataset.image_store
    for _ in range(2):
        batches = list(train)
        assert sorted(len(mos) for _, (mos, _) in batches) == [8, 9]
        assert sorted(torch.cat([mos for _, (mos, _) in batches]).tolist()) == list(range(17))
        assert batches[0][0].shape[1:] == (3, 16, 24)
        assert batches[0][0].dtype == torch.uint8
    assert [mos.tolist() for _, (mos, _) in val] == [[17.0, 18.0, 19.0]]  # whole, in file order
    assert len(test) == 1 and next(iter(test))[0].shape == (4, 3, 16, 24)
    _, val, test = get_data_loaders(source, loading=IN_MEMORY, batching=Batching(eval_batch_size=2, num_workers=0))
    assert [mos.tolist() for _, (mos, _) in val] == [[17.0, 18.0], [19.0]]
    assert [len(mos) for _, (mos, _) in test] == [2, 2]


def test_evaluation_batches_hold_images_of_one_size_in_file_order():
    sizes = [(4, 6), (4, 6), (8, 8), (4, 6), (8, 8), (2, 2), (4, 6)]
    assert batches_by_size(sizes, batch_size=3) == [[0, 1, 3], [6], [2, 4], [5]]
    assert batches_by_size([(5, 5)] * 5, batch_size=2) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ConfigError, match="evaluation batch size 0 is not positive"):
        batches_by_size(sizes, batch_size=0)
    # scoring batches the same way, leaving out the images it cannot read (no size)
    assert batches_by_size([(4, 6), None, (4, 6), (2, 2), None], 2) == [[0, 2], [3]]


def test_debug_keeps_five_batches_and_five_images_and_decodes_only_those(tmp_path):
    source = make_user_data_set(tmp_path, {"train": 14, "val": 8, "test": 8})
    train, val, test = get_data_loaders(
        source, loading=IN_MEMORY, batching=Batching(batch_size=2, num_workers=0, debug=True)
    )
    assert (len(train), len(val.dataset), len(test.dataset)) == (5, 5, 5)
    assert len(train.dataset.image_store) == 20


def test_loaders_refuse_what_would_break_training(tmp_path):
    source = make_user_data_set(tmp_path, {"train": 4, "val": 2, "test": 2}, odd_sizes=[2])
    pairs = Batching(batch_size=2, num_workers=0)
    with pytest.raises(
        ConfigError, match=r"the batch size \(-bs\) is 1: BatchNorm cannot train on batches of one image"
    ):
        get_data_loaders(source, loading=IN_MEMORY, batching=Batching(batch_size=1, num_workers=0))
    with pytest.raises(ConfigError, match=r"training images differ in size \(.*0.jpg is 24x16, .*2.jpg is 26x16\)"):
        get_data_loaders(source, loading=IN_MEMORY, batching=pairs)
    train, _, _ = get_data_loaders(source, loading=IN_MEMORY, augmentation=crop(8, 8), batching=pairs)
    assert next(iter(train))[0].shape == (2, 3, 8, 8)
    with pytest.raises(ConfigError, match="the val split of mine has 0 image"):
        get_data_loaders(
            source, split=Split(train_ratio=0.5, train_and_val_ratio=0.5), loading=IN_MEMORY, batching=pairs
        )
    # one test image: no correlation can be computed on it (8 images: 4 train, 3 val, 1 test)
    with pytest.raises(ConfigError, match=r"the test split of mine has 1 image\(s\) .* it needs at least 2"):
        get_data_loaders(
            source, split=Split(train_ratio=0.5, train_and_val_ratio=0.875), loading=IN_MEMORY, batching=pairs
        )


def test_worker_processes_deliver_the_same_batches(tmp_path):
    source = make_user_data_set(tmp_path, {"train": 6, "val": 2, "test": 2})
    _, val, _ = get_data_loaders(source, loading=IN_MEMORY, batching=Batching(batch_size=3, num_workers=0))
    # Workers read the images from the cache file's memory map.
    cached = ImageLoading(cache_dir=tmp_path / "cache", verbose=False)
    _, val_workers, _ = get_data_loaders(source, loading=cached, batching=Batching(batch_size=3, num_workers=2))
    for (image, (mos, _)), (image_w, (mos_w, _)) in zip(val, val_workers):
        assert torch.equal(image, image_w) and torch.equal(mos, mos_w)
