"""benchmarks/gpu_wheels.py: a wheel packed to fit a call to the GPU machine comes back as the same wheel."""

from __future__ import annotations

import stat
import zipfile

from benchmarks.gpu_wheels import PACKED, pack, unpack


def _wheel(path, members):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for name, (data, mode) in members.items():
            info = zipfile.ZipInfo(name, (2026, 10, 31, 21, 5, 0))
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)


def test_a_packed_wheel_unpacks_to_its_members_uncompressed_with_their_permissions(tmp_path):
    members = {
        "pkg/__init__.py": (b"x = 1\n" * 500, 0o644),
        "pkg/core/server": (bytes(range(256)) * 400, 0o755),
        "pkg-1.0.dist-info/RECORD": (b"pkg/__init__.py,,\n", 0o644),
    }
    source, wheels = tmp_path / "source", tmp_path / "wheels"
    source.mkdir()
    _wheel(source / "pkg-1.0-py3-none-any.whl", members)
    _wheel(source / "plain-2.0-py3-none-any.whl", {"plain.py": (b"y = 2\n", 0o644)})
    plain_bytes = (source / "plain-2.0-py3-none-any.whl").read_bytes()

    packed = pack(wheel=source / "pkg-1.0-py3-none-any.whl")
    assert packed.name == "pkg-1.0-py3-none-any.whl" + PACKED
    assert sorted(path.name for path in source.iterdir()) == [packed.name, "plain-2.0-py3-none-any.whl"]

    unpacked = unpack(source=source, dest=wheels)
    assert [path.name for path in unpacked] == ["plain-2.0-py3-none-any.whl", "pkg-1.0-py3-none-any.whl"]
    assert unpacked[0].read_bytes() == plain_bytes
    with zipfile.ZipFile(unpacked[1]) as wheel:
        assert wheel.testzip() is None
        infos = wheel.infolist()
        assert [info.filename for info in infos] == list(members)
        for info in infos:
            data, mode = members[info.filename]
            assert wheel.read(info) == data
            assert info.compress_type == zipfile.ZIP_STORED
            assert stat.S_IMODE(info.external_attr >> 16) == mode
            assert info.date_time == (2026, 10, 31, 21, 5, 0)
