"""The shoal command: ls, info, rm, gc, their exit codes and --json."""
import json
import multiprocessing as mp
import os
import signal
import subprocess
import time

import shoal

BUILD = os.environ.get("SHOAL_TEST_BUILDDIR") or os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "_build", "release")
SHOAL = os.path.join(BUILD, "tools", "shoal")


def run(*args):
    r = subprocess.run([SHOAL, *args], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


def _exists(name):
    return os.path.exists(f"/dev/shm/shoal.{name}")


def test_usage_exit_codes():
    assert run()[0] == 2
    assert run("frobnicate")[0] == 2
    assert run("ls", "--bogus")[0] == 2
    assert run("info")[0] == 2
    assert run("rm")[0] == 2
    rc, out, _ = run("--help")
    assert rc == 0 and "shoal ls" in out


def test_ls_and_info_show_an_array(name):
    with shoal.Array.zeros((3, 5), "int16", name=name) as a:
        a.retain()
        rc, out, _ = run("ls")
        assert rc == 0
        line = [l for l in out.splitlines() if l.startswith(name + " ")]
        assert len(line) == 1 and " array " in line[0] and f"{os.getpid()}:2" in line[0]
        assert line[0].rstrip().endswith("-")          # not stale
        rc, out, _ = run("ls", "--json")
        rows = [json.loads(l) for l in out.splitlines()]
        row = [r for r in rows if r["name"] == name][0]
        assert row["kind"] == "array" and row["size"] == 30 and row["refcount"] == 2
        assert row["holders"][0]["pid"] == os.getpid() and row["holders"][0]["alive"]
        assert row["stale"] is False and row["creator_pid"] == os.getpid()
        rc, out, _ = run("info", name)
        assert rc == 0 and "int16" in out and "(3, 5)" in out and a.handle in out
        rc, out, _ = run("info", "--json", name)
        info = json.loads(out)
        assert rc == 0 and info["shape"] == [3, 5] and info["handle"] == a.handle
        assert info["dtype"] == "int16" and info["freed"] is False


def test_info_of_other_kinds_and_missing(name):
    with shoal.Segment.create(name, 100) as s:
        rc, out, _ = run("info", "--json", name)
        assert rc == 0 and json.loads(out)["kind"] == "segment"
        s.unlink()
    rc, _, err = run("info", name)
    assert rc == 1 and "no such object" in err
    assert run("info", "a/b")[0] == 1


def test_corrupt_object_is_reported(name):
    with open(f"/dev/shm/shoal.{name}", "wb") as f:
        f.write(b"garbage" * 100)
    try:
        rc, out, _ = run("ls", "--json")
        row = [json.loads(l) for l in out.splitlines() if name in l][0]
        assert rc == 0 and row["kind"] == "corrupt" and "error" in row
        rc, out, _ = run("info", name)
        assert rc == 1 and "corrupt" in out
    finally:
        os.unlink(f"/dev/shm/shoal.{name}")


def test_rm(name):
    a = shoal.Array.zeros(10, name=name)
    rc, _, _ = run("rm", name)
    assert rc == 0 and not _exists(name)
    rc, _, err = run("rm", name)
    assert rc == 1 and name in err
    a.release()      # freeing an array whose name is gone is fine


def _hold(handle, ready):
    a = shoal.Array.attach(handle)
    ready.set()
    time.sleep(60)
    a.release()


def test_gc_reaps_a_killed_holder(name):
    ctx = mp.get_context("fork")
    a = shoal.Array.zeros(10, name=name)
    ready = ctx.Event()
    p = ctx.Process(target=_hold, args=(a.handle, ready))
    p.start()
    assert ready.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    rc, out, _ = run("ls", "--json")
    row = [json.loads(l) for l in out.splitlines() if json.loads(l)["name"] == name][0]
    assert row["stale"] is True and any(not h["alive"] for h in row["holders"])
    assert "(dead)" in run("ls")[1]
    rc, out, _ = run("gc", "--json")
    assert rc == 0 and json.loads(out)["removed"] >= 0
    assert a.refcount == 1
    a.release()
    assert not _exists(name)
    # Now the holder is this process alone; the next gc of an orphan frees it.
    pid = os.fork()
    if pid == 0:
        keep = shoal.Array.zeros(10, name=name)  # noqa: F841 (held till killed)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert _exists(name)
    rc, out, _ = run("gc")
    assert rc == 0 and out.startswith("removed ")
    assert not _exists(name)


def test_version_and_help():
    rc, out, _ = run("--version")
    assert rc == 0 and out.startswith("shoal ") and shoal.__version__ in out
    rc, out, _ = run("help")
    assert rc == 0 and "shoal info" in out and "shoal top" in out and "shoal leaks" in out
    assert run("info", "--once", "x")[0] == 2          # an option of top only
    assert run("ls", "--age", "5")[0] == 2             # an option of leaks only
    assert run("top", "--interval", "zero")[0] == 2
    # Refreshes back to back, or an interval past what a poll() can wait.
    for bad in ("0.01", "100000"):
        rc, _, err = run("top", "--interval", bad)
        assert rc == 2 and "0.1 to 86400" in err


def test_a_made_up_temporary_name_cannot_drive_the_terminal():
    """Anyone may create "shoal..tmp.<pid>.*" in /dev/shm, with escape
    sequences in its name: ls, leaks and top show those bytes as '?'."""
    path = "/dev/shm/shoal..tmp.999999.\x1b]0;x\x07\x1b[2J"
    open(path, "w").close()
    try:
        outs = [run("ls")[1], run("leaks", "--age", "1")[1], run("top", "--once")[1]]
        for out in outs:
            assert "tmp.999999." in out
            assert "\x1b]0;x" not in out and "\x07" not in out
        assert "tmp.999999.?]0;x??[2J" in outs[0] and "tmp.999999.?]0;x??[2J" in outs[1]
    finally:
        os.unlink(path)


def test_top_ends_when_its_reader_goes():
    """`shoal top | head -3`: once the pipe's reader has gone, top ends
    (SIGPIPE ignored, the failed write stops it) instead of dying by a
    signal with the terminal left raw."""
    p = subprocess.Popen([SHOAL, "top", "--interval", "0.1"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    p.stdout.readline()
    p.stdout.close()
    assert p.wait(timeout=20) == 1


def test_info_by_file_name_and_handle(name):
    with shoal.Array.zeros(4, "float64", name=name) as a:
        for arg in (name, "shoal." + name, a.handle):
            rc, out, err = run("info", "--json", arg)
            assert rc == 0, err
            assert json.loads(out)["handle"] == a.handle
        # A handle of an earlier object of the same name: its generation.
        stale = a.handle[:-16] + ("0" * 15 + "1")
        rc, _, err = run("info", stale)
        assert rc == 1 and "gone" in err and name in err
        rc, _, err = run("info", "shoal:array:" + name + "@xyz")
        assert rc == 1 and "16 hex digits" in err


def test_info_of_a_queue(name):
    q = shoal.Queue(name, capacity=8, max_msg=512)
    try:
        q.put(b"a")
        q.put(b"b")
        q.get()
        with shoal.Array.zeros(10, "int64") as a:
            q.put_obj(a)                      # the queue holds a reference in transit
            rc, out, _ = run("info", "--json", name)
            info = json.loads(out)
            assert rc == 0 and info["kind"] == "queue"
            assert info["capacity"] == 8 and info["max_msg"] == 512
            assert info["depth"] == 2 and info["pushes"] == 3 and info["pops"] == 1
            assert info["live"] == 1 and info["dead"] == 0
            assert info["participants"] == [{"pid": os.getpid(), "alive": True}]
            assert info["arrays_held"] == 1 and info["arrays_held_bytes"] == 80
            rc, out, _ = run("info", name)
            assert "depth       2 (25% full)" in out and "arrays held 1" in out
            assert f"participant pid {os.getpid()}" in out
            assert q.get() == b"b"
            q.get_obj().release()
    finally:
        q.detach()
        q.unlink()


def _sq(x):
    return x * x


def test_info_of_a_pool_and_shared_memory(name):
    with shoal.Pool(2, max_tasks=3) as pool:
        assert sum(pool.map(_sq, range(12))) == 506
        boards = [json.loads(l) for l in run("ls", "--json")[1].splitlines()]
        board = [b for b in boards if b["kind"] == "pool"
                 and b["creator_pid"] == os.getpid()][0]["name"]
        for _ in range(200):
            info = json.loads(run("info", "--json", board)[1])
            if info["recycles"]["tasks"] >= 2 and len(info["workers"]) == 2 and \
                    all(w["state"] == "ready" for w in info["workers"]):
                break
            time.sleep(0.02)
        assert info["supervisor_pid"] == os.getpid() and info["supervisor_alive"]
        assert info["recycles"]["tasks"] >= 2 and info["recycles"]["died"] == 0
        assert len(info["workers"]) == 2 and info["dead"] == 0
        for w in info["workers"]:
            assert w["alive"] and w["private_bytes"] > 0 and w["tasks"] <= 3
            assert os.path.exists(f"/proc/{w['pid']}")
        rc, out, _ = run("info", board)
        assert rc == 0 and "supervisor  pid" in out and "recycles    tasks" in out
    m = shoal.SharedMemory(name=name, create=True, size=64)
    try:
        rc, out, _ = run("info", name)
        assert rc == 0 and "kind        shm (a shoal.SharedMemory" in out
        row = [json.loads(l) for l in run("ls", "--json")[1].splitlines()
               if json.loads(l)["name"] == name][0]
        assert row["kind"] == "shm"
    finally:
        m.close()
        m.unlink()
