"""Fixtures of the cluster tests: a local Dask cluster and moto's S3.

The cluster has two worker processes of one thread each behind nannies,
so a worker killed with SIGKILL is started again. It takes about 2 s to
start on the 2-core test machine, so each test module starts one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import distributed
import pytest
import servers
from cluster_helpers import S3_KEY, S3_SECRET, SCHEDULER_OPTIONS, s3

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


@pytest.fixture(scope="session")
def s3_options(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Storage options of moto's S3 server on 127.0.0.1, secret included."""
    server = servers.moto_server(tmp_path_factory.mktemp("moto"))
    server.start()
    try:
        yield {
            "key": S3_KEY,
            "secret": S3_SECRET,
            "endpoint_url": f"http://{servers.HOST}:{server.port}",
        }
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_options: dict[str, str]) -> str:
    """A new, empty bucket."""
    name = f"cluster-{uuid.uuid4().hex[:12]}"
    s3(s3_options).mkdir(name)
    return name
