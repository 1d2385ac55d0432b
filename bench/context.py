"""The private deployment the benchmarks share, and what they need from it."""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import psutil
from alchemiscale_local.backends.objectstore import ObjectStore
from neo4j import Driver

from alchemiscale_local.client import AlchemiscaleLocalClient, ComputeClient
from alchemiscale_local.deployment import LocalDeployment

from .common import machine_facts

log = logging.getLogger(__name__)

#: the org that the deployment's own compute services claim from (the idle-gap benchmark);
#: every other benchmark works in other orgs, so those services never take their tasks
SERVICE_ORG = "benchidle"
CPU_SERVICES = 2

RUN_TAG = uuid.uuid4().hex[:8]
_counter = itertools.count()


def fresh_scope(org: str) -> str:
    """A scope nobody used yet in this run: ``<org>-r<run>-p<n>``."""
    return f"{org}-r{RUN_TAG}-p{next(_counter)}"


@dataclass
class BenchContext:
    """A started deployment plus a raw driver to the same Neo4j."""

    dep: LocalDeployment
    driver: Driver
    database: str
    neo4j_version: str
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def client(self) -> AlchemiscaleLocalClient:
        if "client" not in self.cache:
            # keyed chains, also where gufe is installed: the benchmarks measure the transport
            # against raw queries; building gufe objects is timed apart (fetch: gufe_objects_s)
            self.cache["client"] = self.dep.client(return_gufe=False)
        return self.cache["client"]

    def compute_client(self) -> ComputeClient:
        """A new compute client with the deployment's compute identity."""
        creds = self.dep.credentials["compute"]
        return ComputeClient(self.dep.api_url, creds["identifier"], creds["key"])

    def objects(self) -> ObjectStore:
        return ObjectStore.from_settings(self.dep.settings.objectstore)

    def machine(self) -> dict[str, Any]:
        return machine_facts(self.neo4j_version)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far by the API, Neo4j and this process."""
        procs = {
            "api": self.dep.api.pid if self.dep.api else None,
            "neo4j": self.dep.neo4j.pid,
            "bench": os.getpid(),
        }
        out: dict[str, float] = {}
        for name, pid in procs.items():
            try:
                times = psutil.Process(pid).cpu_times()
                out[name] = times.user + times.system
            except (psutil.Error, TypeError, ValueError):
                out[name] = float("nan")
        return out

    def close(self) -> None:
        client = self.cache.pop("client", None)
        if client is not None:
            client.close()
        self.driver.close()
        self.dep.stop()


def start_context(*, cpu_services: int = CPU_SERVICES) -> BenchContext:
    """Start a private ephemeral deployment (jar Neo4j) and connect a raw driver to it.

    The deployment's compute services only claim from ``SERVICE_ORG``.
    """
    dep = LocalDeployment(
        ephemeral=True,
        name="bench",
        neo4j={"launcher": "jar"},
        compute={"gpus": "none", "cpu_services": cpu_services, "scopes": [f"{SERVICE_ORG}-*-*"]},
        # one API process: memory and CPU per process stay what they measure; `claim` starts
        # its own APIs with 1 and N workers
        api={"workers": 1},
    )
    dep.start()
    try:
        conn = dep.neo4j.connection()
        driver = conn.driver()
        driver.verify_connectivity()
        rows, _, _ = driver.execute_query(
            "CALL dbms.components() YIELD name, versions RETURN versions[0] AS v", database_=conn.database
        )
        version = rows[0]["v"] if rows else "unknown"
    except BaseException:
        dep.stop()
        raise
    return BenchContext(dep=dep, driver=driver, database=conn.database, neo4j_version=version)
