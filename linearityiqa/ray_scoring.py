"""Score images on a Ray cluster with Ray Data: test_demo.py --ray (docs/scale.md says what a cluster needs).

Each window (--window) is one row of a Ray Dataset, scored by an actor that loads the model once, as
the plain path scores it; only paths and rows cross the cluster, not pixels. The driver gets the rows
in input order and checks that each comes once, as Ray retries what a dead worker did.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from linearityiqa.errors import ConfigError, IQAError
from linearityiqa.image_scoring import CHECKPOINT, ImageScore, ModelFile, open_model, pieces, score_files

# CPUs each actor takes on a cluster without GPUs, unless --ray_workers says how many actors
CPUS_PER_WORKER = 4


def ray_windows(
    model: ModelFile, paths: Sequence[str], *, workers: int | None, heads: bool, start: int, window: int
) -> Iterator[list[ImageScore]]:
    """image_scoring.score_windows's results, scored on the cluster of `ray_cluster` by `workers`
    actors (None: one per GPU, or one per CPUS_PER_WORKER CPUs)."""
    import ray

    if start >= len(paths):  # a partial run that wrote every row: nothing is left for the cluster
        return
    dataset = _scored_dataset(ray, model, paths, workers=workers, heads=heads, start=start, window=window)
    try:
        yield from pieces(_results(dataset, paths, start=start, window=window, heads=heads))
    except Exception as error:
        mistake = _users_mistake(error)
        if mistake is None:
            raise
        raise type(mistake)(f"on a Ray worker: {mistake}") from None


def _users_mistake(error: BaseException) -> IQAError | None:
    """The IQAError a worker raised, where `error` (Ray's wrapping of it) has one among its causes."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, IQAError):
            return error
        seen.add(id(error))
        error = getattr(error, "cause", None) or error.__cause__
    return None


@contextlib.contextmanager
def ray_cluster(address: str | None) -> Iterator[None]:
    """Connected to the Ray cluster at `address` (None: a local one, started now) while the block runs."""
    import ray

    # where nothing listens at a host:port address, say so at once (ray.init would try for minutes)
    host, _, port = (address or "").split("://")[-1].rpartition(":")  # ray://head:10001 and head:6379 alike
    if host and port.isdigit():  # not "auto", a local cluster, or a form that Ray reads its own way
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as error:
            raise ConfigError(
                f"nothing answers at {address} ({error.strerror or error}): check --ray's address and that the "
                f"cluster is up (ray status on its head node)"
            ) from None
    try:
        ray.init(
            address=address or "local",  # "local": a new cluster, not one that `ray start` began here
            include_dashboard=False,
            logging_level=logging.WARNING,
            configure_logging=True,
            log_to_driver=True,
        )
    except ConnectionError as error:
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({error}): check --ray's address") from None
    try:
        yield
    finally:
        ray.shutdown()


def _scored_dataset(ray, model: ModelFile, paths: Sequence[str], *, workers, heads, start, window):
    """The Dataset of every window's rows: index, error (bytes, empty for none), score, heads."""
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if model.kind == CHECKPOINT and model.device != "cpu" else 0
    cpus = int(resources.get("CPU", 1))
    count = workers or gpus or max(1, cpus // CPUS_PER_WORKER)
    threads = max(1, cpus // count)
    if gpus and count > gpus:
        raise ConfigError(f"--ray_workers {count}: the cluster has {gpus} GPUs, one per worker: pass at most {gpus}")
    # names as the operating system's bytes: Arrow's strings are UTF-8, and a name need not be
    items = [
        {"first": first, "paths": [os.fsencode(path) for path in paths[first : first + window]]}
        for first in range(start - start % window, len(paths), window)
    ]
    windows = ray.data.from_items(items, override_num_blocks=len(items))
    return windows.map_batches(
        WindowScorer,
        fn_constructor_kwargs={
            "model": replace(model, device="cuda" if gpus else "cpu", threads=threads),
            "heads": heads,
            "folder": os.getcwd(),
        },
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=count),
        num_gpus=1 if gpus else 0,
        num_cpus=threads,
    )


class WindowScorer:
    """A Ray actor: loads the model once, then scores a window per call, in the driver's `folder`
    where that exists (so that relative paths name the files they name there)."""

    def __init__(self, model: ModelFile, heads: bool, folder: str) -> None:
        if os.path.isdir(folder):
            os.chdir(folder)
        self.model, self.heads, self.loaded, self.failure = model, heads, None, None
        try:
            self.loaded = open_model(model)
        except IQAError as error:  # raised with each window: an actor that dies while it starts is restarted, forever
            self.failure = error

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.failure is not None:
            raise self.failure
        (first,), (names,) = batch["first"], batch["paths"]
        paths = [os.fsdecode(bytes(name)) for name in names]
        results = score_files(self.loaded, paths, workers=self.model.threads, heads=self.heads, window=len(paths))
        columns = {
            "index": np.arange(first, first + len(results), dtype=np.int64),
            "score": np.array([np.nan if result.score is None else result.score for result in results]),
            "error": np.array([os.fsencode(result.error or "") for result in results], dtype=object),
        }
        if self.heads:
            columns["heads"] = np.array([result.heads or (np.nan, np.nan, np.nan) for result in results])
        return columns


def _results(
    dataset, paths: Sequence[str], *, start: int, window: int, heads: bool
) -> Iterator[tuple[list[ImageScore], bool]]:
    """The rows from `start` on, each as a result and whether it ends its window, checked to come once each in order."""
    expected = start - start % window
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for at, index in enumerate(batch["index"].tolist()):
            if index != expected:
                raise RuntimeError(f"Ray gave the row of image {index} where image {expected}'s was due")
            expected += 1
            if index < start:  # scored again with the rest of its window, and kept already
                continue
            error = os.fsdecode(bytes(batch["error"][at]))
            outputs = tuple(batch["heads"][at].tolist()) if heads and not error else None
            score = None if error else float(batch["score"][at])
            window_ends = expected % window == 0 or expected == len(paths)  # the window, or the run
            yield [ImageScore(paths[index], score=score, error=error or None, heads=outputs)], window_ends
    if expected != len(paths):
        raise RuntimeError(f"Ray's rows ended at image {expected} of {len(paths)}")
