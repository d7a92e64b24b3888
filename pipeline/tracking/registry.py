"""The MLflow model registry: each dataset's best model (tag ``val_perplexity``) as ``seqlab-<dataset>@champion``."""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException

from pipeline.tracking.mlflow_tracker import call_store, connect


def register_champion(name: str, run_id: str, val_perplexity: float, *, tracking_uri: str | None = None,
                      artifact_path: str = "model", alias: str = "champion") -> str:
    """Register run ``run_id``'s logged model as a new version of ``name`` and point ``alias`` at it,
    unless the current ``alias`` version has a validation perplexity at least as good.  Returns what it did."""
    uri, client = connect(tracking_uri)
    try:
        current = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        current = None  # no registered model or no alias yet
    if current is not None:
        if current.run_id == run_id:
            return f"{alias} is already version {current.version} (this run)"
        best = float(current.tags.get("val_perplexity", "inf"))
        if best <= val_perplexity:
            return f"kept {alias} version {current.version} (val perplexity {best:.4g} <= {val_perplexity:.4g})"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    version = call_store(uri, lambda: mlflow.register_model(f"runs:/{run_id}/{artifact_path}", name,
                                                       tags={"val_perplexity": f"{val_perplexity:.6g}"}))
    call_store(uri, lambda: client.set_registered_model_alias(name, alias, version.version))
    return f"registered version {version.version} as {alias} (val perplexity {val_perplexity:.4g})"


def champion_record(name: str, *, tracking_uri: str | None = None, alias: str = "champion") -> tuple[str, float] | None:
    """``(variant, val_perplexity)`` of registered model ``name@alias``; None without one or its tag."""
    uri, client = connect(tracking_uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    if (value := version.tags.get("val_perplexity")) is None:
        return None
    run = call_store(uri, lambda: client.get_run(version.run_id))
    return run.info.run_name, float(value)
