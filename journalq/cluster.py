"""Copies spread over the workers of a Dask cluster.

One coordinating process keeps the queue as in any run: the lock, the
journal, the decisions, the retries and the events. With
``StorageQueue.run(client=...)`` (or :class:`ClusterHelpers` in
``RunOptions.helpers``) it hands the new files of each stage with copies
to Dask instead of copying them itself. Each :class:`ClusterHelper` turns
a batch of :class:`~journalq.copier.Task` into a few Dask tasks
(``client.submit(..., pure=False)``), and the executor's feeder thread
(:mod:`journalq.handout`) journals the outcomes as they come back, oldest
batch first.

On a worker, :func:`_copy_batch` opens the source and destination
filesystems once per worker process, from their fsspec URL and storage
options, and copies each file with :func:`journalq.copier.copy_tasks`.
The coordinator's filesystem sync cannot reach another machine's disk, so
the worker makes its copies durable itself: with one filesystem sync after
a batch to a local disk, and file by file elsewhere. Storage options,
secrets included, travel in the arguments of the Dask tasks. They sit in
the scheduler's memory while a task waits and never reach the journal.

The guarantees are those of a run on threads:

* Execution is at least once and each copy is idempotent: a file goes to
  a temporary name and is renamed, or is uploaded in one step, so a copy
  done twice leaves one correct file.
* A worker that dies mid-batch makes Dask run that task again elsewhere.
  A task that fails for good (the worker died too often, a filesystem
  would not open, the scheduler connection was lost) comes back as
  ``None`` outcomes, and the coordinator copies those files itself
  through its usual failure handling.
* Each handed copy gets a ``started`` record when its batch goes out, and
  a worker writes its temporary file under a name with a random nonce, so
  two runs of one task never write into the same file. A coordinator
  killed meanwhile leaves those actions in progress. The next open removes
  their temporary files and makes them wait again, and the coordinator
  then copies them itself, as a second attempt. After a worker died, the
  coordinator removes the temporary files of the tasks that Dask ran
  again.
* The executor keeps two batches out per helper, so at most
  ``2 * helpers`` batches wait on the cluster and the queue is never
  submitted whole.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import msgspec

from journalq import copier, transfer
from journalq.backends import Filesystem, open_filesystem
from journalq.errors import ActionError

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = [
    "ClusterHelper",
    "ClusterHelpers",
    "FilesystemSpec",
    "connect",
    "split_tasks",
    "worker_copies",
]

logger = logging.getLogger(__name__)

#: Helpers per worker thread. The executor keeps two batches out per
#: helper, so each thread has one batch running and three queued while
#: the coordinator journals the last. On the 2-core test VM 2 per thread
#: copied small local files 7-18% faster than 1 in separate runs of
#: benchmarks/cluster_bench.py.
HELPERS_PER_THREAD: Final = 2
#: Most helpers, whatever the cluster's size. Each one is a coordinator
#: thread. On the idle 2-core test VM the coordinator journaled 36,500
#: completions/s with 4 helpers and 22,200 with 64, a ceiling that more
#: workers cannot raise (see docs/cluster.md).
MAX_HELPERS: Final = 64
#: Bytes of files in one Dask task. A batch of large files is split, so
#: its files spread over the cluster and a lost worker redoes at most
#: about this much. At 100 MB/s such a task lasts over half a second, so
#: the scheduler's few milliseconds per task hardly count (an estimate).
TASK_BYTES: Final = 64 * 1024 * 1024
#: The size assumed for a file handed without its size (resumed runs).
UNLISTED_BYTES: Final = 4 * 1024 * 1024
#: Seconds a run waits for the cluster to have a worker, at the start of a
#: stage and while a batch is out, before this process copies its files.
WORKER_WAIT: Final = 60.0
#: Seconds between two checks for workers while a batch is out.
POLL_SECONDS: Final = 1.0
#: Seconds :func:`connect` waits for the scheduler to respond.
CONNECT_TIMEOUT: Final = 30.0

_encode = msgspec.msgpack.Encoder().encode
_decode_tasks = msgspec.msgpack.Decoder(list[copier.Task]).decode
_decode_outcomes = msgspec.msgpack.Decoder(list[copier.Outcome]).decode

#: Protocols whose files exist only in the memory of one process.
_PROCESS_LOCAL: Final = frozenset({"memory"})


def connect(address: str, *, timeout: float = CONNECT_TIMEOUT) -> Client:
    """Connect to the Dask scheduler at ``address``, ``tcp://HOST:PORT``.

    Raises ``ActionError`` naming the address when distributed is not
    installed or the scheduler does not respond within ``timeout`` seconds.
    """
    try:
        import distributed
    except ImportError as exc:
        raise ActionError(
            address,
            "running on a Dask cluster needs the distributed package; run: "
            "pip install 'journalq[dask]'",
        ) from exc
    try:
        return distributed.Client(address, timeout=timeout)
    except OSError as exc:
        raise ActionError(
            address,
            f"connecting to the Dask scheduler failed ({exc}); check that it "
            "runs and that the address is tcp://HOST:PORT",
        ) from exc


@dataclass(frozen=True, slots=True)
class FilesystemSpec:
    """The fsspec URL, storage options and cache key a worker opens from.

    ``options`` may contain secrets, so it is left out of ``repr``.
    """

    url: str
    options: dict[str, Any] = field(repr=False)
    key: str = field(repr=False)

    @classmethod
    def of(cls, filesystem: Filesystem) -> FilesystemSpec:
        """Describe ``filesystem``, with any remote name already resolved."""
        options = dict(filesystem.options)
        token = pickle.dumps((filesystem.target, options))
        return cls(filesystem.target, options, hashlib.sha256(token).hexdigest())


class ClusterHelpers:
    """Makes the helpers of each stage: :data:`HELPERS_PER_THREAD` per thread.

    Use an instance as ``RunOptions.helpers``. A stage gets no helpers,
    and the coordinator copies alone, when a filesystem lives in one
    process's memory or when the cluster has no worker within
    ``worker_wait`` seconds.
    """

    def __init__(
        self,
        client: Client,
        *,
        per_thread: int = HELPERS_PER_THREAD,
        max_helpers: int = MAX_HELPERS,
        worker_wait: float = WORKER_WAIT,
    ) -> None:
        self.client = client
        self.per_thread = per_thread
        self.max_helpers = max_helpers
        self.worker_wait = worker_wait

    def __call__(
        self, source: Filesystem, destination: Filesystem
    ) -> list[copier.Helper]:
        for filesystem in (source, destination):
            if _PROCESS_LOCAL.intersection(_protocols(filesystem)):
                logger.info(
                    "copying in this process, not on the cluster: %s exists "
                    "only in this process's memory",
                    filesystem.url,
                )
                return []
        threads = self._threads()
        if not threads:
            logger.warning(
                "the Dask cluster at %s has no worker after %g s; copying in "
                "this process",
                self.client.scheduler.address,
                self.worker_wait,
            )
            return []
        count = max(1, min(self.max_helpers, self.per_thread * threads))
        logger.info(
            "copying on %d Dask worker threads through %d helpers",
            threads,
            count,
        )
        specs = (FilesystemSpec.of(source), FilesystemSpec.of(destination))
        return [
            ClusterHelper(self.client, *specs, worker_wait=self.worker_wait)
            for _ in range(count)
        ]

    def _threads(self) -> int:
        threads = sum(self.client.nthreads().values())
        if threads:
            return threads
        try:
            self.client.wait_for_workers(1, timeout=self.worker_wait)
        except TimeoutError:
            return 0
        return sum(self.client.nthreads().values())


@dataclass(slots=True)
class _Submitted:
    """One batch out on the cluster: its Dask tasks and the files of each."""

    futures: list[tuple[Future, list[copier.Task]]]


class ClusterHelper:
    """A :class:`~journalq.copier.Helper` that copies batches on Dask workers."""

    def __init__(
        self,
        client: Client,
        source: FilesystemSpec,
        destination: FilesystemSpec,
        *,
        worker_wait: float = WORKER_WAIT,
    ) -> None:
        self.broken = False
        self.max_bytes: int | None = None
        # A worker may go on copying after the coordinator died, or run a
        # task again while an earlier run of it still copies.
        self.journals_start = True
        self._client = client
        self._specs = (source, destination)
        self._worker_wait = worker_wait
        self._out: collections.deque[_Submitted] = collections.deque()

    def send(self, tasks: Sequence[copier.Task], inbox_mtime_ns: int | None) -> None:
        """Submit ``tasks`` as Dask tasks of at most :data:`TASK_BYTES`.

        Raises ``ConnectionError`` when the client is closed.
        ``inbox_mtime_ns`` is not used: each task has a ``started`` record,
        so a cancel never applies to it.
        """
        from distributed.client import ClosedClientError

        futures = []
        try:
            for chunk in split_tasks(tasks):
                future = self._client.submit(
                    _copy_batch, _encode(chunk), *self._specs, pure=False
                )
                futures.append((future, chunk))
        except ClosedClientError as exc:
            self.broken = True
            for future, _ in futures:
                future.release()
            raise ConnectionError(
                f"submitting copies to the Dask scheduler failed: {exc}"
            ) from exc
        self._out.append(_Submitted(futures))

    def receive(self) -> list[copier.Outcome]:
        """Wait for the outcomes of the oldest batch submitted, in order.

        A Dask task that failed gives ``None`` for each of its files.
        """
        submitted = self._out.popleft()
        outcomes: list[copier.Outcome] = []
        for future, chunk in submitted.futures:
            outcomes += self._outcomes(future, len(chunk))
        self._sweep_lost_runs(submitted)
        return outcomes

    def close(self) -> None:
        """Release the Dask tasks of batches never received."""
        while self._out:
            for future, _ in self._out.popleft().futures:
                future.release()

    def _sweep_lost_runs(self, submitted: _Submitted) -> None:
        """Remove the temporary files of task runs on workers that died.

        Dask runs a task again when its worker dies, and the run that died
        leaves its temporary files, whose names no other run shares. The
        scheduler counts such deaths per task; only those tasks are swept.
        """
        keys = [future.key for future, _ in submitted.futures]
        try:
            losses = self._client.run_on_scheduler(_worker_losses(), keys)
        except Exception as exc:
            logger.warning(
                "could not ask the Dask scheduler which tasks lost a worker, so "
                "their temporary files may stay: %s: %s",
                type(exc).__name__,
                exc,
            )
            return
        destination = _open(self._specs[1]).fs
        for (_, chunk), lost in zip(submitted.futures, losses, strict=True):
            if not lost:
                continue
            for task in chunk:
                try:
                    transfer.sweep_temporaries(
                        destination, task.destination, task.action_id
                    )
                # Each backend raises its own errors; a failed sweep leaves
                # files behind but must not fail the copies that succeeded.
                except Exception as exc:
                    logger.warning(
                        "could not remove the temporary files of action %s "
                        "beside %s: %s: %s",
                        task.action_id,
                        task.destination,
                        type(exc).__name__,
                        exc,
                    )

    def _outcomes(self, future: Future, count: int) -> list[copier.Outcome]:
        try:
            return _decode_outcomes(self._wait(future))
        except Exception as exc:
            # Whatever failed (the task's own error, KilledWorker once its
            # workers died too often, a lost scheduler connection), the
            # coordinator copies those files again through its own path.
            if self._client.status != "running":
                self.broken = True
            logger.warning(
                "a Dask task copying %d files failed; copying them in this "
                "process: %s: %s",
                count,
                type(exc).__name__,
                exc,
            )
            return [None] * count

    def _wait(self, future: Future) -> bytes:
        """Return the task's result; give up once the cluster has no worker.

        Raises ``TimeoutError`` after :data:`WORKER_WAIT` seconds without
        a worker: with none left to run it, the task would wait forever.
        """
        # Not future.result(timeout=...): in distributed 2026.8 a timeout
        # that races the task's end raises UnboundLocalError. A done
        # callback and a plain result() have no such race.
        finished = threading.Event()
        future.add_done_callback(lambda _: finished.set())
        workerless_since: float | None = None
        while not finished.wait(POLL_SECONDS):
            if self._client.nthreads():
                workerless_since = None
                continue
            now = time.monotonic()
            workerless_since = workerless_since or now
            if now - workerless_since >= self._worker_wait:
                future.cancel()
                raise TimeoutError(
                    f"the Dask cluster at {self._client.scheduler.address} has "
                    f"had no worker for {self._worker_wait:g} s"
                )
        return future.result()


def _worker_losses() -> Callable[..., list[int]]:
    """Return a function for ``run_on_scheduler``: worker deaths per task key.

    It is made in here so that cloudpickle sends it by value, and the
    scheduler needs no journalq. ``suspicious`` is the scheduler's count of
    workers that died while the task was theirs (an attribute of
    ``distributed.scheduler.TaskState`` in distributed 2026.8).
    """

    def losses(keys: list[Any], dask_scheduler: Any = None) -> list[int]:
        tasks = dask_scheduler.tasks
        return [getattr(tasks.get(key), "suspicious", 0) for key in keys]

    return losses


def split_tasks(tasks: Sequence[copier.Task]) -> list[list[copier.Task]]:
    """Split ``tasks`` in order into runs of at most :data:`TASK_BYTES`.

    A file larger than that is a run of its own, and a file of unknown
    size counts as :data:`UNLISTED_BYTES`.
    """
    return copier.split_batches(tasks, _task_bytes, TASK_BYTES)


def _task_bytes(task: copier.Task) -> int:
    return task.size if task.size >= 0 else UNLISTED_BYTES


def _protocols(filesystem: Filesystem) -> tuple[str, ...]:
    protocol = filesystem.fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


# On a worker -----------------------------------------------------------------

#: The filesystems this worker process opened, by :attr:`FilesystemSpec.key`.
_opened: dict[str, Filesystem] = {}
_opened_lock = threading.Lock()


class _CopyCount:
    """Files this worker process copied for Dask tasks, counted across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def add(self, count: int) -> None:
        with self._lock:
            self._count += count

    def get(self) -> int:
        with self._lock:
            return self._count


_copies = _CopyCount()


def worker_copies() -> int:
    """Return how many files this process copied for Dask tasks so far.

    ``client.run(worker_copies)`` returns the count of every worker, which
    shows whether the workers, not the coordinator, made the copies.
    """
    return _copies.get()


def _copy_batch(
    payload: bytes, source: FilesystemSpec, destination: FilesystemSpec
) -> bytes:
    """Copy the encoded tasks of ``payload``; return the encoded outcomes.

    Runs on a Dask worker. Once the scheduler has released the task (its
    coordinator is gone, or the task was cancelled), the files not yet
    begun are left alone: a resumed coordinator may be copying them.
    """
    tasks = _decode_tasks(payload)
    source_fs = _open(source).fs
    target = _open(destination)
    # On a local disk one filesystem sync after the batch costs a tenth of
    # a sync per small file (measured on the 2-core development VM).
    grouped = target.local
    released = _release_check()
    outcomes: list[copier.Outcome] = []
    for task in tasks:
        if released():
            outcomes.append(None)
            continue
        outcomes += copier.copy_tasks(
            [task], source_fs, target.fs, durable=not grouped, unique=True
        )
    copied = sum(1 for outcome in outcomes if outcome is not None)
    if grouped and copied:
        transfer.sync_filesystem(_existing_directory(tasks[0].destination))
    _copies.add(copied)
    return _encode(outcomes)


def _existing_directory(path: str) -> str:
    """Return the nearest directory at or above ``path``'s that exists."""
    directory = os.path.dirname(path) or "/"
    while not os.path.isdir(directory):
        directory = os.path.dirname(directory) or "/"
    return directory


def _open(spec: FilesystemSpec) -> Filesystem:
    with _opened_lock:
        filesystem = _opened.get(spec.key)
        if filesystem is None:
            filesystem = open_filesystem(spec.url, spec.options)
            _opened[spec.key] = filesystem
    return filesystem


def _release_check() -> Callable[[], bool]:
    """Return a test of whether the scheduler released the running task."""
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:
        # Called outside a Dask task, as the tests do: nothing releases it.
        return lambda: False
    key = worker.get_current_task()

    def released() -> bool:
        task = worker.state.tasks.get(key)
        return task is None or task.state == "cancelled"

    return released
