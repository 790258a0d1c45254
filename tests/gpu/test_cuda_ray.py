"""test_demo.py --ray on the GPU: a local Ray cluster started as a user starts one finds the GPU,
gives it to one worker and scores as test_demo.py does in float32. run_gpu.sh runs this file
last: a cluster that hangs would keep the other GPU tests from running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import local_ray_cluster
from gpu_helpers import assert_close_predictions, demo, exact_float32, read_demo

ROOT = Path(__file__).resolve().parents[2]
# seconds a command may take before the test fails rather than hangs
LIMIT = 120


@pytest.fixture
def ray_cluster(tmp_path):
    """A local Ray cluster started as a user starts one, which finds the machine's GPUs itself:
    its address. Where Ray is not installed, the test is skipped."""
    pytest.importorskip("ray")
    with local_ray_cluster(tmp_path) as address:
        yield address


def test_ray_scores_on_the_one_gpu_as_test_demo_does(device, o1_run, koniq_60, tmp_path, ray_cluster):
    """test_demo.py --ray on a cluster of this machine: an actor per GPU (one more is refused, for
    want of a GPU), scoring under test_demo.py's GPU defaults as float32 does."""
    address = ray_cluster
    _, _, folder, _ = o1_run
    images = koniq_60[koniq_60.index("--im_dir") + 1]
    model = ["--img", images, "-modelfile", str(folder / "model.pth"), "--device", device.type]
    command = [sys.executable, str(ROOT / "test_demo.py"), *model, "--ray", address, "--window", "16"]

    def scored(output: Path, *more: str) -> subprocess.CompletedProcess:
        run = [*command, "-o", str(output), *more]
        return subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=LIMIT)

    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        refused = scored(tmp_path / "more.csv", "--ray_workers", str(gpus + 1))
        assert refused.returncode == 1 and f"the cluster has {gpus} GPUs, one per worker" in refused.stderr
    done = scored(tmp_path / "ray.csv")
    assert done.returncode == 0, done.stderr
    with exact_float32():
        demo(model, tmp_path / "float32.csv", "-optl", "O0", "-ebs", "1")
    plain, on_ray = read_demo(tmp_path / "float32.csv"), read_demo(tmp_path / "ray.csv")
    assert on_ray.keys() == plain.keys() and len(plain) == 60
    names = sorted(plain)
    assert_close_predictions(np.array([on_ray[n] for n in names]), np.array([plain[n] for n in names]))
