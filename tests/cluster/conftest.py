"""Fixtures of the cluster tests: a local Dask cluster.

The cluster has two worker processes of one thread each behind nannies,
so a worker killed with SIGKILL is started again. It takes about 2 s to
start on the 2-core test machine, so each test module starts one. moto's
S3 server and the ``bucket`` fixture are the session's, from
``tests/server_fixtures.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import distributed
import pytest
import servers
from cluster_helpers import SCHEDULER_OPTIONS

#: Seconds the cluster may take to have its two workers again.
WORKERS_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host=servers.HOST,
        dashboard_address=None,
        scheduler_kwargs=SCHEDULER_OPTIONS,
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def client(dask_cluster: Any) -> Iterator[Any]:
    with distributed.Client(dask_cluster) as client:
        yield client


@pytest.fixture
def full_client(client: Any) -> Any:
    """The client, once the cluster has both workers (after a kill)."""
    client.wait_for_workers(2, timeout=WORKERS_TIMEOUT)
    return client
