"""Fixtures for the pipeline tests: ``slurm_cluster``, a real one-node Slurm cluster for the whole session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running :class:`tests.slurm_cluster.SlurmCluster` (2 CPUs, partition ``debug``) with ``SLURM_CONF`` set
    in ``os.environ``, so ``sbatch`` calls from this process and from the scripts it starts submit there.

    Skips (once, with the reason) where Slurm is not installed or its daemons cannot start; every daemon is
    stopped by its process id when the session ends.
    """
    from tests.slurm_cluster import SlurmCluster, SlurmUnavailable

    cluster = SlurmCluster(cpus=2, partition="debug")
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        pytest.skip(f"no Slurm test cluster: {exc}")
    cluster.activate()
    try:
        yield cluster
    finally:
        cluster.stop()
