"""The IQA data sets as PyTorch datasets, and the data loaders of one experiment.

An item is (image, (mos, mos_std)): a 3 x H x W uint8 tensor and two float32 scalars. Images
are decoded once into a shared uint8 store (image_store.py), so the per-item work is a view
and the optional augmentation of the paper. Batches stay uint8 until they reach the device
the model runs on, where image_transforms.normalize turns them into ImageNet-normalized
float32 (training.prepare_batch): a quarter of the bytes to pin and copy.

Training images are augmented (rotation, flip, crop) only with `augment`; without it they are
used whole, as in the paper's code. Validation and test images are always used whole: the
paper evaluates on the full (resized) image.
"""

from __future__ import annotations

from typing import List

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dataset_registry import DatasetSpec, get_dataset_spec, resolve_split_sizes
from errors import ConfigError
from image_store import ImageSizing, ImageStore, available_cores, load_images
from image_transforms import TrainAugmentation, to_uint8_tensor
from info_files import SPLITS, IQAInfo, read_info, split_positions

DEFAULT_CACHE_DIR = "data/cache"
DEBUG_TRAIN_BATCHES = 5
DEBUG_EVAL_IMAGES = 5


class IQADataset(Dataset):
    """One split (train, val or test) of an IQA data set.

    Args:
        dataset: "KonIQ-10k", "CLIVE", or the name of a user's data set (see dataset_registry.py).
        data_info: the info file; by default the data set's (e.g. data/KonIQ-10kinfo.mat).
        im_dir: the image folder; by default the data set's (e.g. KonIQ-10k).
        status: the split: "train", "val" or "test".
        exp_id: the experiment; it picks the ordering of the index that the split uses.
        train_ratio: share of training images; None (with train_and_val_ratio None) for the
            data set's own split, e.g. KonIQ-10k's official one.
        train_and_val_ratio: share of training and validation images together.
        resize: resize every image to (resize_size_h, resize_size_w).
        resize_size_h, resize_size_w: the size to resize to.
        augment: rotate, flip and crop training images at random.
        angle: the largest rotation, in degrees.
        crop_size_h, crop_size_w: the size of the training crop.
        hflip_p: the probability of a horizontal flip.
        max_items: keep only the first max_items images of the split (for debugging).
        cache_dir: folder of the decoded-image cache; None keeps the images in memory only.
        decode_workers: threads that decode images; by default one per core.
        info: the info file's content when already read; by default it is read from data_info.
        image_store: decoded images to share between splits; by default they are loaded here.
        verbose: print progress and the memory the images take.
    """

    def __init__(self, *, dataset: str = "KonIQ-10k", data_info: str | None = None, im_dir: str | None = None,
                 status: str = "train", exp_id: int = 0, train_ratio: float | None = None,
                 train_and_val_ratio: float | None = None, resize: bool = False, resize_size_h: int = 498,
                 resize_size_w: int = 664, augment: bool = False, angle: float = 2.0, crop_size_h: int = 498,
                 crop_size_w: int = 498, hflip_p: float = 0.5, max_items: int | None = None,
                 cache_dir: str | None = DEFAULT_CACHE_DIR, decode_workers: int | None = None,
                 info: IQAInfo | None = None, image_store: ImageStore | None = None, verbose: bool = True):
        spec = get_dataset_spec(dataset, data_info=data_info, im_dir=im_dir)
        info = info if info is not None else read_info(spec.info_path)
        positions = _split_positions(spec, info, status=status, exp_id=exp_id, train_ratio=train_ratio,
                                     train_and_val_ratio=train_and_val_ratio, max_items=max_items)
        if image_store is None:
            stored = positions if max_items is not None else np.arange(len(info))
            image_store = _load_store(spec, info, stored, resize=resize,
                                      resize_hw=(resize_size_h, resize_size_w), cache_dir=cache_dir,
                                      workers=decode_workers, verbose=verbose)
        self.im_names = [info.im_names[p] for p in positions]
        self.image_store = image_store
        self.rows = image_store.rows_of(self.im_names)
        self.mos = torch.from_numpy(info.scores[positions].astype(np.float32))
        self.mos_std = torch.from_numpy(info.stds[positions].astype(np.float32))
        self.augmentation = None
        if status == "train" and augment:
            self.augmentation = TrainAugmentation(angle=angle, hflip_p=hflip_p, crop_h=crop_size_h,
                                                  crop_w=crop_size_w)
            self._check_crop_fits(spec)

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

    def _check_crop_fits(self, spec: DatasetSpec) -> None:
        crop_h, crop_w = self.augmentation.crop_h, self.augmentation.crop_w
        for item, name in enumerate(self.im_names):
            height, width = self.image_hw(item)
            if height < crop_h or width < crop_w:
                raise ConfigError(
                    f"image {spec.im_dir / name} is {width}x{height} after loading, smaller than the "
                    f"{crop_w}x{crop_h} training crop: lower crop_size_w/crop_size_h or resize the images"
                )


def _split_positions(spec: DatasetSpec, info: IQAInfo, *, status: str, exp_id: int,
                     train_ratio: float | None, train_and_val_ratio: float | None,
                     max_items: int | None) -> np.ndarray:
    train_size, train_and_val_size = resolve_split_sizes(spec, info, train_ratio=train_ratio,
                                                         train_and_val_ratio=train_and_val_ratio)
    positions = split_positions(info, status=status, exp_id=exp_id, train_size=train_size,
                                train_and_val_size=train_and_val_size)
    return positions[:max_items]


def _load_store(spec: DatasetSpec, info: IQAInfo, positions: np.ndarray, *, resize: bool,
                resize_hw: tuple[int, int], cache_dir: str | None, workers: int | None, verbose: bool) -> ImageStore:
    sizing = ImageSizing(square_size=spec.square_size, resize_hw=resize_hw if resize else None)
    names = [info.im_names[p] for p in positions]
    return load_images(spec.im_dir, names, sizing=sizing, label=spec.name, cache_dir=cache_dir,
                       workers=workers, verbose=verbose)


class NoSingletonBatchSampler(Sampler[List[int]]):
    """Shuffled batches of `batch_size` in which a last batch of one sample joins the batch before.

    BatchNorm cannot train on a batch of one (the paper's README warns of CLIVE at 80%:
    929 % 8 == 1). Dropping that sample would leave a different image out of every epoch;
    a batch of batch_size + 1 instead keeps every image in every epoch.

    Args:
        num_samples: size of the data set.
        batch_size: samples per batch, at least 2.
    """

    def __init__(self, num_samples: int, batch_size: int):
        super().__init__()
        self.num_samples = num_samples
        self.batch_size = batch_size

    def __iter__(self):
        order = torch.randperm(self.num_samples).tolist()
        batches = [order[start:start + self.batch_size] for start in range(0, self.num_samples, self.batch_size)]
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches[-2].extend(batches.pop())
        return iter(batches)

    def __len__(self) -> int:
        chunks = -(-self.num_samples // self.batch_size)
        return chunks - (chunks > 1 and self.num_samples % self.batch_size == 1)


class SizeGroupedBatches(Sampler[List[int]]):
    """Batches of up to `batch_size` images of one size, for evaluation: whole images of unequal
    sizes cannot share a batch. Sizes come in order of first appearance and images in file order
    within a size, so a data set of one size is batched in file order.

    Args:
        sizes: (height, width) of each image of the data set.
        batch_size: most images per batch.
    """

    def __init__(self, sizes: List[tuple[int, int]], batch_size: int):
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"evaluation batch size {batch_size} is not positive: use 1 or more")
        groups: dict[tuple[int, int], List[int]] = {}
        for item, size in enumerate(sizes):
            groups.setdefault(size, []).append(item)
        self.batches = [group[start:start + batch_size] for group in groups.values()
                        for start in range(0, len(group), batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def evaluation_loader(dataset: IQADataset, *, batch_size: int, num_workers: int) -> DataLoader:
    """Whole images in batches of one size each (SizeGroupedBatches), uint8 for the device to normalize."""
    batches = SizeGroupedBatches([dataset.image_hw(item) for item in range(len(dataset))], batch_size)
    return DataLoader(dataset, batch_sampler=batches, **_loader_options(num_workers))


def _loader_options(num_workers: int) -> dict:
    # Pinned pages let a batch go to the GPU while the next one is being computed on.
    return dict(num_workers=num_workers, pin_memory=torch.cuda.is_available(), persistent_workers=num_workers > 0)


def get_data_loaders(*, dataset: str = "KonIQ-10k", data_info: str | None = None, im_dir: str | None = None,
                     exp_id: int = 0, train_ratio: float | None = None, train_and_val_ratio: float | None = None,
                     resize: bool = False, resize_size_h: int = 498, resize_size_w: int = 664,
                     augment: bool = False, angle: float = 2.0, crop_size_h: int = 498, crop_size_w: int = 498,
                     hflip_p: float = 0.5, batch_size: int = 8, eval_batch_size: int = 32, debug: bool = False,
                     num_workers: int | None = None, cache_dir: str | None = DEFAULT_CACHE_DIR,
                     verbose: bool = True) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train, val and test loaders of one experiment; the images are decoded (or mapped) once.

    The train loader shuffles, in batches of `batch_size` (see NoSingletonBatchSampler); the
    val and test loaders give whole images in batches of up to `eval_batch_size` images of one
    size (see SizeGroupedBatches). BatchNorm evaluates in eval mode, so a batch gives each
    image the score it gets alone. Arguments not listed here are those of IQADataset.

    Args:
        batch_size: training batch size, at least 2.
        eval_batch_size: most images per validation or test batch.
        debug: train on 5 batches and validate and test on 5 images, decoding only those.
        num_workers: DataLoader worker processes; by default one per core, at most 8.
    """
    if batch_size < 2:
        raise ConfigError(
            f"batch_size is {batch_size}: BatchNorm cannot train on batches of one image; use 2 or more"
        )
    spec = get_dataset_spec(dataset, data_info=data_info, im_dir=im_dir)
    info = read_info(spec.info_path)
    limits = {"train": DEBUG_TRAIN_BATCHES * batch_size, "val": DEBUG_EVAL_IMAGES, "test": DEBUG_EVAL_IMAGES}
    split_kwargs = dict(exp_id=exp_id, train_ratio=train_ratio, train_and_val_ratio=train_and_val_ratio)
    positions = {status: _split_positions(spec, info, status=status,
                                          max_items=limits[status] if debug else None, **split_kwargs)
                 for status in SPLITS}
    for status, members in positions.items():
        if len(members) == 0 or (status == "train" and len(members) < 2):
            raise ConfigError(
                f"the {status} split of {spec.name} has {len(members)} image(s) with "
                f"train_ratio={train_ratio}, train_and_val_ratio={train_and_val_ratio}: "
                f"choose ratios that leave images in every split"
            )
    stored = np.sort(np.concatenate(list(positions.values()))) if debug else np.arange(len(info))
    store = _load_store(spec, info, stored, resize=resize, resize_hw=(resize_size_h, resize_size_w),
                        cache_dir=cache_dir, workers=None, verbose=verbose)
    datasets = {status: IQADataset(
        dataset=dataset, data_info=str(spec.info_path), im_dir=str(spec.im_dir), status=status,
        augment=augment, angle=angle, crop_size_h=crop_size_h, crop_size_w=crop_size_w, hflip_p=hflip_p,
        max_items=limits[status] if debug else None, info=info, image_store=store, **split_kwargs,
    ) for status in SPLITS}
    if not augment:
        _check_batchable(datasets["train"], spec)
    workers = num_workers if num_workers is not None else min(8, available_cores())
    return _make_loaders(datasets, batch_size, eval_batch_size, workers)


def _check_batchable(train_set: IQADataset, spec: DatasetSpec) -> None:
    """Whole training images make a batch only when they all have one size."""
    first = train_set.image_hw(0)
    for item in range(1, len(train_set)):
        if train_set.image_hw(item) != first:
            height, width = train_set.image_hw(item)
            raise ConfigError(
                f"training images differ in size ({spec.im_dir / train_set.im_names[0]} is "
                f"{first[1]}x{first[0]}, {spec.im_dir / train_set.im_names[item]} is {width}x{height}) "
                f"and cannot form a batch: use resize, or augment to crop them"
            )


def _make_loaders(datasets: dict[str, IQADataset], batch_size: int, eval_batch_size: int,
                  num_workers: int) -> tuple[DataLoader, DataLoader, DataLoader]:
    train_batches = NoSingletonBatchSampler(len(datasets["train"]), batch_size)
    train_loader = DataLoader(datasets["train"], batch_sampler=train_batches, **_loader_options(num_workers))
    return (train_loader,) + tuple(evaluation_loader(datasets[status], batch_size=eval_batch_size,
                                                     num_workers=num_workers) for status in ("val", "test"))
