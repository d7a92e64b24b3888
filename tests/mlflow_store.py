"""A real MLflow sqlite store per test, cheaply: the schema is created once per session, then the file is copied.

Creating a fresh MLflow sqlite database runs every schema migration (~8 s here); copying an empty migrated
database takes milliseconds, and each test still gets a store of its own in its ``tmp_path``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.getbasetemp() / "mlflow-template.db"
    if not path.exists():
        partial = path.with_suffix(".partial")
        MlflowClient(tracking_uri=f"sqlite:///{partial}").search_experiments()  # runs the migrations
        partial.rename(path)
    return path


@pytest.fixture
def mlflow_uri(tmp_path, _migrated_db, monkeypatch) -> str:
    """``sqlite:///<tmp_path>/mlflow.db`` (migrated, empty), also set as ``MLFLOW_TRACKING_URI``."""
    db = tmp_path / "mlflow.db"
    shutil.copy(_migrated_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
