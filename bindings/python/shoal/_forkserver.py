"""shoal._forkserver: the single-threaded process that forks a Python
pool's workers (start method "fork"), lib/forkserver.c's twin.

    pool.py's hooks (supervisor, exit watcher threads)
        ForkServer.spawn / .join -> socketpair (one request at a time)
            -> _serve (the server process) -> os.fork() -> _child -> target
                                           -> os.waitpid -> the status back

A worker os.fork()ed from the pool's supervisor thread, at any moment,
would inherit whatever the process's other threads held then: a lock, or a
pipe another thread is handing to subprocess (whose reader then waits for
EOF until that worker ends). So the pool forks once, when it is made,
before libshoal starts its threads: the child keeps fds 0-2 and its end of
a socketpair, closes every other fd (each number left taken by a
placeholder on which any read or write fails, see _close_all_but), and
from then on os.fork()s each worker on request. Workers start with the
memory the process had at Pool(), in the thread that called Pool().

Requests, one at a time under a lock (the spawn and join hooks run on
libshoal's supervisor and exit watcher threads): SPAWN seat, gen, board
-> pid or -errno; JOIN pid -> the wait status or -errno. The server
collects a worker's exit status only when asked, so its zombie pins the
pid the pool watches with a pidfd; a worker killed by a signal may have
died inside a create, so its "shoal..tmp.<pid>.*" files (in shoal_dir())
are removed
before its exit status is collected. On EOF
or EXIT (the pool process died, or the pool was destroyed), or once its
parent is no longer the pool process (a child the pool process forked may
hold the socket open), the server SIGKILLs and waits for what it still
has, and exits; workers have PR_SET_PDEATHSIG towards the server.
"""
import ctypes
import errno
import glob
import multiprocessing.util
import os
import signal
import socket
import struct
import sys
import threading
import traceback

_SPAWN, _JOIN, _EXIT = 1, 2, 3
# A reply later than this means the server is stuck (a fork takes
# milliseconds, a join of an exited worker less): it is killed, and every
# later request fails with ETIMEDOUT, which breaks the pool instead of
# leaving its supervisor waiting for ever.
_REPLY_TIMEOUT = 60.0
_REQ = struct.Struct("=IIQiI")  # op, seat, gen, pid, 0; then the board name
_REP = struct.Struct("=i")
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _directory():
    from .segment import directory
    return directory()


def _unlink_tmp_of(pid, directory):
    for path in glob.glob(os.path.join(glob.escape(directory), f"shoal..tmp.{pid}.*")):
        try:
            os.unlink(path)
        except OSError:
            pass


class ForkServer:
    """Fork the server now; @target(board, seat, gen) is a worker's body,
    run in the server's children (its return value ignored: 0 unless it
    raises)."""

    def __init__(self, target):
        # Where a killed worker's half-made objects are: the library's
        # directory (shoal_dir()), asked here, before the fork.
        directory = _directory()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ours.close()
                _serve(theirs, target, directory)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        ours.settimeout(_REPLY_TIMEOUT)
        self.pid = pid
        self._sock = ours
        self._stuck = False
        self._lock = threading.Lock()

    def _call(self, msg):
        with self._lock:
            if self._stuck:
                return -errno.ETIMEDOUT
            if self._sock is None:
                return -errno.EPIPE
            try:
                self._sock.send(msg)
                rep = self._sock.recv(_REP.size)
            except TimeoutError:
                # A late reply would answer the next request: the server
                # cannot be trusted any more. Its workers die with it.
                self._stuck = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
                return -errno.ETIMEDOUT
            except OSError as e:
                return -(e.errno or errno.EPIPE)
            if len(rep) != _REP.size:
                return -errno.EPIPE
            return _REP.unpack(rep)[0]

    def spawn(self, board, seat, gen):
        """A new worker's pid, or -errno."""
        return self._call(_REQ.pack(_SPAWN, seat, gen, 0, 0) + board)

    def join(self, pid):
        """Worker @pid's wait status (it has exited, or is about to), or
        -errno."""
        return self._call(_REQ.pack(_JOIN, 0, 0, pid, 0))

    def close(self):
        """End the server (it kills what workers it still has) and wait."""
        with self._lock:
            if self._sock is None:
                return
            # EXIT, not only EOF: a process forked from this one (a
            # multiprocessing "fork" worker) holds a copy of the socket,
            # and EOF would wait for it to end.
            try:
                self._sock.send(_REQ.pack(_EXIT, 0, 0, 0, 0))
            except OSError:
                pass  # the server is gone already
            self._sock.close()
            self._sock = None
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass  # collected by someone's waitpid(-1)


def _std_streams():
    """sys.stdout and sys.stderr write to fds 1 and 2, as in
    ProcessPoolExecutor's spawned and loky's workers. The caller's may be
    objects on other fds (pytest's capture, contextlib.redirect_stdout to a
    file), which _close_all_but left as placeholders: a task's print()
    would raise OSError (EBADF); or objects with no fd (Jupyter's), whose
    output a worker would lose. A stream on fd 1 or 2 stays (sys.stdout =
    sys.stderr is the caller's choice), and so does None: with fd 1 closed
    in the caller, fd 1 may be a file the caller opened since, which a
    task's print() must not write into."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        f = getattr(sys, name)
        if f is None:
            continue
        try:
            if f.fileno() in (1, 2):
                continue
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation too
            pass
        try:
            os.fstat(fd)
        except OSError:
            setattr(sys, name, None)  # print() then writes nothing, as there
            continue
        enc = getattr(f, "encoding", None)
        setattr(sys, name, open(fd, "w", buffering=1, closefd=False,
                                encoding=enc if isinstance(enc, str) else None,
                                errors="backslashreplace"))


def _serve(sock, target, directory):
    """The server's loop, in the child of Pool()'s fork."""
    _close_all_but(sock.fileno())
    _std_streams()
    # SIGINT reaches the whole foreground group; the server leaves with its
    # pool process (EOF), never before. A handler inherited for SIGCHLD
    # (or SIG_IGN, which discards exit statuses) would take the zombies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    me, parent = os.getpid(), os.getppid()
    kids = set()
    # A process the pool process forked holds a copy of its end of the
    # socket, so EOF may never come: once a second, look whether the pool
    # process is still our parent.
    sock.settimeout(1.0)
    while True:
        try:
            msg = sock.recv(_REQ.size + 4096)
        except socket.timeout:  # TimeoutError from 3.10 on
            if os.getppid() != parent:
                break
            continue
        except InterruptedError:
            continue
        except OSError:
            break
        if not msg or (len(msg) >= _REQ.size and _REQ.unpack_from(msg)[0] == _EXIT):
            break
        rep = -errno.EINVAL
        if len(msg) >= _REQ.size:
            op, seat, gen, pid, _ = _REQ.unpack_from(msg)
            if op == _SPAWN:
                try:
                    pid = os.fork()
                except OSError as e:
                    rep = -(e.errno or errno.EAGAIN)
                else:
                    if pid == 0:
                        _child(sock, me, target, msg[_REQ.size:].decode(), seat, gen)
                    kids.add(pid)
                    rep = pid
            elif op == _JOIN:
                rep = _join(kids, pid, directory)
        try:
            sock.send(_REP.pack(rep))
        except OSError:
            break
    for pid in kids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for pid in kids:
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
        _unlink_tmp_of(pid, directory)


def _close_all_but(keep):
    """Close every fd above 2 but @keep. Python objects of the caller's may
    still name one (a logging.FileHandler's file): each number is taken by
    a placeholder (an O_PATH fd of "/", close-on-exec) on which reads and
    writes fail with EBADF, so such an object fails loudly, and never
    writes into a file the worker opens later under the same number."""
    fds = [int(f) for f in os.listdir("/proc/self/fd")]
    ph = os.open("/", os.O_PATH | os.O_CLOEXEC)
    for fd in fds:
        if fd > 2 and fd not in (keep, ph):
            try:
                os.dup2(ph, fd, inheritable=False)
            except OSError:
                pass  # the listing's own fd, closed by now
    os.close(ph)


def _join(kids, pid, directory):
    if pid not in kids:
        return -errno.ECHILD
    try:
        si = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        if si is not None and si.si_code != os.CLD_EXITED:
            _unlink_tmp_of(pid, directory)
        _, st = os.waitpid(pid, 0)
    except OSError as e:
        return -(e.errno or errno.ECHILD)
    kids.discard(pid)
    return st


def _child(sock, server, target, board, seat, gen):
    """A worker, just forked by the server; never returns."""
    code = 1
    try:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != server:
            os._exit(1)
        sock.close()
        # What multiprocessing's own fork children run: objects of its
        # (a Queue, a Lock passed in initargs) renew their state.
        multiprocessing.util._run_after_forkers()
        target(board, seat, gen)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: B902 - a worker's last words
        traceback.print_exc()
    finally:
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)
