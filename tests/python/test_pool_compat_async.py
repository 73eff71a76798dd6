"""shoal.Pool's results thread and the calls it finishes: a pool whose
last reference goes in the results thread itself."""
import sys
import threading
import time

import shoal
import shoal._pool_results as pr
import shoal.pool as sp


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
