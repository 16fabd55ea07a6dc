"""Fine-tuning runs in a pool of worker processes (each holds the data once)."""
from __future__ import annotations

import multiprocessing as mp
import os
import time

from .data import train_and_evaluate

_WORKER_DATA = None


def _init_worker(data):
    global _WORKER_DATA
    _WORKER_DATA = data


def _run_task(task):
    key, model, seeds, epochs = task
    xtr, ytr, xva_bytes, yva = _WORKER_DATA
    t0 = time.perf_counter()
    accs = [train_and_evaluate(model, (xtr, ytr), xva_bytes, yva, s, epochs) for s in seeds]
    return key, accs, time.perf_counter() - t0


def default_jobs() -> int:
    """The cores this process may run on (os.sched_getaffinity; else os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class Runner:
    """Runs tasks in a pool of `jobs` processes (in this process for jobs=1)."""

    def __init__(self, data, jobs: int):
        self.data, self.jobs, self.pool = data, jobs, None

    def __enter__(self):
        if self.jobs > 1:
            self.pool = mp.get_context().Pool(self.jobs, initializer=_init_worker, initargs=(self.data,))
        return self

    def __exit__(self, *exc):
        global _WORKER_DATA
        if self.pool is not None:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()
        _WORKER_DATA = None

    def run(self, tasks):
        if not tasks:
            return
        if self.pool is None:
            _init_worker(self.data)
            for task in tasks:
                yield _run_task(task)
        else:
            yield from self.pool.imap_unordered(_run_task, tasks, chunksize=1)
