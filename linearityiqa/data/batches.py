"""Batches of images of one size, as evaluation (IQAdataset.evaluation_loader) and scoring
(image_scoring.score_files) make them: whole images of unequal sizes cannot share a batch."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from linearityiqa.errors import ConfigError


def batches_by_size(sizes: Sequence[Hashable | None], batch_size: int) -> list[list[int]]:
    """Indices of `sizes` (each image's (height, width), say) grouped by size and cut into batches of
    at most `batch_size`: sizes in order of first appearance, indices in order within a size, so
    images of one size are batched in their own order. A size None (an image that cannot be read)
    puts its index in no batch."""
    if batch_size < 1:
        raise ConfigError(f"evaluation batch size {batch_size} is not positive: pass --eval_batch_size 1 or more")
    groups: dict[Hashable, list[int]] = {}
    for index, size in enumerate(sizes):
        if size is not None:
            groups.setdefault(size, []).append(index)
    return [
        group[start : start + batch_size] for group in groups.values() for start in range(0, len(group), batch_size)
    ]
