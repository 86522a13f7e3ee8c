"""Shared fixtures: one real OpenSearch node for the whole run, fresh index names, data paths.

The node runs under its own state directory (not the user's default one), is started once per
test session and stopped at the end; its JVM also exits if this Python process dies.  A 3-node
cluster (``local_cluster``) is started only when a test asks for it (the ``cluster`` tests), once
per session, with fresh data; it shares the node's Maven build.

``CMSEARCH_TEST_ENGINE_VERSION`` (e.g. ``3.5``) runs them as another OpenSearch version, each
version under its own state directory (``.state/test-engine-3.5``), so both can be tested in turn.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CMSEARCH_SHARED_DATA", REPO.parent / "shared" / "data"))


def _engine_version() -> str:
    from engine.versions import engine_version

    return engine_version(os.environ.get("CMSEARCH_TEST_ENGINE_VERSION") or None).name


def _versioned(name: str) -> str:
    from engine.versions import DEFAULT_VERSION

    version = _engine_version()
    return name if version == DEFAULT_VERSION else f"{name}-{version}"


def _engine_dir() -> Path:
    return Path(os.environ.get("CMSEARCH_TEST_ENGINE_DIR", REPO / ".state" / _versioned("test-engine")))


@pytest.fixture(scope="session")
def local_engine():
    from engine import LocalEngine

    version = _engine_version()
    eng = LocalEngine(state_dir=_engine_dir(), heap="1g", version=version)
    private = eng.url() is not None
    if private:  # another test session owns that node: run our own beside it, never stop theirs
        eng = LocalEngine(state_dir=eng.state_dir.with_name(f"{eng.state_dir.name}-{os.getpid()}"), heap="1g",
                          version=version)
    eng.start(exit_with_parent=True, timeout=300)
    yield eng
    eng.stop()
    if private:
        shutil.rmtree(eng.state_dir, ignore_errors=True)


def _cluster_dir() -> Path:
    return Path(os.environ.get("CMSEARCH_TEST_CLUSTER_DIR", REPO / ".state" / _versioned("test-cluster")))


@pytest.fixture(scope="session")
def local_cluster():
    """A 3-node cluster (512 MB heap per node) on 127.0.0.1, started with empty data."""
    from engine import LocalEngine

    version = _engine_version()
    build = LocalEngine(state_dir=_engine_dir(), version=version)
    build.build()
    eng = LocalEngine(state_dir=_cluster_dir(), nodes=3, heap="512m", version=version)
    private = eng.url() is not None
    if private:  # another test session owns that cluster: run our own beside it, never stop theirs
        eng = LocalEngine(state_dir=eng.state_dir.with_name(f"{eng.state_dir.name}-{os.getpid()}"), nodes=3,
                          heap="512m", version=version)
    shutil.rmtree(eng.cluster_dir, ignore_errors=True)   # fresh data: no index or record of an older run
    eng.state_dir.mkdir(parents=True, exist_ok=True)
    if eng.build_dir.is_symlink() and not eng.build_dir.exists():
        eng.build_dir.unlink()                            # points at a build since removed
    if not eng.build_dir.exists():
        eng.build_dir.symlink_to(build.build_dir, target_is_directory=True)
    eng.start(exit_with_parent=True, timeout=420)
    yield eng
    eng.stop()
    if private:
        shutil.rmtree(eng.state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def os_client(local_engine):
    from engine.client import ConnectionSettings

    return ConnectionSettings.resolve(local_engine.url()).client()


@pytest.fixture
def stranger_pid():
    """A live process that is not a node, for a pid file to name (as after pid reuse)."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def fresh_index(os_client):
    """A factory of unique index names; every index it named is deleted afterwards."""
    names: list[str] = []

    def make(prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        names.append(name)
        return name

    yield make
    for name in names:
        os_client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (set CMSEARCH_SHARED_DATA)")
    return SHARED_DATA
