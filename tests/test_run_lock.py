"""run_lock: a lock names its process by id, start time and host, so that a lock left by a
killed run is taken over even when its process id has been given to another process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from linearityiqa.errors import ConfigError
from linearityiqa.records.run_lock import Owner, _owner, _start_time, run_lock, this_process

pytestmark = pytest.mark.reliability


@pytest.fixture
def sleeper():
    """A live process that is not a run."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def write_lock(output, text):
    with open(output + ".lock", "w") as file:
        file.write(text)


def test_a_held_lock_names_this_process_and_is_removed_at_the_end(tmp_path):
    output = str(tmp_path / "run")
    with run_lock([output]):
        pid, start, host = open(output + ".lock").read().split()
        assert (int(pid), host) == (os.getpid(), socket.gethostname())
        assert start == _start_time(os.getpid()) and start.isdigit()  # this is Linux: /proc has it
        assert _owner(output + ".lock") == this_process()
    assert not os.path.exists(output + ".lock")


def test_a_live_run_keeps_its_lock_and_the_message_says_how_to_clear_it(tmp_path, sleeper):
    output = str(tmp_path / "run")
    write_lock(output, f"{sleeper.pid} {_start_time(sleeper.pid)} {socket.gethostname()}")
    with pytest.raises(ConfigError) as error:
        with run_lock([output]):
            pass
    assert str(error.value) == (
        f"another run (process {sleeper.pid}) is writing {output}: wait for it to end, "
        f"or give this run outputs of its own (--trained_model_file, --results_dir); "
        f"if no run is writing it, delete {output}.lock"
    )


def test_a_process_id_given_to_another_process_since_does_not_hold_the_lock(tmp_path, sleeper):
    output = str(tmp_path / "run")
    started = int(_start_time(sleeper.pid))
    write_lock(output, f"{sleeper.pid} {started - 1} {socket.gethostname()}")  # the killed run started earlier
    with run_lock([output]):
        assert _owner(output + ".lock") == this_process()


def test_a_lock_of_another_host_holds_as_it_cannot_be_checked_from_here(tmp_path):
    output = str(tmp_path / "run")
    write_lock(output, "1 12345 another-machine")
    assert _owner(output + ".lock") == Owner(1, "12345", "another-machine")
    with pytest.raises(ConfigError, match="another run \\(process 1 on another-machine\\) is writing"):
        with run_lock([output]):
            pass


@pytest.mark.parametrize(
    "text, holds",
    [("{pid}", True), ("{pid} - {host}", True), ("", False), ("garbled", False)],
    ids=["process id alone", "no start time", "empty", "garbled"],
)
def test_locks_without_a_start_time_go_by_the_process_id(tmp_path, sleeper, text, holds):
    output = str(tmp_path / "run")
    write_lock(output, text.format(pid=sleeper.pid, host=socket.gethostname()))
    if holds:
        with pytest.raises(ConfigError, match=f"process {sleeper.pid}"):
            with run_lock([output]):
                pass
    else:
        with run_lock([output]):
            assert _owner(output + ".lock") == this_process()
