"""The IQA data sets as PyTorch datasets, and the data loaders of one experiment.

An item is (image, (mos, mos_std)): a 3 x H x W uint8 tensor and two float32 scalars. Images
are decoded once into a shared uint8 store (linearityiqa/data/image_store.py), so the per-item
work is a view and the optional augmentation of the paper. Batches stay uint8 until the device
normalizes them (image_transforms.normalize): a quarter of the bytes to pin and copy. Validation
and test images are always used whole: the paper evaluates on the full (resized) image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from linearityiqa.choices import LEAST_FOR_CORRELATION
from linearityiqa.data.dataset_registry import DataSource, Split
from linearityiqa.data.decoding import batches_by_size
from linearityiqa.data.image_store import ImageLoading, ImageStore, available_cores
from linearityiqa.data.image_transforms import TrainAugmentation, to_uint8_tensor
from linearityiqa.data.info_files import SPLITS
from linearityiqa.errors import ConfigError


class IQADataset(Dataset):
    """One split (train, val or test) of an IQA data set.

    Args:
        source: the data set, e.g. DataSource.open("KonIQ-10k").
        status: the split: "train", "val" or "test".
        split: the experiment and its ratios (default: experiment 0 of the data set's own split).
        loading: how the images are decoded and cached (size, cache folder, pixel limit).
        augmentation: random rotation, flip and crop of every item; None uses the images whole.
            get_data_loaders gives it to the training split only.
        max_items: keep only the first max_items images of the split (for debugging).
        image_store: decoded images to share between splits; by default they are loaded here:
            the whole data set's, which one cache then serves for every split and experiment,
            or only the split's with max_items.
    """

    def __init__(
        self,
        source: DataSource,
        *,
        status: str = "train",
        split: Split = Split(),
        loading: ImageLoading = ImageLoading(),
        augmentation: TrainAugmentation | None = None,
        max_items: int | None = None,
        image_store: ImageStore | None = None,
    ):
        positions = source.positions(status, split, max_items=max_items)
        if image_store is None:
            stored = positions if max_items is not None else np.arange(len(source.info))
            image_store = source.load_images(stored, loading)
        self.source = source
        self.im_names = [source.info.im_names[p] for p in positions]
        self.image_store = image_store
        self.rows = image_store.rows_of(self.im_names)
        self.mos = torch.from_numpy(source.info.scores[positions].astype(np.float32))
        self.mos_std = torch.from_numpy(source.info.stds[positions].astype(np.float32))
        self.augmentation = augmentation
        if augmentation is not None:
            self.check_batchable()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        pixels = self.image_store[self.rows[item]]
        if self.augmentation is not None:
            pixels = self.augmentation(pixels)
        return to_uint8_tensor(pixels), (self.mos[item], self.mos_std[item])

    def image_hw(self, item: int) -> tuple[int, int]:
        """(height, width) of an item's stored image, before augmentation."""
        height, width, _ = self.image_store.shapes[self.rows[item]]
        return int(height), int(width)

    def check_batchable(self) -> None:
        """That the images form training batches: each one holds the augmentation's crop or, without
        an augmentation, all have one size. A dataset with an augmentation checks itself."""
        crop, im_dir = self.augmentation, self.source.spec.im_dir
        for item, name in enumerate(self.im_names):
            height, width = self.image_hw(item)
            if crop is not None and (height < crop.crop_h or width < crop.crop_w):
                raise ConfigError(
                    f"image {im_dir / name} is {width}x{height} after loading, smaller than the "
                    f"{crop.crop_w}x{crop.crop_h} training crop: lower the crop (--crop_size_w, --crop_size_h) or "
                    f"resize the images (--resize)"
                )
            if crop is None and (height, width) != self.image_hw(0):
                first = self.image_hw(0)
                raise ConfigError(
                    f"training images differ in size ({im_dir / self.im_names[0]} is {first[1]}x{first[0]}, "
                    f"{im_dir / name} is {width}x{height}) and cannot form a batch: resize them (--resize), or "
                    f"crop them (--augment)"
                )


@dataclass(frozen=True)
class Batching:
    """How get_data_loaders batches the images of an experiment.

    Args:
        batch_size: training batch size, at least 2.
        eval_batch_size: most images per validation or test batch.
        num_workers: DataLoader worker processes; by default one per core, at most 8.
        debug: train on 5 batches and validate and test on 5 images, decoding only those.
    """

    batch_size: int = 8
    eval_batch_size: int = 32
    num_workers: int | None = None
    debug: bool = False


@dataclass(frozen=True)
class NoSingletonBatchSampler(Sampler[list[int]]):
    """Shuffled batches of `batch_size` in which a last batch of one sample joins the batch before.

    BatchNorm cannot train on a batch of one (the paper's README warns of CLIVE at 80%:
    929 % 8 == 1). Dropping that sample would leave a different image out of every epoch;
    a batch of batch_size + 1 instead keeps every image in every epoch.
    """

    num_samples: int
    batch_size: int

    def __iter__(self):
        order = torch.randperm(self.num_samples).tolist()
        batches = [order[start : start + self.batch_size] for start in range(0, self.num_samples, self.batch_size)]
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches[-2].extend(batches.pop())
        return iter(batches)

    def __len__(self) -> int:
        chunks = -(-self.num_samples // self.batch_size)
        return chunks - (chunks > 1 and self.num_samples % self.batch_size == 1)


def evaluation_loader(dataset: IQADataset, *, batch_size: int, num_workers: int) -> DataLoader:
    """Whole uint8 images, for the device to normalize, in batches of one size (data/decoding.py)."""
    batches = batches_by_size([dataset.image_hw(item) for item in range(len(dataset))], batch_size)
    return DataLoader(dataset, batch_sampler=batches, **_loader_options(num_workers))


def _loader_options(num_workers: int) -> dict:
    # Pinned pages let a batch go to the GPU while the next one is being computed on.
    return dict(num_workers=num_workers, pin_memory=torch.cuda.is_available(), persistent_workers=num_workers > 0)


def get_data_loaders(
    source: DataSource,
    *,
    split: Split = Split(),
    loading: ImageLoading = ImageLoading(),
    augmentation: TrainAugmentation | None = None,
    batching: Batching = Batching(),
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train, val and test loaders of one experiment of `source`, the images decoded (or mapped) once:
    shuffled training batches (NoSingletonBatchSampler) augmented by `augmentation`, and whole val
    and test images (evaluation_loader); BatchNorm evaluates in eval mode, so a batch gives each
    image the score it gets alone."""
    if batching.batch_size < 2:
        raise ConfigError(
            f"the batch size (-bs) is {batching.batch_size}: BatchNorm cannot train on batches of one image; "
            f"use 2 or more"
        )
    limits = {"train": 5 * batching.batch_size, "val": 5, "test": 5}  # --debug: 5 batches; 5 images
    max_items = {status: limits[status] if batching.debug else None for status in SPLITS}
    positions = {status: source.positions(status, split, max_items=max_items[status]) for status in SPLITS}
    _check_split_sizes(positions, source, split)
    stored = np.sort(np.concatenate(list(positions.values()))) if batching.debug else np.arange(len(source.info))
    store = source.load_images(stored, loading)
    datasets = {
        status: IQADataset(
            source,
            status=status,
            split=split,
            max_items=max_items[status],
            image_store=store,
            augmentation=augmentation if status == "train" else None,
        )
        for status in SPLITS
    }
    if augmentation is None:
        datasets["train"].check_batchable()
    workers = batching.num_workers if batching.num_workers is not None else min(8, available_cores())
    train_batches = NoSingletonBatchSampler(len(datasets["train"]), batching.batch_size)
    train_loader = DataLoader(datasets["train"], batch_sampler=train_batches, **_loader_options(workers))
    val_loader, test_loader = (
        evaluation_loader(datasets[status], batch_size=batching.eval_batch_size, num_workers=workers)
        for status in SPLITS[1:]
    )
    return train_loader, val_loader, test_loader


def _check_split_sizes(positions: dict[str, np.ndarray], source: DataSource, split: Split) -> None:
    """Before any image is decoded: every split has the images its use needs, two at least (a
    training batch for BatchNorm; a correlation to choose the best model by, and to test)."""
    least = LEAST_FOR_CORRELATION
    if split.train_ratio is None:
        how = "its own split"
        advice = "its info file fixes the split (ratios do not apply to it): give each split more images"
    else:
        how = f"train_ratio={split.train_ratio}, train_and_val_ratio={split.train_and_val_ratio}"
        advice = f"choose ratios (--train_ratio, --train_and_val_ratio) that leave {least} or more images in each split"
    for status, members in positions.items():
        if len(members) < least:
            raise ConfigError(
                f"the {status} split of {source.name} has {len(members)} image(s) with {how}, but it needs at "
                f"least {least}: {advice}"
            )
