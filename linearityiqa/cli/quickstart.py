"""`python main.py --quickstart`: the whole pipeline on synthetic data, on a CPU, in minutes (README's Quick start).

Each step is the command a user runs on the real data sets, with the synthetic paths filled in: it is printed, then run
as it reads, in a process of its own. The data sets are made once under data/quickstart; later runs reuse them.
"""

from __future__ import annotations

import os
from pathlib import Path

from linearityiqa.cli.console import command_line, run_script
from linearityiqa.data.info_builders import clive_info_from_release, koniq_info_from_csv
from linearityiqa.data.info_files import write_info
from linearityiqa.data.synthetic import write_clive_layout, write_koniq_layout

ROOT = Path("data") / "quickstart"
CHECKPOINT = str(ROOT / "checkpoints" / "quickstart.pth")
SCORES = ROOT / "scores.csv"
# Many small images: the distortions are local statistics that 48 x 48 pixels show as well as
# large photos, and more scenes teach the network distortion apart from content. On two CPU
# cores, resnet18 from scratch reaches a test SROCC above 0.8 in four epochs, a few minutes
# (tests/test_learning.py).
# Images this small are evaluated fastest in batches (-ebs), unlike photos on a CPU.
KONIQ = dict(count=3000, width=48, height=48, seed=0)
# CLIVE at its real size: as in the paper, the model meets it resized to its training size.
CLIVE = dict(count=100, width=500, height=500, seed=1)
TRAINING = (
    "--arch resnet18 --pretrained none --loss_type norm-in-norm --p 1 --q 2 "
    f"--resize -rs_h {KONIQ['height']} -rs_w {KONIQ['width']} "
    "-bs 16 -e 4 --lr 1e-3 --ft_lr_ratio 1 -olrd 0.1 --seed 1 --num_workers 0 -ebs 32"
).split()


def synthetic_koniq(root: Path, *, count: int, width: int, height: int, seed: int, make: bool = True) -> list[str]:
    """A synthetic KonIQ-10k under `root` (made on first use unless `make` is False) as main.py options."""
    info, download = root / "KonIQ-10kinfo.mat", root / "koniq10k"
    if make and not info.is_file():
        sets = write_koniq_layout(download, count=count, width=width, height=height, seed=seed)
        write_info(info, koniq_info_from_csv(sets))
    return _data_set_options("KonIQ-10k", info, download / "1024x768", root)


def synthetic_clive(root: Path, *, count: int, width: int, height: int, seed: int, make: bool = True) -> list[str]:
    """A synthetic CLIVE in `root` (made on first use unless `make` is False) as main.py or test_dataset.py options."""
    info, release = root / "CLIVEinfo.mat", root / "ChallengeDB_release"
    if make and not info.is_file():
        write_clive_layout(release, count=count, width=width, height=height, seed=seed)
        write_info(info, clive_info_from_release(release))
    return _data_set_options("CLIVE", info, release / "Images", root)


def _data_set_options(dataset: str, info: Path, images: Path, root: Path) -> list[str]:
    return ["--dataset", dataset, "--data_info", str(info), "--im_dir", str(images), "--cache_dir", str(root / "cache")]


def steps(koniq: list[str], clive: list[str]) -> list[tuple[str, str, list[str]]]:
    """(title, script, its options) of each step, on the synthetic data sets' options."""
    model = ["--trained_model_file", CHECKPOINT]
    images = ROOT / "ChallengeDB_release" / "Images"
    return [
        ("train on the synthetic KonIQ-10k", "main.py", TRAINING + koniq + model),
        ("test across data sets on the synthetic CLIVE", "test_dataset.py", clive + model),
        ("score one image", "test_demo.py", ["--img", str(sorted(images.glob("*.bmp"))[0])] + model),
        ("score a folder into a CSV file", "test_demo.py", ["--img", str(images), "-o", str(SCORES)] + model),
    ]


def run_quickstart() -> int:
    """Make the data sets, then run each step as its own command; the exit status of the first that fails, or 0."""
    os.makedirs(ROOT, exist_ok=True)
    koniq, clive = synthetic_koniq(ROOT, **KONIQ), synthetic_clive(ROOT, **CLIVE)
    for title, script, argv in steps(koniq, clive):
        print(f"\n== {title}\n   {command_line(script, argv)}", flush=True)
        status = run_script(script, argv)
        if status:
            return status
    print(f"\nquick start done: checkpoint {CHECKPOINT}, scores {SCORES}, logs in runs/")
    return 0
