"""SHOAL_DIR: objects in another directory, made, listed, reaped and gc'd
there, from Python and the CLI; a refused directory; the ENOSPC detail.

The library reads SHOAL_DIR once per process, so each directory is tried in
a fresh interpreter (subprocess) with it in its environment."""
import errno
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import shoal

BUILD = os.environ.get("SHOAL_TEST_BUILDDIR") or os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "_build", "release")
SHOAL = os.path.join(BUILD, "tools", "shoal")


@pytest.fixture
def shoal_dir():
    """A fresh directory on the /dev/shm tmpfs, owner-only, removed after."""
    d = f"/dev/shm/t-pydir.{os.getpid()}"
    os.mkdir(d, 0o700)
    try:
        yield d
    finally:
        left = os.listdir(d)
        shutil.rmtree(d)
        assert not left, f"left in {d}: {left}"


def run_py(code, env_dir, timeout=120):
    env = dict(os.environ, SHOAL_DIR=env_dir)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def run_cli(env_dir, *args):
    env = dict(os.environ, SHOAL_DIR=env_dir)
    return subprocess.run([SHOAL, *args], env=env, capture_output=True, text=True, timeout=60)


def test_directory_is_the_librarys():
    assert "SHOAL_DIR" not in os.environ
    assert shoal.directory() == "/dev/shm"


def test_objects_made_listed_reaped_there(shoal_dir, name):
    make = f"""
        import os, signal, shoal
        assert shoal.directory() == {shoal_dir!r}
        os.environ["SHOAL_DIR"] = "/elsewhere"     # read once: no effect now
        assert shoal.directory() == {shoal_dir!r}
        a = shoal.Array.zeros((1000,), "float64", name=NAME)
        assert os.path.exists(f"{shoal_dir}/shoal.{{NAME}}")
        assert not os.path.exists(f"/dev/shm/shoal.{{NAME}}")
        a.numpy()[:] = 7
        # A child holds a reference and dies holding it; so does this
        # process, by exiting.
        pid = os.fork()
        if pid == 0:
            b = shoal.Array.attach(a.handle)
            assert float(b.numpy().sum()) == 7000.0
            b.retain()
            os.kill(os.getpid(), signal.SIGKILL)
        os.waitpid(pid, 0)
        os._exit(0)
    """
    run_py(f"""
        import os, shoal
        q = shoal.Queue({name + ".q"!r}, capacity=4, max_msg=64)
        assert os.path.exists({shoal_dir + "/shoal." + name + ".q"!r})
        q.detach()
    """, shoal_dir)
    run_py(f"NAME = {name + '.a'!r}\n" + textwrap.dedent(make), shoal_dir)
    r = run_cli(shoal_dir, "ls")
    assert r.returncode == 0, r.stderr
    listed = {l.split()[0]: l for l in r.stdout.splitlines()[1:]}
    assert name + ".q" in listed and "stale" in listed[name + ".a"], r.stdout
    # Not in the default directory: the CLI there does not list them.
    r = subprocess.run([SHOAL, "ls"], capture_output=True, text=True, timeout=60)
    assert name + ".a" not in r.stdout
    # shoal.reap() (Python) there takes the dead holders' array.
    out = run_py("import shoal; print(shoal.reap())", shoal_dir)
    assert int(out) >= 1
    assert not os.path.exists(f"{shoal_dir}/shoal.{name}.a")
    # `shoal gc` (the CLI) there takes the next one.
    run_py(f"NAME = {name + '.b'!r}\n" + textwrap.dedent(make), shoal_dir)
    assert os.path.exists(f"{shoal_dir}/shoal.{name}.b")
    r = run_cli(shoal_dir, "gc")
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(f"{shoal_dir}/shoal.{name}.b")
    r = run_cli(shoal_dir, "rm", name + ".q")
    assert r.returncode == 0, r.stderr
    assert not os.listdir(shoal_dir)


def test_pool_and_its_tmp_sweep_there(shoal_dir):
    """A pool's board lives there, and the fork server removes a killed
    worker's half-made object from there (it asks the library where)."""
    run_py(f"""
        import os, signal, shoal
        from concurrent.futures import wait
        def pid_of(_):
            return os.getpid()
        with shoal.Pool(1) as p:
            assert [f for f in os.listdir({shoal_dir!r}) if f.startswith("shoal.pool.")]
            pid = p.submit(pid_of, 0).result(timeout=30)
            tmp = f"{shoal_dir}/shoal..tmp.{{pid}}.00000000deadbeef"
            open(tmp, "w").close()
            os.kill(pid, signal.SIGKILL)
            assert p.submit(pid_of, 0).result(timeout=30) != pid
            assert not os.path.exists(tmp)
    """, shoal_dir)
    assert not os.listdir(shoal_dir)


@pytest.mark.parametrize("bad, code, why", [
    ("relative/dir", errno.EINVAL, "absolute"),
    ("/dev/shm/t-no-such-dir", errno.ENOENT, "does not exist"),
    ("/proc", errno.EINVAL, "tmpfs or hugetlbfs"),
])
def test_a_refused_dir_is_an_error_naming_it(bad, code, why):
    out = run_py(f"""
        import shoal
        for call in (shoal.directory, lambda: shoal.Array.zeros(4), shoal.reap):
            try:
                call()
            except OSError as e:
                print(e.errno, e.strerror)
            else:
                raise SystemExit("no error")
    """, bad)
    lines = out.splitlines()
    assert len(lines) == 3, out
    for line in lines[:2]:
        assert line.startswith(f"{code} ") and why in line and "SHOAL_DIR" in line, line
    assert lines[2].startswith(f"{code} "), lines[2]
    r = run_cli(bad, "ls")
    assert r.returncode == 1 and why in r.stderr, r.stderr


def test_enospc_names_the_directory_and_its_free_space():
    st = os.statvfs("/dev/shm")
    free = st.f_bavail * st.f_frsize
    with pytest.raises(OSError) as ei:
        shoal.Array.empty((free + (1 << 30),), "uint8")
    e = ei.value
    assert e.errno == errno.ENOSPC
    msg = str(e)
    assert "in /dev/shm:" in msg and " free of " in msg and "SHOAL_DIR" in msg, msg
    assert str(free + (1 << 30)) in msg, msg
