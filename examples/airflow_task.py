"""A nightly sync as an Airflow task, safe to retry.

The task function is plain Python: Airflow only wraps it. When Airflow is
not installed the file still imports, so it can be read, tested or reused
as a Prefect task (``prefect.task(nightly_sync)``).

It is safe to retry. The queue is named, so a retried task opens the same
queue and runs only what the failed attempt left, and adding the same sync
again while it is pending adds nothing. A second task started while one
runs opens the queue in hand-off mode: its sync goes to the running
process, ``run()`` raises ``QueueLockedError``, and the task fails with a
``RuntimeError`` instead of copying twice.
"""

from __future__ import annotations

import logging
from typing import Any

from journalq import QueueLockedError, StorageQueue

logger = logging.getLogger(__name__)

SOURCE = "/data/reports"
DESTINATION = "s3://backups/reports"


def nightly_sync(
    source: str = SOURCE,
    destination: str = DESTINATION,
    destination_options: dict[str, Any] | None = None,
) -> dict[str, object]:
    """Sync ``source`` to ``destination`` and return the run's summary.

    Raises RuntimeError when files failed, so the scheduler marks the task
    failed and retries it; the retry copies only what is left.
    """
    with StorageQueue(
        source,
        destination,
        name="nightly-reports",
        destination_options=destination_options,
    ) as queue:
        queue.sync(source, destination, delete=True, max_delete=1000)
        try:
            summary = queue.run()
        except QueueLockedError as error:
            # The sync above went to the inbox of the process holding the queue,
            # which runs it.
            message = f"the queue is locked by another run: {error}"
            raise RuntimeError(message) from error
    result = summary.to_dict()
    logger.info("nightly sync: %s", result)
    if not summary.ok:
        failed = [f"{failure.source}: {failure.error}" for failure in summary.failures]
        raise RuntimeError(f"{summary.failed} files failed: {failed[:5]}")
    return result


try:
    import pendulum
    from airflow.decorators import dag, task
except ImportError:  # Airflow is optional: the function above is the task.
    pass
else:

    @dag(
        schedule="0 2 * * *",
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
    )
    def nightly_backup() -> None:
        task(retries=3)(nightly_sync)()

    nightly_backup()
