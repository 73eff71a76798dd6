"""shoal.Pool's results thread and the calls it finishes, against what
multiprocessing.Pool does: apply_async()'s and map_async()'s callbacks
(run before the result is ready, on the results thread, waited for by
join(); join() and any wait for the pool's results inside one raise; a
call terminate() cancels runs neither; a task's SystemExit fails its
call), an imap() input at terminate() and
with an item that cannot be pickled, and a pool whose last reference
goes in the results thread itself."""
import concurrent.futures
import itertools
import pickle
import sys
import threading
import time

import numpy as np
import pytest

import shoal
import shoal._pool_results as pr
import shoal.pool as sp


def _sq(x):
    return x * x


def _fail(x):
    raise ValueError(x)


def test_last_reference_dropped_in_results_thread(monkeypatch):
    """The results thread sees a task due and lets the pool go; meanwhile
    the caller cancels it and drops the pool, so the pool's __del__ runs
    in the results thread itself and the C pool is destroyed: the results
    thread must not wait on it then (it was freed under it)."""
    go, back = threading.Event(), threading.Event()
    waits, destroyed = [], []
    real_wait, real_destroy = pr._wait_into, sp._destroy
    box = {}

    def wait_into(ptr, *a):
        if ptr == box.get("ptr"):
            waits.append(box["stopping"].is_set())
            if box["stopping"].is_set():
                return -32  # -EPIPE: never into a pool freed (this test's failure)
        return real_wait(ptr, *a)

    def destroy(ptr):
        try:
            return real_destroy(ptr)
        finally:
            destroyed.append(ptr)

    monkeypatch.setattr(pr, "_wait_into", wait_into)
    monkeypatch.setattr(sp, "_destroy", destroy)

    class P(shoal.Pool):
        # The results thread's look at _pending (pending > 0) holds it
        # there until the caller has cancelled the task and dropped the pool.
        @property
        def _pending(self):
            v = self.__dict__["_p"]
            if v and sys._getframe(1).f_code.co_name == "_collect_loop" and not go.is_set():
                go.set()
                back.wait(10)
            return v

        @_pending.setter
        def _pending(self, v):
            self.__dict__["_p"] = v

        def __del__(self):
            box["del"] = threading.current_thread().name
            super().__del__()

    # The worker is still starting (its initializer): the task is not taken.
    p = P(1, initializer=time.sleep, initargs=(0.3,))
    box.update(ptr=p._ptr, stopping=p._stopping)
    # Its spawn hook, which holds the pool a moment, has returned.
    deadline = time.monotonic() + 10
    while not p.pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    collector, gone = p._collector, p._gone
    f = p.submit(time.sleep, 0)
    assert go.wait(10)
    assert f.cancel()
    del p
    back.set()
    collector.join(10)
    assert gone.wait(10)
    assert not collector.is_alive()
    assert box["ptr"] in destroyed
    assert box["del"] == "shoal-pool-results"  # the case under test did happen
    assert True not in waits, "the results thread waited on its pool once it was destroyed"


def test_terminate_with_an_open_imap_input():
    """multiprocessing.Pool: terminate(); join() returns, with an endless
    imap() input still open; and the input is read no further."""
    p = shoal.Pool(2)
    it = p.imap(_sq, itertools.count())
    assert next(it) == 0
    p.terminate()
    t = time.monotonic()
    p.join()
    assert time.monotonic() - t < 5
    read = []

    def src():
        for i in range(100_000):
            read.append(i)
            yield i

    p = shoal.Pool(2)
    it = p.imap(_sq, src())
    assert next(it) == 0
    n = len(read)
    p.terminate()
    p.join()
    assert len(read) == n
    with pytest.raises(concurrent.futures.CancelledError):
        list(it)  # what was submitted and not run was cancelled


@pytest.mark.parametrize("unordered", [False, True])
def test_imap_item_that_cannot_be_pickled(unordered):
    """As multiprocessing.Pool's imap: join() after close() succeeds, the
    pool is gone, and the iterator raises at that item, every result
    before it given first (the item is in imap()'s second batch, past
    what the first submits)."""
    bad = 300
    items = [(lambda: 0) if i == bad else i for i in range(400)]
    p = shoal.Pool(2)
    it = (p.imap_unordered if unordered else p.imap)(_sq, items)
    p.close()
    p.join()
    assert not p._ptr
    got = []
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        for x in it:
            got.append(x)
    assert sorted(got) == [i * i for i in range(bad)]


def test_callbacks_run_before_the_result_is_ready_and_join_waits():
    """multiprocessing.Pool runs a callback before it makes the result
    ready, on its result handler thread (no thread per call), and join()
    returns once every callback has run."""
    p = shoal.Pool(2)
    seen = []

    def slow(r):
        time.sleep(0.05)
        seen.append(r)

    r = p.map_async(_sq, [1, 2], callback=slow)
    assert r.get(10) == [1, 4]
    assert seen == [[1, 4]]
    r = p.apply_async(_sq, (3,), callback=slow)
    r.wait(10)
    assert seen == [[1, 4], 9]
    errs = []
    r = p.map_async(_fail, [1, 2], error_callback=errs.append)
    with pytest.raises(ValueError):
        r.get(10)
    assert len(errs) == 1 and isinstance(errs[0], ValueError)
    r = p.apply_async(_fail, (5,), error_callback=errs.append)
    r.wait(10)
    assert len(errs) == 2 and errs[1].args == (5,)
    # Many calls, no thread of their own; join() waits for their callbacks.
    out = []
    before = threading.active_count()
    for i in range(200):
        p.map_async(_sq, range(i, i + 3), callback=lambda v: (time.sleep(0.001), out.extend(v)))
        assert threading.active_count() <= before
    p.close()
    p.join()
    assert len(out) == 600


def test_no_callback_for_calls_cancelled_by_terminate():
    """multiprocessing.Pool's terminate() calls no callback of the calls
    it drops: neither apply_async()'s nor map_async()'s."""
    p = shoal.Pool(1, initializer=time.sleep, initargs=(0.5,))
    called = []
    a = p.apply_async(_sq, (2,), callback=called.append, error_callback=called.append)
    m = p.map_async(_sq, range(5), callback=called.append, error_callback=called.append)
    p.terminate()
    p.join()
    assert not a.successful() and not m.successful()
    assert called == []


@pytest.mark.parametrize("how", ["apply_async", "map_async"])
def test_join_in_a_callback_raises(how):
    """A callback runs on the results thread: join() there would wait for
    itself for ever (at exit too). It raises RuntimeError, as
    multiprocessing.Pool's join() does there."""
    p = shoal.Pool(2)
    got = []

    def cb(r):
        for wait in (p.join, lambda: p.shutdown(wait=True)):
            try:
                wait()
            except RuntimeError as e:
                got.append(str(e))

    if how == "apply_async":
        r = p.apply_async(_sq, (3,), callback=cb)
    else:
        r = p.map_async(_sq, range(3), callback=cb)
    r.wait(10)
    assert len(got) == 2 and all("results thread" in m for m in got)
    assert r.successful()
    p.close()
    p.join()


def test_a_function_or_item_that_cannot_be_pickled():
    """As the standard pools: submit(), apply_async() and map_async() give
    the error through the Future or AsyncResult (and error_callback), not
    at the call; imap() raises it at its item; map() at the call."""
    def bad():
        return 0

    errs = []
    with shoal.Pool(1, max_tasks=np.int64(3)) as p:  # an integer-like is taken
        f = p.submit(bad)
        assert isinstance(f.exception(10), (pickle.PicklingError, AttributeError))
        r = p.apply_async(bad, error_callback=errs.append)
        with pytest.raises((pickle.PicklingError, AttributeError)):
            r.get(10)
        r = p.map_async(_sq, [1, bad], error_callback=errs.append)
        with pytest.raises((pickle.PicklingError, AttributeError)):
            r.get(10)
        r = p.map_async(bad, [1], error_callback=errs.append)
        assert not r.successful()
        assert len(errs) == 3
        it = p.imap(bad, [1, 2])
        with pytest.raises((pickle.PicklingError, AttributeError)):
            next(it)
        with pytest.raises((pickle.PicklingError, AttributeError)):
            p.map(_sq, [1, bad])
        assert p.apply_async(_sq, (4,)).get(10) == 16
    for v in (0, 0.5, "12", np.float64(2.0)):
        with pytest.raises(ValueError):
            shoal.Pool(1, max_tasks=v)


def test_a_task_raising_systemexit_fails_its_call():
    """A worker sends any BaseException a task raises back as its error:
    SystemExit fails map_async()'s and apply_async()'s result (and goes to
    error_callback) as multiprocessing.Pool's, never ending the results
    thread with the call unresolved. An empty map_async() is ready at once
    and calls no callback, as multiprocessing.Pool's."""
    errs, called = [], []
    with shoal.Pool(2) as p:
        r = p.map_async(sys.exit, [1, 3], error_callback=errs.append)
        a = p.apply_async(sys.exit, (4,), error_callback=errs.append)
        r.wait(5)
        assert r.ready(), "map_async() never resolved"
        with pytest.raises(SystemExit) as e:
            r.get(0)
        assert e.value.code == 1
        with pytest.raises(SystemExit):
            a.get(5)
        assert sorted(x.code for x in errs) == [1, 4]
        assert p.apply(_sq, (4,)) == 16  # the results thread goes on
        r = p.map_async(_sq, [], callback=called.append, error_callback=called.append)
        assert r.ready() and r.get(0) == [] and called == []


def _fail_first(x):
    if x == 0:
        raise ValueError(x)
    time.sleep(0.5)
    return x


def test_terminate_in_the_error_callback_of_a_call_it_cancels():
    """terminate() ends the tasks still running of a map_async() whose
    first task failed: the call was cancelled, so neither callback runs
    (get() raises CancelledError), not error_callback with the first
    failure on the thread destroying the pool, where its terminate()
    would wait for that thread itself."""
    p = shoal.Pool(2)
    called = []
    r = p.map_async(_fail_first, range(4),
                    error_callback=lambda e: (called.append(e), p.terminate()))
    end = time.monotonic() + 10
    while p._pending == 4 and time.monotonic() < end:  # the failure handed over
        time.sleep(0.01)
    t = threading.Thread(target=p.terminate, daemon=True)
    t.start()
    t.join(10)
    hung = t.is_alive()
    if hung:
        p._gone.set()  # let the stuck destroy thread go: the suite goes on
        t.join(10)
    assert not hung, "terminate() waited for itself"
    assert called == []
    with pytest.raises(concurrent.futures.CancelledError):
        r.get(0)


def test_waiting_for_results_in_a_callback_raises():
    """A callback runs on the results thread, which alone hands over the
    pool's results: a wait there for one not yet ready (map(), imap(),
    apply(), AsyncResult.get() and wait(), Future.result()) raises
    RuntimeError rather than wait for ever; a result ready is returned.
    (Each wait has a timeout: without the rule the test fails, not hangs.)"""
    p = shoal.Pool(1)
    ready_f = p.submit(_sq, 3)
    ready_a = p.apply_async(_sq, (5,))
    assert ready_f.result(10) == 9 and ready_a.get(10) == 25
    waits = {
        "map": lambda: list(p.map(_sq, [1], timeout=2)),
        "get": lambda: p.apply_async(_sq, (1,)).get(2),
        "wait": lambda: p.apply_async(_sq, (1,)).wait(2),
        "result": lambda: p.submit(_sq, 1).result(2),
        "apply": lambda: p.apply(_sq, (2,)),  # once the rest raised: no timeout
        "imap": lambda: list(p.imap(_sq, [1])),
    }
    got, msgs = {}, []

    def cb(v):
        for name, wait in waits.items():
            if name == "apply" and set(got.values()) != {"RuntimeError"}:
                break
            try:
                wait()
                got[name] = "returned"
            except BaseException as e:  # noqa: B902
                got[name] = type(e).__name__
                msgs.append(str(e))
        got["ready"] = (ready_f.result(), ready_a.get(), ready_f.exception())

    for call in (lambda: p.map_async(_sq, [1], callback=cb),
                 lambda: p.apply_async(_sq, (1,), callback=cb)):
        got.clear()
        r = call()
        r.wait(30)
        assert r.successful()
        assert got == dict({k: "RuntimeError" for k in waits}, ready=(9, 25, None))
        assert "cannot wait for the pool's results" in msgs[-1]
    p.terminate()


def _real_then_own_cancel(x):
    if x == 0:
        raise ValueError("real")
    raise concurrent.futures.CancelledError("the task's own")


def test_a_tasks_own_cancelled_error_is_its_error():
    # Only the pool's cancellations make a call run no callback: a task
    # raising CancelledError itself fails the call as any error does, and
    # the first error in task order is the call's (multiprocessing.Pool's).
    errs = []
    with shoal.Pool(2) as p:
        r = p.map_async(_real_then_own_cancel, [0, 1], chunksize=1, error_callback=errs.append)
        r.wait(30)
        assert r.ready()
        with pytest.raises(ValueError, match="real"):
            r.get(0)
    assert [type(e) for e in errs] == [ValueError]


def test_ctrl_c_while_a_result_is_unpickled_is_not_the_calls_error(monkeypatch):
    # values() on the caller's thread (seal(), shutdown(cancel_futures)):
    # a KeyboardInterrupt in pickle.loads must propagate, not become the
    # call's error nor be lost behind a cancellation.
    c = pr._Calls.__new__(pr._Calls)
    for tail in ([], [(False, pr._PoolCancelled())]):
        c.out = [pickle.dumps([1]), pickle.dumps([2])] + tail

        def loads(b):
            raise KeyboardInterrupt

        monkeypatch.setattr(pr.pickle, "loads", loads)
        with pytest.raises(KeyboardInterrupt):
            c.values()
        monkeypatch.undo()
    c.out = [pickle.dumps([1]), (False, ValueError("x")), pickle.dumps([3])]
    values, exc = c.values()
    assert values == [1] and isinstance(exc, ValueError)
