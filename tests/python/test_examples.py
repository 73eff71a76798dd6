"""The examples run and say what they promise: the README's demo (small),
the timeline picture, hello.c and share.c. They are built by make; this keeps them working."""
import csv
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, os.pardir, os.pardir, "examples", "demo.py")
TIMELINE = os.path.join(HERE, os.pardir, os.pardir, "examples", "timeline.py")
PNG = b"\x89PNG\r\n\x1a\n"
# A fresh worker under AddressSanitizer already has ~130 MiB private.
LEAK, LIMIT = ("100", "300") if "libasan" in os.environ.get("LD_PRELOAD", "") else ("30", "60")
BUILD = os.environ.get("SHOAL_TEST_BUILDDIR", "")


def _run(cmd, timeout=300):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == "", r.stderr
    return r.stdout


def _arrays():
    return {f for f in os.listdir("/dev/shm") if f.startswith("shoal.a.")}


def test_demo_recycles_and_loses_nothing(tmp_path):
    before = _arrays()
    png = tmp_path / "demo.png"
    out = _run([sys.executable, DEMO, "--size", "64", "--workers", "2", "--tasks", "12",
                "--leak", LEAK, "--limit", LIMIT, "--timeline", str(png)])
    assert "(right)" in out
    assert "tasks lost: 0" in out
    recycles = int(re.search(r"recycles: (\d+)", out).group(1))
    assert recycles >= 2, out          # the leak crosses the limit: workers were replaced
    assert "multiprocessing.Pool(maxtasksperchild=" in out
    assert "tasks carry its handle" in out
    assert _arrays() <= before          # its array was freed at the end
    # Its timeline: the picture, where it says, and the samples beside it,
    # every recycle among them.
    assert f"timeline: {png} (" in out
    assert png.read_bytes()[:8] == PNG
    with open(tmp_path / "demo.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sum(r["event"] == "recycle" and r["reason"] == "memory" for r in rows) >= recycles
    # (A replacement the end of the run left not ready has no position.)
    assert {r["label"] for r in rows} - {"worker, not ready"} == {"parent", "worker 0",
                                                                  "worker 1"}


def test_timeline_example_draws_every_reason(tmp_path):
    png = tmp_path / "t.png"
    out = _run([sys.executable, TIMELINE, str(png), "--size", "16", "--tasks", "24",
                "--leak", LEAK, "--limit", LIMIT, "--csv", str(tmp_path / "t.csv")])
    assert png.read_bytes()[:8] == PNG and len(png.read_bytes()) < 100 * 1024
    why = re.search(r"recycles (\{.*?\})", out).group(1)
    assert "'died': 1" in why and "'memory'" in why, out
    assert (tmp_path / "t.csv").exists()


def test_demo_help_and_bad_arguments():
    assert "--size" in _run([sys.executable, DEMO, "--help"])
    r = subprocess.run([sys.executable, DEMO, "--workers", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "positive" in r.stderr


@pytest.mark.parametrize("prog,expect", [
    (["examples/hello"], r"sum of 1000 x 1000 doubles = 1000000"),
    (["examples/share", "--size", "16"], r"RssShmem +16 MiB"),
])
def test_c_examples(prog, expect):
    assert BUILD, "SHOAL_TEST_BUILDDIR is set by tests/python/run-pytest"
    out = _run([os.path.join(BUILD, prog[0])] + prog[1:])
    assert re.search(expect, out), out
