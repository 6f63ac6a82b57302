"""Shared fixtures: one embedded PostgreSQL for the session and a fresh pipeline home per test."""

import tempfile
from datetime import timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from moto.server import ThreadedMotoServer
from support import DAYS, FIRST_DAY, SMALL_SHOP, Pipeline, free_port

from ecomm_assets.source import demo_data
from ecomm_assets.source.embedded_server import EmbeddedPostgres


@pytest.fixture(scope="session")
def postgres():
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="ecomm-pg-")) / "data", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A real S3 protocol peer: moto's server on 127.0.0.1."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def shop(postgres) -> EmbeddedPostgres:
    """ecomm-db holding the small shop's five days."""
    postgres.create_source_schema()
    with psycopg.connect(postgres.resource().conninfo()) as connection:
        demo_data.generate(connection, FIRST_DAY, FIRST_DAY + timedelta(days=len(DAYS)), SMALL_SHOP, seed=7)
    return postgres


@pytest.fixture
def new_pipeline(shop, tmp_path):
    def make(name: str = "home", instance: dg.DagsterInstance | None = None) -> Pipeline:
        return Pipeline(tmp_path / name, shop, instance)
    return make
