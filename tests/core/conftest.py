"""Fixtures of the core tests: the dask cluster of the block-wise tests (two worker processes, one
thread each, started once per module that asks for it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    # worker processes import this checkout, like the test process
    os.environ["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()
