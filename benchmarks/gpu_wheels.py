"""The wheels this workplace's GPU machine lacks, fetched here and packed to fit what one call carries.

    python -m benchmarks.gpu_wheels fetch [--dest .whl] [--python-version 3.12]   # here, once
    python -m benchmarks.gpu_wheels unpack .whl WHEEL_DIR                          # there (run_gpu.sh)

The machine's image holds PyTorch, torchvision, h5py, pandas, pyarrow and most of Ray's needs,
but not pytorch-ignite, tensorboardX, Ray and jsonschema's family. Ray's wheel (79 MB) alone
outgrows the 64 MiB that a call carries, the working tree included. A wheel is a zip whose
members are compressed one by one; stored uncompressed and then compressed whole with xz, Ray's
comes to about 57 MB. `unpack` gives the wheel back byte for byte as stored, a valid wheel whose
RECORD still holds, so that pip installs it as it would the original.
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

# the versions this project's tests ran with; the machine's own packages serve the rest
WHEELS = (
    "pytorch-ignite==0.5.5",
    "tensorboardX==2.6.5",
    "ray==2.60.0",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
)
# pip matches a manylinux tag exactly, so each one the machine takes is named
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
CARRY_LIMIT = 64 * 2**20
PACKED = ".xz"


def download(*, requirements: tuple[str, ...], dest: Path, python_version: str) -> None:
    platforms = [arg for name in PLATFORMS for arg in ("--platform", name)]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--implementation", "cp"]
    command += ["--python-version", python_version, *platforms, "-d", str(dest), *requirements]
    subprocess.run(command, check=True)


def stored_copy(*, wheel: Path, dest: Path) -> None:
    """The same members, names, dates and permissions, uncompressed, so that xz sees the bytes."""
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED) as copy:
        for member in source.infolist():
            stored = zipfile.ZipInfo(member.filename, member.date_time)
            stored.external_attr = member.external_attr
            copy.writestr(stored, source.read(member))


def pack(*, wheel: Path) -> Path:
    """WHEEL as WHEEL.xz, compressed whole and renamed into place once written; WHEEL is removed."""
    stored = wheel.with_name(wheel.name + ".stored")
    packed = wheel.with_name(wheel.name + PACKED)
    partial = packed.with_name(packed.name + ".partial")
    stored_copy(wheel=wheel, dest=stored)
    with stored.open("rb") as source, lzma.open(partial, "wb", preset=9 | lzma.PRESET_EXTREME) as target:
        shutil.copyfileobj(source, target, 2**20)
    partial.replace(packed)
    stored.unlink()
    wheel.unlink()
    return packed


def unpack(*, source: Path, dest: Path) -> list[Path]:
    """Every wheel in SOURCE into DEST, the packed ones decompressed."""
    dest.mkdir(parents=True, exist_ok=True)
    wheels = []
    for path in sorted(source.glob("*.whl")) + sorted(source.glob("*.whl" + PACKED)):
        target = dest / path.name.removesuffix(PACKED)
        opener = lzma.open if path.name.endswith(PACKED) else open
        with opener(path, "rb") as wheel, target.open("wb") as copy:
            shutil.copyfileobj(wheel, copy, 2**20)
        wheels.append(target)
    return wheels


def carried_size(*, wheel_dir: Path) -> int:
    """The wheels and the files git tracks: what a call sends, near enough."""
    tracked = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout.split(b"\0")
    files = [Path(name.decode()) for name in tracked if name] + list(wheel_dir.iterdir())
    return sum(path.stat().st_size for path in files if path.is_file())


def fetch(*, dest: Path, python_version: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    download(requirements=WHEELS, dest=dest, python_version=python_version)
    for wheel in dest.glob("ray-*.whl"):
        print(f"packed {pack(wheel=wheel).name}")
    size = carried_size(wheel_dir=dest)
    print(f"a call carries {size / 2**20:.1f} MiB of at most {CARRY_LIMIT / 2**20:.0f} MiB")
    if size > CARRY_LIMIT:
        sys.exit(f"{dest} and the tracked files outgrow what one call carries; remove what the machine has")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    fetching = verbs.add_parser("fetch", help="download the wheels into --dest and pack Ray's")
    fetching.add_argument("--dest", type=Path, default=Path(".whl"))
    fetching.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default: 3.12)")
    unpacking = verbs.add_parser("unpack", help="the wheels of SOURCE, decompressed into DEST")
    unpacking.add_argument("source", type=Path)
    unpacking.add_argument("dest", type=Path)
    args = parser.parse_args()
    if args.verb == "fetch":
        fetch(dest=args.dest, python_version=args.python_version)
    else:
        for wheel in unpack(source=args.source, dest=args.dest):
            print(wheel)


if __name__ == "__main__":
    main()
