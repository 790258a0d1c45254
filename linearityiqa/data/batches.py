"""Batches of images of one size: whole images of unequal sizes cannot share a batch.

Evaluation (IQAdataset.evaluation_loader) and scoring (image_scoring.score_files) both batch this way.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from linearityiqa.errors import ConfigError


def batches_by_size(sizes: Sequence[Hashable | None], batch_size: int) -> list[list[int]]:
    """Indices of `sizes` grouped by size and cut into batches of at most `batch_size`.

    Sizes come in order of first appearance and indices in order within a size, so images of
    one size are batched in their own order. An index whose size is None (an image that cannot
    be read) is in no batch.

    Args:
        sizes: each image's size, e.g. (height, width), or None.
        batch_size: most indices per batch, at least 1.
    """
    if batch_size < 1:
        raise ConfigError(f"evaluation batch size {batch_size} is not positive: pass --eval_batch_size 1 or more")
    groups: dict[Hashable, list[int]] = {}
    for index, size in enumerate(sizes):
        if size is not None:
            groups.setdefault(size, []).append(index)
    return [
        group[start : start + batch_size] for group in groups.values() for start in range(0, len(group), batch_size)
    ]
