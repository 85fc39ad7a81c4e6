"""Run-config plumbing shared by `pretrain` and `finetune`: YAML reading, ``key=value`` overrides, and typed
dataclass building whose errors name the offending dotted key.

Both commands describe a run as nested dataclasses; `read_config_mapping` gives the raw YAML mapping with the
overrides applied and `build_dataclass` turns it into the dataclasses, checking every key and type on the way.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A run configuration mistake; the message starts with the dotted key it concerns."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


def read_config_mapping(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Return the YAML mapping of ``path`` (empty for None) with the ``key=value`` overrides applied."""
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as error:
            raise ConfigError("", f"cannot read config file {path}: {error}") from error
        except yaml.YAMLError as error:  # one line: the problem and where (PyYAML's message spans several)
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError("", f"{path} is not valid YAML: {problem}{where}") from error
        if not isinstance(raw, dict):
            raise ConfigError("", f"{path} must hold a mapping of keys, got {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    return raw


def apply_override(raw: dict, override: str) -> None:
    """Set ``a.b.0.c=value`` in the raw YAML mapping (value parsed as YAML, e.g. ``[16,16]``, ``1.0e-4``)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(override, "overrides are written key=value (e.g. data.batch_size=4)")
    value = yaml.safe_load(text) if text.strip() else None
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(where, f"no list item {part} (the list has {len(node)} items)")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(where, f"cannot set a key inside a {type(node).__name__}")


def build_dataclass(cls: type, raw: Any, prefix: str = "") -> Any:
    """Return dataclass ``cls`` built from ``raw``, checking keys and types recursively."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(prefix, f"expected a mapping of keys, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(name, f"unknown key (known keys here: {', '.join(fields)})")
        kwargs[key] = coerce(hints[key], value, name)
    return cls(**kwargs)


def coerce(hint: Any, value: Any, name: str) -> Any:
    """Return ``value`` checked against the type ``hint`` (nested dataclasses, lists, optionals, scalars)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return coerce(options[0], value, name) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, name)
    if value is None and hint in (bool, int, float, str):
        raise ConfigError(name, "missing: this key takes a value, not null")
    if origin is list:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and args and args[0] in (str, int):
            value = [value]  # `sources: path` / `seeds: 0` mean a one-item list
        if not isinstance(value, list):
            raise ConfigError(name, f"expected a list, got {type(value).__name__} {value!r}")
        return [coerce(args[0], item, f"{name}.{i}") for i, item in enumerate(value)] if args else value
    if hint is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(name, f"expected a mapping, got {type(value).__name__} {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(name, f"expected true or false, got {type(value).__name__} {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, f"expected an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is float:
        # PyYAML reads `1e-4` (no dot) as a string: accept numbers written that way.
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(name, f"expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is str:
        if value is False and name.endswith("mixed_precision"):
            return "no"  # YAML 1.1 reads an unquoted `no` as false
        if not isinstance(value, str):
            raise ConfigError(name, f"expected a string, got {type(value).__name__} {value!r}")
        return value
    return value


def positive(value: int, key: str) -> None:
    """Raise `ConfigError` naming ``key`` unless ``value`` is a positive integer."""
    if value <= 0:
        raise ConfigError(key, f"must be a positive integer, got {value}")


def init_parameters(cls: type) -> set[str] | None:
    """Return the named keyword arguments of ``cls.__init__`` (None if it takes only ``**kwargs``)."""
    parameters = inspect.signature(cls.__init__).parameters
    named = {n for n, p in parameters.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return named or None


def check_keys(values: dict, prefix: str, known: set[str] | None) -> None:
    """Raise `ConfigError` naming the first key of ``values`` not in ``known`` (None: anything goes)."""
    if known is None:
        return
    for key in values:
        if key not in known:
            raise ConfigError(f"{prefix}.{key}", f"unknown key (known keys here: {', '.join(sorted(known))})")


def check_processor(processor: dict, prefix: str = "data.processor") -> None:
    """Raise `ConfigError` naming the first key of ``processor`` that `ProteinStructureProcessor` does not take."""
    from ..protein.processor import ProteinStructureProcessor

    check_keys(processor, prefix, init_parameters(ProteinStructureProcessor))


def check_encoder(encoder: dict, prefix: str = "model.encoder") -> None:
    """Check the encoder's model_type is registered and every key is an argument of its config class."""
    from transformers import CONFIG_MAPPING

    import siamdiff_hf  # noqa: F401  (registers the encoders)

    model_type = encoder.get("model_type")
    if not model_type:
        raise ConfigError(f"{prefix}.model_type", "missing (e.g. gearnet, gvp, esm_gearnet)")
    if model_type not in CONFIG_MAPPING:
        known = registered_encoders()
        raise ConfigError(f"{prefix}.model_type", f"unknown encoder {model_type!r} (installed: {known})")
    config_class = CONFIG_MAPPING[model_type]
    settings = {k: v for k, v in encoder.items() if k != "model_type"}
    check_keys(settings, prefix, init_parameters(config_class))
    try:
        config_class(**settings)
    except (TypeError, ValueError) as error:
        raise ConfigError(prefix, f"invalid {model_type} settings: {error}") from error


def registered_encoders() -> list[str]:
    """Return the model types of the package's encoders registered with `AutoModel` (read, not listed by hand)."""
    from transformers import MODEL_MAPPING

    from siamdiff_hf.models.modeling_utils import ProteinPreTrainedModel

    return sorted(
        config.model_type
        for config, model in MODEL_MAPPING._extra_content.items()
        if isinstance(model, type) and issubclass(model, ProteinPreTrainedModel)
    )
