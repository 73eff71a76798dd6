"""`shoal top`: in a real terminal (tmux), its figures checked against the
processes the test made; `q` quits and the terminal is restored. And
--once / --json for scripts, with rates between two refreshes.

Every process here runs with SHOAL_DIR set to a private directory (on
the /dev/shm tmpfs), so the view holds this test's objects only."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

BUILD = os.environ.get("SHOAL_TEST_BUILDDIR") or os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "_build", "release")
SHOAL = os.path.join(BUILD, "tools", "shoal")

# The first process makes an 8 MiB array (written, so resident) and a
# queue, pushes 5 messages; the second attaches the array and pops one;
# a third attaches it and is killed (a dead holder: the array is stale).
OWNER = """
import shoal, sys
a = shoal.Array.zeros((1024, 1024), "float64", name="top.a")
a.numpy()[:] = 1.0
q = shoal.Queue("top.q", capacity=16, max_msg=64)
for _ in range(5):
    q.put(b"m")
print(a.handle, flush=True)
sys.stdin.read()
"""
READER = """
import shoal, sys
a = shoal.Array.attach(sys.argv[1])
s = float(a.numpy().sum())
q = shoal.Queue.open("top.q")
q.get()
print("ready", flush=True)
sys.stdin.read()
"""
DIES = """
import os, shoal, sys
a = shoal.Array.attach(sys.argv[1])
os.kill(os.getpid(), 9)
"""


@pytest.fixture
def world():
    d = tempfile.mkdtemp(prefix="shoal-top-", dir="/dev/shm")
    os.chmod(d, 0o700)
    env = dict(os.environ, SHOAL_DIR=d)
    procs = []

    def py(src, *args):
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(src), *args], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    try:
        owner = py(OWNER)
        handle = owner.stdout.readline().strip()
        assert handle.startswith("shoal:array:top.a@"), handle
        reader = py(READER, handle)
        assert reader.stdout.readline().strip() == "ready"
        dies = py(DIES, handle)
        dies.wait(30)
        yield d, env, owner.pid, reader.pid
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(30)
        shutil.rmtree(d)


def _tmux(sock, *args):
    return subprocess.run(["tmux", "-S", sock, *args], capture_output=True, text=True,
                          timeout=30)


def _mib(text):
    v, unit = text.split()
    return float(v) * {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]


def test_top_in_tmux(world, tmp_path):
    d, env, owner, reader = world
    sock = str(tmp_path / "tmux.sock")
    done = tmp_path / "stty.txt"
    cmd = (f"SHOAL_DIR={d} {SHOAL} top --interval 0.2; stty -a > {done}.tmp; "
           f"mv {done}.tmp {done}; sleep 60")
    tenv = dict(env, TERM="xterm")
    r = subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x", "150",
                        "-y", "40", "-s", "top", cmd], env=tenv, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    try:
        screen = ""
        for _ in range(200):
            screen = _tmux(sock, "capture-pane", "-p", "-t", "top").stdout
            if "top.q" in screen and "2 processes" in screen:
                break
            time.sleep(0.05)
        assert "shoal top - " + d in screen, screen
        assert _tmux(sock, "display-message", "-p", "-t", "top",
                     "#{alternate_on}").stdout.strip() == "1"
        rows = {}
        for l in screen.splitlines():
            m = re.match(r"\s*(\d+) (.{28}) +(\S+ \S+) +(\S+ \S+) +(\S+ \S+) +(\d+) +(\d+) +(\d+)$", l)
            if m:
                rows[int(m.group(1))] = m.groups()
        # Both live processes, nobody else: the killed one holds nothing.
        assert set(rows) == {owner, reader}, screen
        for pid in (owner, reader):
            _, command, private, pss, shared, arrays, queues, pools = rows[pid]
            assert "python" in command
            assert (arrays, queues, pools) == ("1", "1", "0"), rows[pid]
            # Both read all 8 MiB of the array: it is mapped in each.
            assert _mib(shared) >= 7.9, rows[pid]
            assert _mib(pss) >= 4, rows[pid]      # half the array, at least
            assert _mib(private) > 1, rows[pid]   # an interpreter's heap
        a = [l for l in screen.splitlines() if l.startswith("top.a ")][0]
        assert re.search(r"array +8\.0 MiB +2 +1 .*STALE 1 dead holder", a), a
        q = [l for l in screen.splitlines() if l.startswith("top.q ")][0]
        assert re.search(r"queue .* 2 +0 .*depth 4/16 .*redelivered 0", q), q
        # gc drops the dead holder's reference; the live ones keep the array.
        assert "1 stale object: `shoal gc` reclaims it, freeing 0 B" in screen
        # The stale row stands out (bold red).
        styled = _tmux(sock, "capture-pane", "-p", "-e", "-t", "top").stdout
        line = [l for l in styled.splitlines() if "top.a " in l][0]
        lead = line[:line.index("top.a ")]
        assert "31m" in lead and re.search(r"\[(0;)?1m", lead), repr(line)    # bold red
        line = [l for l in styled.splitlines() if "top.q " in l][0]
        assert "31m" not in line[:line.index("top.q ")], repr(line)
        _tmux(sock, "send-keys", "-t", "top", "q")
        for _ in range(200):
            if done.exists():
                break
            time.sleep(0.05)
        assert done.exists(), _tmux(sock, "capture-pane", "-p", "-t", "top").stdout
        stty = done.read_text()
        # Canonical input and echo are back; the main screen, the cursor.
        assert re.search(r"(^|\s)icanon(\s|$)", stty) and re.search(r"(^|\s)echo(\s|$)", stty)
        assert _tmux(sock, "display-message", "-p", "-t", "top",
                     "#{alternate_on}").stdout.strip() == "0"
        assert _tmux(sock, "display-message", "-p", "-t", "top",
                     "#{cursor_flag}").stdout.strip() == "1"
    finally:
        _tmux(sock, "kill-server")


def test_top_once_and_json_rates(world):
    d, env, owner, reader = world
    r = subprocess.run([SHOAL, "top", "--once"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "`shoal gc` reclaims it" in r.stdout
    assert "in -/s" in r.stdout         # one frame: no rate yet
    # Two refreshes 0.5 s apart while messages go through: the second
    # frame's rates are the counters' differences over that time. The
    # pusher runs from before the first frame until after the second (a
    # fixed count of messages could all go before the first frame on a
    # loaded machine).
    pusher = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import shoal, sys, time
        q = shoal.Queue.open("top.q")
        q.put(b"x"); q.get()
        print("go", flush=True)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            q.put(b"x"); q.get(); time.sleep(0.01)
        """)], env=env, stdout=subprocess.PIPE, text=True)
    p = None
    try:
        assert pusher.stdout.readline() == "go\n"
        p = subprocess.Popen([SHOAL, "top", "--json", "--interval", "0.5"], env=env,
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        first = json.loads(p.stdout.readline())
        second = json.loads(p.stdout.readline())
    finally:
        pusher.kill()
        pusher.wait(30)
        if p is not None:
            p.send_signal(signal.SIGINT)
            assert p.wait(30) == 0
    q1 = [o for o in first["objects"] if o["name"] == "top.q"][0]
    q2 = [o for o in second["objects"] if o["name"] == "top.q"][0]
    assert q1["push_rate"] is None
    pushed = q2["pushes"] - q1["pushes"]
    assert pushed > 0 and q2["pops"] - q1["pops"] == pushed
    # The rate is per second of the refresh interval (0.5 s and the refresh).
    assert 0.5 * pushed < q2["push_rate"] <= 2.2 * pushed, (q2, pushed)
    assert second["stale"] == 1 and second["reclaim"] == "shoal gc"
    procs = {p["pid"]: p for p in second["processes"]}
    assert owner in procs and reader in procs
    assert procs[owner]["arrays"] == 1 and procs[owner]["array_bytes"] == 8 << 20
    assert procs[owner]["shared_bytes"] >= 8 << 20 and procs[owner]["pss"] > 0
    a = [o for o in second["objects"] if o["name"] == "top.a"][0]
    assert a["live"] == 2 and a["dead"] == 1 and a["stale"] and a["kind"] == "array"


def _wait_for(pred, what, sock):
    for _ in range(200):
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: " + _tmux(sock, "capture-pane", "-p", "-t", "sh").stdout)


def test_top_ctrl_z_fg_and_ctrl_backslash(tmp_path):
    """In a job-control shell: Ctrl-Z gives the shell its terminal back
    (the main screen; bash restores its own modes for a stopped job), fg
    takes it again, and Ctrl-\\ (SIGQUIT) ends top with canonical input and
    echo restored by top itself (it exits 0, so bash keeps what it left)."""
    d = tempfile.mkdtemp(prefix="shoal-top-", dir="/dev/shm")
    os.chmod(d, 0o700)
    sock = str(tmp_path / "tmux.sock")
    stty = [tmp_path / "stty1.txt", tmp_path / "stty2.txt"]
    env = dict(os.environ, TERM="xterm", SHOAL_DIR=d, PS1="$ ")
    r = subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x", "120",
                        "-y", "30", "-s", "sh", "bash --norc --noprofile -i"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr

    def alt():
        return _tmux(sock, "display-message", "-p", "-t", "sh", "#{alternate_on}").stdout.strip()

    def pane():
        return _tmux(sock, "capture-pane", "-p", "-t", "sh").stdout

    try:
        _tmux(sock, "send-keys", "-t", "sh", f"{SHOAL} top --interval 0.2", "Enter")
        _wait_for(lambda: alt() == "1" and "shoal top - " in pane(), "top never drew", sock)
        _tmux(sock, "send-keys", "-t", "sh", "C-z")
        _wait_for(lambda: alt() == "0" and "Stopped" in pane(), "Ctrl-Z did not stop top", sock)
        _tmux(sock, "send-keys", "-t", "sh", f"stty -a > {stty[0]}.tmp; mv {stty[0]}.tmp {stty[0]}", "Enter")
        _wait_for(stty[0].exists, "no stty after Ctrl-Z", sock)
        _tmux(sock, "send-keys", "-t", "sh", "fg", "Enter")
        _wait_for(lambda: alt() == "1" and "shoal top - " in pane(), "fg did not bring top back",
                  sock)
        _tmux(sock, "send-keys", "-t", "sh", "C-\\")
        _wait_for(lambda: alt() == "0", "Ctrl-\\ did not end top", sock)
        _tmux(sock, "send-keys", "-t", "sh", f"echo rc=$? > {stty[1]}.rc; stty -a > {stty[1]}.tmp; mv {stty[1]}.tmp {stty[1]}",
              "Enter")
        _wait_for(stty[1].exists, "no stty after Ctrl-\\", sock)
        for f in stty:
            text = f.read_text()
            assert re.search(r"(^|\s)icanon(\s|$)", text) and re.search(r"(^|\s)echo(\s|$)", text), text
        # Ended by its own way out (the loop ends, top exits 0), so what
        # the shell found is what top left: it restored the terminal.
        assert open(f"{stty[1]}.rc").read().strip() == "rc=0", pane()
        assert "shoal top - " not in pane()
    finally:
        _tmux(sock, "kill-server")
        shutil.rmtree(d)
