"""A coordinator for the kill tests: sync a tree on a Dask cluster.

Usage: ``python cluster_coordinator.py SOURCE DESTINATION QUEUE SCHEDULER``.
The destination's storage options come as JSON in the environment variable
``CLUSTER_TEST_OPTIONS``, so no secret shows in the process list. Prints
the run's summary as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys

from journalq import StorageQueue
from journalq.cluster import connect


def main() -> None:
    source, destination, queue, scheduler = sys.argv[1:5]
    options = json.loads(os.environ.get("CLUSTER_TEST_OPTIONS", "{}"))
    with connect(scheduler) as client:
        storage = StorageQueue(
            source, destination, name=queue, destination_options=options
        )
        storage.sync(source, destination)
        summary = storage.run(client=client)
        storage.close()
    print(json.dumps(summary.to_dict()), flush=True)


if __name__ == "__main__":
    main()
