"""The shoal command over objects their owner truncates: `shoal ls`, `info`,
`leaks` and `top --once` read what they look at with pread, never through a
mapping, so a file cut to 0, to half, or one byte short (before the look or
while it happens, from another process in a loop) is reported as a corrupt
object that names itself, the others are still listed, and no command dies
of SIGBUS.

The tools run with SHOAL_DIR set to a private directory holding copies of
one object of each kind (array, queue, pool board, plain segment): the
truncations reach no mapping of this process."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

import shoal

BUILD = os.environ.get("SHOAL_TEST_BUILDDIR") or os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "_build", "release")
SHOAL = os.path.join(BUILD, "tools", "shoal")
KINDS = ("array", "queue", "pool", "segment")


@pytest.fixture(scope="module")
def images():
    """The bytes of one object of each kind, as made."""
    tag = f"py.{os.getpid()}.trunc"
    out = {}

    def grab(name):
        with open(f"/dev/shm/shoal.{name}", "rb") as f:
            return f.read()

    with shoal.Array.zeros((64, 64), "float64", name=tag + ".a"):
        out["array"] = grab(tag + ".a")
    with shoal.Queue(tag + ".q", capacity=8, max_msg=64) as q:
        q.put(b"m")
        out["queue"] = grab(tag + ".q")
        q.unlink()
    with shoal.Pool(1):
        boards = [json.loads(l) for l in subprocess.run(
            [SHOAL, "ls", "--json"], capture_output=True, text=True, timeout=60).stdout.splitlines()]
        board = [b["name"] for b in boards if b["kind"] == "pool" and b["creator_pid"] == os.getpid()]
        assert len(board) == 1, boards
        out["pool"] = grab(board[0])
    with shoal.Segment.create(tag + ".s", 100) as s:
        out["segment"] = grab(tag + ".s")
        s.unlink()
    return out


@pytest.fixture
def world(images):
    """A private directory with a copy of each object: {kind: path}."""
    d = tempfile.mkdtemp(prefix="shoal-trunc-", dir="/dev/shm")
    os.chmod(d, 0o700)
    paths = {}
    for kind, img in images.items():
        paths[kind] = os.path.join(d, f"shoal.t-{kind}")
        fd = os.open(paths[kind], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, img)
        os.close(fd)
    yield d, paths
    shutil.rmtree(d)


def run(d, *args):
    r = subprocess.run([SHOAL, *args], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, SHOAL_DIR=d))
    assert r.returncode >= 0, f"shoal {' '.join(args)} died of signal {-r.returncode}"
    return r.returncode, r.stdout, r.stderr


def ls(d):
    rc, out, _ = run(d, "ls", "--json")
    assert rc == 0
    return {r["name"]: r for r in map(json.loads, out.splitlines())}


@pytest.mark.parametrize("kind", KINDS)
def test_a_truncated_object_is_named_and_the_others_listed(world, images, kind):
    d, paths = world
    full = len(images[kind])
    name = f"t-{kind}"
    assert {r["kind"] for r in ls(d).values()} == {"array", "queue", "pool", "segment"}
    for cut in (0, full // 2, full - 1):
        os.truncate(paths[kind], cut)
        rows = ls(d)
        assert rows[name]["kind"] == "corrupt", (cut, rows[name])
        why = rows[name]["detail"]
        assert name in why and ("too small" if cut == 0 else "truncated") in why, why
        # The others are still read whole.
        assert {rows[f"t-{k}"]["kind"] for k in KINDS if k != kind} == set(KINDS) - {kind}
        rc, out, _ = run(d, "info", name)
        assert rc == 1 and "corrupt" in out and name in out, out
        rc, out, _ = run(d, "leaks", "--json")
        assert rc == 0 and out == "", out     # nobody is dead: no leak, none made up
        rc, out, _ = run(d, "top", "--once")
        assert rc == 0 and name in out and ("too small" if cut == 0 else "truncated") in out, out
        rc, out, _ = run(d, "top", "--once", "--json")
        row = [o for o in json.loads(out)["objects"] if o["name"] == name][0]
        assert rc == 0 and row["kind"] == "corrupt" and name in row["detail"], row
        with open(paths[kind], "r+b") as f:
            f.write(images[kind])
        assert ls(d)[name]["kind"] == kind


CUTTER = r"""
import os, random, sys, time
paths, end = sys.argv[1:-1], time.monotonic() + float(sys.argv[-1])
imgs = [open(p, "rb").read() for p in paths]
fds = [os.open(p, os.O_RDWR) for p in paths]
n = 0
while time.monotonic() < end:
    for fd, img in zip(fds, imgs):
        # Inside the first page (the headers, a ledger) and the next
        # three (a queue's table, a board's seats), where readers read.
        at = random.randrange(min(len(img), 4096 if n % 2 else 16384))
        os.ftruncate(fd, at)
        os.pwrite(fd, img[at:], at)
        n += 1
print(n)
"""


def test_tools_survive_a_racing_truncator(world):
    """Another process cuts each object at a random length and writes its
    bytes back, in a loop, while the commands read them for a second."""
    d, paths = world
    cutter = subprocess.Popen([sys.executable, "-c", CUTTER, *paths.values(), "1.0"],
                              stdout=subprocess.PIPE, text=True)
    runs = 0
    try:
        while cutter.poll() is None:
            for args in (("info", "t-array"), ("info", "t-queue"), ("info", "t-pool"),
                         ("ls",), ("info", "t-array"), ("info", "t-queue"), ("info", "t-pool"),
                         ("leaks",), ("ls", "--json"), ("top", "--once")):
                rc, out, err = run(d, *args)
                allowed = {"ls": {0}, "info": {0, 1}, "leaks": {0, 1}, "top": {0}}[args[0]]
                assert rc in allowed, (args, rc, out, err)
                runs += 1
    finally:
        cuts = int(cutter.communicate(timeout=30)[0])
    assert cutter.returncode == 0 and cuts > 0 and runs > 0
