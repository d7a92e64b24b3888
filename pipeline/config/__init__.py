"""Typed, strict params: one frozen dataclass per ``params.yaml`` section.

Each stage's entry point (``stages._common.stage_main``) calls :func:`load_params` once and
passes the parsed :class:`Params` down; nothing else in ``pipeline/`` reads ``params.yaml``.
Run overrides merge into shared settings through :func:`apply_overrides` only.  Parsing is
strict: an unknown key, a missing key or a value of the wrong type raises
:class:`ConfigError` with one line that names the key path and lists what is
valid, e.g. ``params.yaml: corpora.austen.source: unknown key 'fiels'
(valid: type, package, files)``.

Sections are registered in :data:`SECTIONS`; their dataclasses live in one module
per area (``data``, ``training``, ``evaluation``, ``curriculum``), the generic
parser in ``_schema``, and everything is re-exported here: ``from pipeline.config
import TrainSettings``.  ``pipeline.config`` imports nothing else from ``pipeline``
but ``pipeline.errors``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from pipeline.config._schema import ConfigError, _parse_value, apply_overrides, parse_dataclass, parse_overrides
from pipeline.config.curriculum import (
    AgreementConfig,
    CurriculumConfig,
    CurriculumTraining,
    DepthConfig,
    LangIdConfig,
    ProbeConfig,
    StylesConfig,
    TaggingConfig,
)
from pipeline.config.data import (
    CorpusConfig,
    EncodeMidiConfig,
    Music21Source,
    PackageSource,
    PathSource,
    Source,
    SplitConfig,
    TokenizeConfig,
    UrlFile,
    UrlSource,
)
from pipeline.config.evaluation import EvaluateConfig, NgramConfig, RetrainConfig
from pipeline.config.training import (
    ModelConfig,
    OptimizerSettings,
    SampleConfig,
    TrainConfig,
    TrainRunConfig,
    TrainSettings,
)

__all__ = [
    "AgreementConfig",
    "ConfigError",
    "CorpusConfig",
    "CurriculumConfig",
    "DepthConfig",
    "EncodeMidiConfig",
    "EvaluateConfig",
    "LangIdConfig",
    "ModelConfig",
    "Music21Source",
    "NgramConfig",
    "OptimizerSettings",
    "PackageSource",
    "Params",
    "PathSource",
    "ProbeConfig",
    "RetrainConfig",
    "SECTIONS",
    "SampleConfig",
    "Source",
    "SplitConfig",
    "StylesConfig",
    "TaggingConfig",
    "CurriculumTraining",
    "TokenizeConfig",
    "TrainConfig",
    "TrainRunConfig",
    "TrainSettings",
    "UrlFile",
    "UrlSource",
    "apply_overrides",
    "flatten",
    "load_params",
    "parse_dataclass",
    "parse_overrides",
    "parse_params",
    "to_plain",
]

# --------------------------------------------------------------------------- params as a whole

#: section name -> how to parse it: a dataclass, or ``dict[str, Dataclass]``.
SECTIONS: dict[str, Any] = {
    "corpora": dict[str, CorpusConfig],
    "tokenize": dict[str, TokenizeConfig],
    "encode_midi": dict[str, EncodeMidiConfig],
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "curriculum": CurriculumConfig,
    "retrain": RetrainConfig,
}


@dataclasses.dataclass(frozen=True)
class Params:
    """Parsed params: ``params.corpora`` (attribute access) or ``params.sections["corpora"]``; absent sections raise."""

    path: str
    sections: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(name) from None


def load_params(path: str | Path = "params.yaml", required: tuple[str, ...] = ()) -> Params:
    """Read and validate a params file; ``required`` sections must be present."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: params file not found (pass --params PATH)") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from e
    return parse_params(raw, str(path), required)


def parse_params(raw: Any, where: str, required: tuple[str, ...] = ()) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of sections at the top level")
    valid = ", ".join(SECTIONS)
    _check_train_keys(raw.get("train"), where)
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"{where}: unknown section {name!r} (valid: {valid})")
        sections[name] = _parse_value(SECTIONS[name], value, f"{where}: {name}")
    for name in required:
        if name not in sections:
            raise ConfigError(f"{where}: missing section {name!r} (valid: {valid})")
    _check_references(sections, where)
    return Params(where, sections)


def _check_train_keys(train: Any, where: str) -> None:
    """Every shared setting of ``train.defaults`` must be written out: a key filled in silently from a default
    would change with seqlab's code, not with the params file (and ``dvc exp run -S`` could not set it)."""
    if not isinstance(train, dict):
        return
    moved = [key for key in train if key in TrainSettings.__dataclass_fields__]
    if moved:  # a params file from before the shared settings were nested
        more = f" and {len(moved) - 4} more" if len(moved) > 4 else ""
        raise ConfigError(f"{where}: train: {', '.join(moved[:4])}{more}: the shared settings live under "
                          f"train.defaults (valid keys of train: defaults, runs); move them there, e.g. "
                          f"train.defaults.{moved[0]}")
    defaults = train.get("defaults")
    if not isinstance(defaults, dict):
        return
    missing = [f.name for f in dataclasses.fields(TrainSettings) if f.name not in defaults]
    if missing:
        shown = ", ".join(f"{name}: {_default(TrainSettings, name)!r}" for name in missing[:4])
        more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        raise ConfigError(f"{where}: train.defaults: missing key(s) {', '.join(missing)}; write each one out, e.g. "
                          f"with its default ({shown}{more}; all in the repository's params.yaml)")


def _default(cls: type, name: str) -> Any:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    return to_plain(value)


def _check_references(sections: dict[str, Any], where: str) -> None:
    """Names that point across sections must exist: datasets' corpora (of the right kind, enabled), runs' datasets."""
    corpora = sections.get("corpora", {})
    for section, kind in (("tokenize", "text"), ("encode_midi", "midi")):
        for name, dataset in sections.get(section, {}).items():
            key, corpus = f"{section}.{name}.corpus", corpora.get(dataset.corpus)
            if corpus is None:
                raise ConfigError(f"{where}: {key}: unknown corpus {dataset.corpus!r} (valid: {', '.join(corpora)})")
            if corpus.kind != kind:
                raise ConfigError(f"{where}: {key}: {dataset.corpus!r} is a {corpus.kind} corpus, not {kind}")
            if not corpus.enabled:
                raise ConfigError(f"{where}: {key}: corpus {dataset.corpus!r} is disabled "
                                  f"(set corpora.{dataset.corpus}.enabled: true)")
    datasets = [*sections.get("tokenize", {}), *sections.get("encode_midi", {})]
    if not datasets:
        return  # a params file without data sections (tests, benchmarks) names its datasets elsewhere
    references = [(f"train.runs.{run}.dataset", cfg.dataset) for run, cfg in getattr(sections.get("train"), "runs", {}).items()]
    for key in ("baselines", "interpolate"):
        references += [(f"evaluate.{key}.{name}", name) for name in getattr(sections.get("evaluate"), key, {})]
    for key, dataset in references:
        if dataset not in datasets:
            raise ConfigError(f"{where}: {key}: unknown dataset {dataset!r} (valid: {', '.join(datasets)})")


def to_plain(obj: Any) -> Any:
    """Parsed config -> plain JSON-able Python (dataclasses become dicts, tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten parsed config into ``{"a.b.c": value}`` (for MLflow params)."""
    if dataclasses.is_dataclass(obj):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}
