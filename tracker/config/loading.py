"""Configs from YAML: by name in ``configs/`` or by path, from the text a weights file embeds, or with dotted
overrides (``TEST.SEARCH_FACTOR=3.5``). Strict: an unknown or ill-typed key is a ``ConfigError`` naming the key and
the file, and every result has passed ``tracker.config.validation``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tracker.config.schema import KNOWN_BACKBONES, Config
from tracker.config.validation import validate
from tracker.errors import ConfigError, first_line

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config name from ``configs/`` (``ostrack_vitb256_ce``) or a path to a YAML file."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {text} does not exist; give a YAML path or one of: {_known()}")
        return path
    candidate = CONFIG_DIR / f"{text}.yaml"
    if candidate.is_file():
        return candidate
    raise ConfigError(f"unknown config '{text}'; use one of: {_known()} (or a path to a YAML file)")


def load_config(name_or_path: str | Path | Config) -> Config:
    """Load a config by name or path; a ``Config`` passes through unchanged."""
    if isinstance(name_or_path, Config):
        return name_or_path
    path = resolve_config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not a readable YAML file ({first_line(err)}); fix or replace it") from None
    name = path.stem if path.parent.resolve() == CONFIG_DIR.resolve() else str(path)
    return config_from_dict(raw or {}, source=str(path), name=name)


def config_from_yaml_text(text: str, source: str, name: str = "") -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: embedded config is not valid YAML ({first_line(err)})") from None
    return config_from_dict(raw or {}, source=source, name=name)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>", name: str = "") -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys (MODEL, DATA, TEST, ...), not a list")
    raw = dict(raw)
    raw.pop("NAME", None)
    cfg = _build(Config, raw, "", source)
    cfg = dataclasses.replace(cfg, name=name)
    return validate(_with_backbone_sizes(cfg, source), source)


def _with_backbone_sizes(cfg: Config, source: str) -> Config:
    bb = cfg.backbone
    sizes = (bb.embed_dim, bb.depth, bb.num_heads, bb.mlp_ratio)
    if None not in sizes:
        return cfg
    if bb.type not in KNOWN_BACKBONES:
        missing = [
            k for k, v in zip(("EMBED_DIM", "DEPTH", "NUM_HEADS", "MLP_RATIO"), sizes, strict=False) if v is None
        ]
        raise ConfigError(
            f"{source}: MODEL.BACKBONE.TYPE '{bb.type}' is not a known backbone, so MODEL.BACKBONE needs "
            f"{', '.join(missing)}; add them or use a TYPE of: {', '.join(KNOWN_BACKBONES)}"
        )
    defaults = KNOWN_BACKBONES[bb.type]
    filled = [d if v is None else v for v, d in zip(sizes, defaults, strict=False)]
    new_bb = dataclasses.replace(bb, embed_dim=filled[0], depth=filled[1], num_heads=filled[2], mlp_ratio=filled[3])
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=new_bb))



def parse_overrides(entries: list[str], source: str = "--set") -> dict[str, str]:
    """``["TEST.SEARCH_FACTOR=3.5", ...]`` as a mapping for ``with_overrides``."""
    overrides = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source} '{entry}' must look like KEY=VALUE, e.g. DATA.SEARCH.SCALE_JITTER=0.5")
        overrides[key.strip()] = value.strip()
    return overrides


def with_overrides(cfg: Config, overrides: Mapping[str, str] | None, source: str = "overrides") -> Config:
    """``cfg`` with dotted keys replaced (``{"TEST.SEARCH_FACTOR": "3.5"}``); values are YAML (``[0.9, 0.9]`` is a
    list). The result is validated like a file, so an unknown key or a bad value is one ``ConfigError`` line.
    With no overrides, ``cfg`` itself."""
    if not overrides:
        return cfg
    raw = cfg.to_yaml_dict()
    for dotted, text in overrides.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise ConfigError(f"{source}: unknown key {dotted}; use a dotted config key such as TEST.SEARCH_FACTOR")
        try:
            node[leaf] = yaml.safe_load(text)
        except yaml.YAMLError:
            message = f"{source}: {dotted}={text} is not a readable value; give a number, a word or a [list]"
            raise ConfigError(message) from None
    return config_from_dict(raw, source=source, name=cfg.name)


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping of keys")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "name"}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        fname = str(key).lower()
        if fname not in fields or str(key) != str(key).upper():
            known = ", ".join(n.upper() for n in fields)
            raise ConfigError(f"{source}: unknown key {prefix}{key}; known keys here: {known}")
        hint = hints[fname]
        if dataclasses.is_dataclass(hint):
            values[fname] = _build(hint, value if value is not None else {}, f"{prefix}{key}.", source)
        else:
            values[fname] = _coerce(value, hint, f"{prefix}{key}", source)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, source)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str and isinstance(value, str):
        return value
    type_name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{source}: {key} must be {type_name}, got {value!r}")



def _known() -> str:
    return ", ".join(available_configs()) or "(no configs found)"
