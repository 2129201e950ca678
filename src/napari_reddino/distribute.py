"""How work is spread over processes and machines: the one home (#19). The CLI hands it one unit per image,
the whole-slide engine one per tile; neither knows where the units run.

A unit is a picklable zero-argument callable with a ``name`` (:class:`Unit` wraps a module-level function and
its arguments). :func:`iter_map_units` runs the units and returns their results in unit order, each the unit's
value or a :class:`UnitFailed` (its one line goes to failed.csv; the other units go on):

- ``workers=1`` and no scheduler: in this process, in order, without importing dask (a unit whose function is
  a progress generator shows its steps, as the CLI always has);
- ``workers=N``: a local ``distributed.LocalCluster`` of N processes with one thread each, torch and BLAS in
  each given cores // N threads;
- ``scheduler=ADDRESS``: an existing ``dask.distributed`` scheduler (a SLURM/PBS cluster via dask-jobqueue).

What one unit's failure is: a file that cannot be read (``ReadError``), memory, or an error that is not the
user's (a bug, a worker that died) fails that unit, and the others go on; any other ``InputError`` is a
setting that fails every unit alike (a --model that is not there): it stops the work and is raised here.

A unit writes its own results (atomically) where it can, so a re-run skips what is done; closing the generator
(Cancel, Ctrl-C) cancels what has not run and closes the local cluster. Models are loaded once per worker
process, not per unit: ``models.load_model`` keeps them (per spec and device) in the process that loads them.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass, field
from typing import Callable

from napari_reddino.images import InputError
from napari_reddino.progress import Progress, tagged

CONNECT_TIMEOUT_S = 10
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
log = logging.getLogger(__name__)
# A unit is seconds of work in one thread, which the local workers' own sampling (a stack profiler every 10 ms,
# the event loop's health every 20 ms, memory every 100 ms) only interrupts: it is turned down. The workers take
# this config with them.
QUIET_WORKERS = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "500ms",
                 "distributed.worker.memory.monitor-interval": "1s",
                 "distributed.admin.system-monitor.interval": "2s",
                 "distributed.admin.system-monitor.gil.enabled": False}


@dataclass(frozen=True)
class UnitFailed:
    """A unit that raised: its name and the one line said of it (for failed.csv)."""
    name: str
    why: str


@dataclass
class Unit:
    """``func(*args, **kwargs)`` named ``name``; ``func`` must be importable (module level) to be pickled.
    When ``func`` is a progress generator, :meth:`steps` yields its progress and calling the unit runs it."""
    name: str
    func: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def steps(self):
        result = self.func(*self.args, **self.kwargs)
        if inspect.isgenerator(result):
            result = yield from result
        return result

    def __call__(self):
        from napari_reddino.progress import run

        return run(self.steps())


@dataclass(frozen=True)
class _Stop:
    """A worker's ``InputError`` that is about the settings, not the unit: raised again in the caller."""
    why: str


def stops_all(exc: BaseException) -> bool:
    from napari_reddino.images import ReadError

    return isinstance(exc, InputError) and not isinstance(exc, ReadError)


def one_line(exc: BaseException) -> str:
    """What failed.csv says of an exception: a user error's own line; other errors with their type."""
    text = str(exc).splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (InputError, OSError, MemoryError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def attempt(unit):
    """Run ``unit`` (in a worker): its value, or what its failure is (an exception, which may not pickle,
    never leaves the worker)."""
    try:
        return unit()
    except Exception as exc:  # noqa: BLE001 - one unit's failure must not stop the others
        return _failure(unit.name, exc)


def _failure(name: str, exc: Exception):
    """:class:`UnitFailed`, or :class:`_Stop` for a setting; errors that are not the user's are logged with
    their traceback (a worker's go to its log)."""
    if stops_all(exc):
        return _Stop(one_line(exc))
    if not isinstance(exc, (InputError, OSError, MemoryError)):
        log.warning("%s failed", name, exc_info=True)
    return UnitFailed(name, one_line(exc))


def check_workers(workers: int, scheduler: str | None) -> None:
    if workers < 1:
        raise InputError(f"Received --workers {workers}; accepted: a number of processes, 1 or more.")
    if scheduler is not None and workers != 1:
        raise InputError("Received both --workers and --scheduler; accepted: one of them (the scheduler's "
                         "cluster has its own workers).")


def iter_map_units(units, workers: int = 1, scheduler: str | None = None, what: str = "images", done=None):
    """Progress generator (``Progress(finished, len(units), what)`` as units finish) returning each unit's
    value or :class:`UnitFailed`, in unit order. ``done(index, result)`` is called in this process as each
    unit finishes (in the order they finish). A scheduler that cannot be reached is an ``InputError`` before
    any unit runs."""
    units = list(units)
    check_workers(workers, scheduler)
    if workers == 1 and scheduler is None:
        return (yield from _iter_here(units, what, done))
    return (yield from _iter_on_dask(units, workers, scheduler, what, done))


def _iter_here(units, what, done):
    results = []
    for i, unit in enumerate(units):
        tag = f"[{i + 1}/{len(units)}] {unit.name}"
        try:
            if hasattr(unit, "steps"):
                result = yield from tagged(unit.steps(), tag)
            else:
                result = unit()
        except Exception as exc:  # noqa: BLE001 - as attempt()
            result = _failure(unit.name, exc)
            if isinstance(result, _Stop):
                raise
        results.append(result)
        if done:
            done(i, result)
        yield Progress(i + 1, len(units), what)
    return results


def _iter_on_dask(units, workers, scheduler, what, done):
    from distributed import as_completed

    yield Progress(0, len(units), f"{what}: connecting to {scheduler}" if scheduler
                   else f"{what}: starting {workers} worker processes")
    client, cluster = connect(workers, scheduler)
    futures = []
    try:
        futures = client.map(attempt, units, pure=False)
        position = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(units)
        for n, future in enumerate(as_completed(futures), 1):
            i = position[future.key]
            try:
                results[i] = future.result()
            except Exception as exc:  # noqa: BLE001 - the worker died (killed, out of memory) or was lost
                results[i] = UnitFailed(units[i].name, one_line(exc))
            if isinstance(results[i], _Stop):
                raise InputError(results[i].why)
            future.release()
            if done:
                done(i, results[i])
            yield Progress(n, len(units), what)
        return results
    finally:
        if futures:
            client.cancel(futures)
        client.close()
        if cluster is not None:
            cluster.close()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def connect(workers: int, scheduler: str | None):
    """``(client, cluster)``: a client of the scheduler at ``scheduler`` (cluster None), or of a new local
    cluster of ``workers`` processes, one thread each, torch and BLAS given ``cores() // workers`` threads."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT_S), None
        except Exception as exc:  # noqa: BLE001 - a bad address, nothing there, or something that is no scheduler
            why = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"Received --scheduler {scheduler!r}, which could not be reached ({why}); accepted: "
                             "the address of a running dask scheduler, e.g. tcp://10.0.0.5:8786.") from None
    threads = str(max(1, cores() // workers))
    # set before each worker process starts (torch reads them at import); dask's own default is 1. Dask also
    # sets MALLOC_TRIM_THRESHOLD_, which turns off glibc's adaptive mmap threshold: every large numpy temporary
    # is then mapped and unmapped again (measured: 59 times the page faults, 1.6 s of system time per Chula
    # smear against 0.03 s; benchmarks/results_workers.md), so the workers keep glibc's default.
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
               if k != "MALLOC_TRIM_THRESHOLD_"}
    environ.update({k: threads for k in THREAD_VARIABLES})
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, **QUIET_WORKERS}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    try:
        return Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise
