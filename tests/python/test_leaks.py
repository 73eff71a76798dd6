"""shoal.leaks() and `shoal leaks`: one judgment (lib/leaks.c), two faces.
Each kind of leak is made for real (killed holders, a queue nobody reads,
an old reference, a creator that died mid-create) and checked in both."""
import ctypes
import json
import os
import signal
import subprocess
import time

import pytest

import shoal
import importlib

leaks_mod = importlib.import_module("shoal.leaks")

BUILD = os.environ.get("SHOAL_TEST_BUILDDIR") or os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "_build", "release")
SHOAL = os.path.join(BUILD, "tools", "shoal")


def cli(*args, env=None):
    return subprocess.run([SHOAL, "leaks", *args], capture_output=True, text=True, timeout=60,
                          env=env)


_HDR_SIZE = 128  # every object's common header (SHOAL__HDR_SIZE, lib/internal.h)


def mine(name, found):
    return [l for l in found if l.name == name or l.name.startswith(name + ".")]


def _in_child(fn):
    """Run fn in a forked child that is then SIGKILLed: a holder that dies
    without releasing anything. Its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    return pid


def test_dead_holders_listed_then_reaped(name):
    def make():
        a = shoal.Array.zeros((256, 1024), "float64", name=name)
        a.numpy().fill(1.0)
        os.kill(os.getpid(), signal.SIGKILL)      # still holding it
    pid = _in_child(make)
    found = mine(name, shoal.leaks())
    assert len(found) == 1, found
    leak = found[0]
    assert leak.reason == "dead-holders" and leak.references == 1
    assert leak.creator_pid == pid and not leak.creator_alive and leak.creator_command is None
    assert leak.bytes >= 2 << 20                 # the 2 MiB written, at least
    assert 0 <= leak.age < 60 and leak.holder_pid is None
    r = cli("--json")
    assert r.returncode == 1, r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    row = [x for x in rows if x["name"] == name][0]
    assert row["reason"] == "dead-holders" and row["bytes"] == leak.bytes
    assert row["creator_pid"] == pid and row["fix"] == "shoal gc"
    r = cli()
    line = [l for l in r.stdout.splitlines() if l.startswith(name + " ")][0]
    assert "dead-holders" in line and "(dead)" in line and "shoal gc" in line
    assert r.stdout.splitlines()[-1].endswith("to reclaim")
    assert shoal.reap() >= 1
    assert not mine(name, shoal.leaks())


def test_array_held_only_by_an_unread_queue(name):
    qname, aname = name + ".q", name + ".a"

    def send():
        q = shoal.Queue(qname, capacity=4, max_msg=512)
        a = shoal.Array.zeros(1000, "int64", name=aname)
        q.put_obj(a)                 # the queue now holds a reference too
        a.release()
    _in_child(send)
    try:
        found = {l.name: l for l in mine(name, shoal.leaks())}
        assert set(found) == {aname}, found
        assert found[aname].reason == "unread-queue" and found[aname].references == 1
        # The reaper leaves it: the queue exists, and holds it.
        shoal.reap()
        assert [l.reason for l in mine(name, shoal.leaks())] == ["unread-queue"]
        # A live reader makes it no leak; looking did not join the queue.
        q = shoal.Queue.open(qname)
        q.put(b"x")
        q.get()
        assert not mine(name, shoal.leaks())
        q.detach()
    finally:
        shoal.unlink(qname)
        shoal.reap()                 # the queue is gone: so is its reference
    assert not os.path.exists(f"/dev/shm/shoal.{aname}")


def test_a_queue_that_cannot_be_observed_still_holds_its_arrays(name):
    """A queue whose header fails observe (another library's layout, a
    corrupt line) is counted as a holder, as the reaper counts it: the
    arrays it holds are not called dead-holders leaks that `shoal gc`
    would then not free."""
    qname, aname = name + ".q", name + ".a"

    def send():
        q = shoal.Queue(qname, capacity=4, max_msg=512)
        a = shoal.Array.zeros(1000, "int64", name=aname)
        q.put_obj(a)
        a.release()
    _in_child(send)
    try:
        with open(f"/dev/shm/shoal.{qname}", "r+b") as f:
            f.seek(_HDR_SIZE + 4)         # the queue header's capacity
            f.write((3).to_bytes(4, "little"))  # not a power of two
        reasons = {l.name: l.reason for l in mine(name, shoal.leaks())}
        assert reasons.get(aname) != "dead-holders", reasons
        shoal.reap()
        assert os.path.exists(f"/dev/shm/shoal.{aname}")  # the reaper agrees
    finally:
        shoal.unlink(qname)
        shoal.reap()
    assert not os.path.exists(f"/dev/shm/shoal.{aname}")


def test_old_reference_of_a_live_process(name):
    with shoal.Array.zeros(4096, "uint8", name=name):
        assert not mine(name, shoal.leaks(age=0))        # 0: none reported
        assert not mine(name, shoal.leaks(age=3600))     # younger than that
        time.sleep(0.3)
        found = mine(name, shoal.leaks(age=0.2))
        assert len(found) == 1
        leak = found[0]
        assert leak.reason == "old-reference" and leak.holder_pid == os.getpid()
        assert leak.creator_alive and "python" in leak.creator_command
        assert "python" in leak.holder_command and leak.references == 1
        r = cli("--age", "0.2", "--json")
        row = [json.loads(l) for l in r.stdout.splitlines() if name in l][0]
        assert r.returncode == 1 and row["holder_pid"] == os.getpid()
        assert row["reason"] == "old-reference"
        with pytest.raises(ValueError):
            shoal.leaks(age=-1)


def test_dead_creator_tmp_file_and_errors(tmp_path):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    tmp = f"shoal..tmp.{pid}.leaktest{os.getpid()}"
    with open(f"/dev/shm/{tmp}", "wb") as f:
        f.write(b"\0" * 8192)
    try:
        found = [l for l in shoal.leaks() if l.name == tmp[len("shoal."):]]
        assert len(found) == 1 and found[0].reason == "dead-create"
        assert found[0].creator_pid == pid and found[0].bytes == 8192
    finally:
        os.unlink(f"/dev/shm/{tmp}")
    # The C call's own error: a NULL array with room claimed.
    with pytest.raises(OSError) as e:
        leaks_mod._leaks(0, None, 1)
    assert e.value.errno == 22
    assert leaks_mod._leaks(0, ctypes.POINTER(leaks_mod._Leak)(), 0) >= 0
    # An empty directory: no leak, exit 0. A refused one: exit 3.
    d = f"/dev/shm/t-leaks.{os.getpid()}"
    os.mkdir(d, 0o700)
    try:
        r = cli(env=dict(os.environ, SHOAL_DIR=d))
        assert r.returncode == 0 and r.stdout == "0 leaks, 0 B to reclaim\n", r
    finally:
        os.rmdir(d)
    r = cli(env=dict(os.environ, SHOAL_DIR="relative/dir"))
    assert r.returncode == 3 and "absolute" in r.stderr
    assert cli("--age", "-4").returncode == 2
    assert cli("extra").returncode == 2
