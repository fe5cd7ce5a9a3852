"""Configs as plain dataclasses, read from YAML files and overridden from the command line.

A config is a (possibly nested) dataclass. :func:`load_config` builds it from a YAML file and then
applies ``key.sub=value`` overrides, in the spirit of nanoGPT and CleanRL: no framework, the file
says everything, and the command line changes one thing at a time. Every value is checked against
the dataclass's type hints, so a typo or a wrong type fails at start-up with a message that names
the key, the file and the valid keys, instead of an hour into a run.

YAML is read with a safe loader (never ``eval``) that follows YAML 1.2 for two scalars that YAML 1.1
gets wrong for configs: ``1e-5`` is a float (PyYAML alone reads it as a string) and only
``true``/``false`` are booleans (``yes``, ``no``, ``on``, ``off`` stay strings). Override values are
parsed the same way; for a field typed ``str`` the raw text is kept (``run_name=001`` is ``"001"``).
``key=`` sets the empty string and ``key=null`` sets ``None``.

:func:`save_config` writes the fully resolved config (defaults included), and
:func:`load_config` on that file gives the same object back.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import functools
import os
import re
import tempfile
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

__all__ = [
    "ConfigError",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_yaml",
    "flatten_config",
    "format_override",
    "load_config",
    "load_yaml",
    "parse_overrides",
    "save_config",
]

T = TypeVar("T")

_BOOL_TAG = "tag:yaml.org,2002:bool"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# YAML 1.2 core-schema floats: the exponent form without a dot (``1e-5``) is a float.
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 booleans and floats."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, _BOOL_RE, list("tTfF"))
_Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))


class _Dumper(yaml.SafeDumper):
    """Safe dumper that also quotes strings our loader would read as floats (``"1e-5"``).

    It keeps the YAML 1.1 resolvers too, so strings like ``"yes"`` stay quoted and the file means
    the same to a plain ``yaml.safe_load``.
    """


_Dumper.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))

_OVERRIDE_RE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_][\w-]*)*)=(.*)$", re.S)


class ConfigError(ValueError):
    """A config that cannot be built; the message names the key, the source and the fix.

    ``key`` is the dotted key at fault (if any), ``source`` the file or override it came from and
    ``valid`` the keys that would have been accepted at that level.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        source: str | None = None,
        valid: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.key = key
        self.source = source
        self.valid = tuple(valid)


# --------------------------------------------------------------------------------------------
# YAML helpers


def load_yaml(text: str) -> Any:
    """Parse YAML text with the config loader (safe; YAML 1.2 floats and booleans)."""
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader subclass


def dump_yaml(data: Any) -> str:
    """Dump plain data (dicts, lists, scalars) as block YAML that :func:`load_yaml` reads back."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def _write_text_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see either the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# Types


@functools.cache
def _fields(cls: type) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """The init fields of a dataclass with their resolved type hints."""
    try:
        hints = typing.get_type_hints(cls)
    except NameError as err:
        raise TypeError(
            f"cannot resolve the type hints of {cls.__qualname__} ({err}); config dataclasses "
            "must be defined at module level with importable annotation names"
        ) from err
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); a union of several non-None types is returned unchanged."""
    if _is_union(tp):
        args = [a for a in get_args(tp) if a is not type(None)]
        optional = len(args) < len(get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return Union[tuple(args)], optional  # noqa: UP007 - runtime construction
    return tp, False


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _mapping_value_type(tp: Any) -> Any | None:
    """The value type of a mapping type (``dict[str, V]`` -> V), or None if not a mapping."""
    if tp is Any:
        return Any
    if tp is dict or tp is Mapping:
        return Any
    if get_origin(tp) in (dict, Mapping):
        args = get_args(tp)
        return args[1] if len(args) == 2 else Any
    return None


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and not get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _accepts_str(tp: Any) -> bool:
    """Whether a field of this type takes text (so an override's raw text can be kept)."""
    inner, _ = _strip_optional(tp)
    if inner is str or (isinstance(inner, type) and issubclass(inner, PurePath)):
        return True
    if get_origin(inner) is Literal:
        return all(isinstance(a, str) for a in get_args(inner))
    return False


class _Ctx:
    """Where values come from, for error messages."""

    def __init__(self, source: str | None) -> None:
        self.source = source

    def error(self, key: str | None, problem: str, valid: Sequence[str] = ()) -> ConfigError:
        where = f"{self.source}: " if self.source else ""
        at = f"{key}: " if key else ""
        return ConfigError(f"{where}{at}{problem}", key=key, source=self.source, valid=valid)


def _suggest(name: str, candidates: Sequence[str]) -> list[str]:
    return difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)


def _leaf_paths(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a dataclass (sections and leaves), for whole-path suggestions."""
    paths = []
    for name, (_, tp) in _fields(cls).items():
        path = f"{prefix}{name}"
        paths.append(path)
        inner, _ = _strip_optional(tp)
        if _is_dataclass_type(inner):
            paths.extend(_leaf_paths(inner, f"{path}."))
    return paths


def _unknown_key(ctx: _Ctx, root: type, cls: type, prefix: str, name: str) -> ConfigError:
    valid = list(_fields(cls))
    key = f"{prefix}.{name}" if prefix else name
    close = [f"{prefix}.{c}" if prefix else c for c in _suggest(name, valid)]
    if not close:  # the right name at the wrong level: ``lr`` for ``train.lr``
        all_paths = _leaf_paths(root)
        close = [p for p in all_paths if p.rsplit(".", 1)[-1] == name][:3]
        close = close or _suggest(key, all_paths)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    section = f"under '{prefix}'" if prefix else f"of {cls.__name__}"
    where = f"{ctx.source}: " if ctx.source else ""
    return ConfigError(
        f"{where}unknown key '{key}'.{hint} Valid keys {section}: {', '.join(valid)}.",
        key=key,
        source=ctx.source,
        valid=valid,
    )


# --------------------------------------------------------------------------------------------
# Building dataclasses from plain data


def _build(cls: type[T], data: Any, prefix: str, ctx: _Ctx, root: type) -> T:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ctx.error(
            prefix or None,
            f"expected a mapping of {cls.__name__} fields, got {_describe(data)}",
            valid=list(_fields(cls)),
        )
    fields = _fields(cls)
    for name in data:
        if not isinstance(name, str):
            raise ctx.error(prefix or None, f"keys must be strings, got {_describe(name)}")
        if name not in fields:
            raise _unknown_key(ctx, root, cls, prefix, name)
    kwargs: dict[str, Any] = {}
    for name, (field, tp) in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(tp, data[name], key, ctx, root)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ctx.error(key, "required key is missing", valid=list(fields))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # __post_init__ validation
        if isinstance(err, ConfigError):
            raise
        raise ctx.error(prefix or None, f"invalid {cls.__name__}: {err}") from err


def _convert(tp: Any, value: Any, key: str, ctx: _Ctx, root: type) -> Any:
    """Check ``value`` against the type hint ``tp`` and convert it (lists to tuples, str to Path)."""
    if tp is Any or tp is object:
        return value
    origin = get_origin(tp)
    args = get_args(tp)

    if _is_union(tp):
        if value is None:
            if type(None) in args:
                return None
            raise ctx.error(key, f"expected {_type_name(tp)}, got null")
        options = [a for a in args if a is not type(None)]
        errors: list[ConfigError] = []
        for option in options:
            try:
                return _convert(option, value, key, ctx, root)
            except ConfigError as err:
                errors.append(err)
        if len(options) == 1:
            raise errors[0]
        raise ctx.error(key, f"expected {_type_name(tp)}, got {_describe(value)}")

    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
        choices = [str(c) for c in args]
        close = _suggest(str(value), choices)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ctx.error(
            key,
            f"expected one of {', '.join(repr(c) for c in args)}, got {_describe(value)}.{hint}",
            valid=choices,
        )

    if _is_dataclass_type(tp):
        return _build(tp, value, key, ctx, root)

    if tp is type(None):
        if value is None:
            return None
        raise ctx.error(key, f"expected null, got {_describe(value)}")
    if value is None:
        raise ctx.error(key, f"expected {_type_name(tp)}, got null")

    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ctx.error(key, f"expected true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            raise ctx.error(key, f"expected an integer, got {value!r}; write it without a '.'")
        raise ctx.error(key, f"expected an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ctx.error(key, f"expected a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ctx.error(key, f"expected a string, got {_describe(value)}; quote it in YAML")
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, str | PurePath):
            return tp(value)
        raise ctx.error(key, f"expected a path, got {_describe(value)}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp:
            if value == member.value or value == member.name:
                return member
        valid = [str(m.value) for m in tp]
        raise ctx.error(key, f"expected one of {', '.join(valid)}, got {_describe(value)}", valid)

    if tp in (list, tuple) or origin in (list, tuple, Sequence):
        if not isinstance(value, list | tuple):
            hint = f"; write [{value}] for a list of one" if not isinstance(value, Mapping) else ""
            raise ctx.error(key, f"expected a list, got {_describe(value)}{hint}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if args == ((),):
                args = ()
            if len(value) != len(args):
                raise ctx.error(
                    key, f"expected a list of {len(args)} items, got {len(value)}: {value!r}"
                )
            return tuple(
                _convert(a, v, f"{key}[{i}]", ctx, root)
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        item = args[0] if args else Any
        items = [_convert(item, v, f"{key}[{i}]", ctx, root) for i, v in enumerate(value)]
        return tuple(items) if (tp is tuple or origin is tuple) else items

    value_type = _mapping_value_type(tp)
    if value_type is not None:
        if not isinstance(value, Mapping):
            raise ctx.error(key, f"expected a mapping, got {_describe(value)}")
        key_type = get_args(tp)[0] if get_args(tp) else Any
        return {
            _convert(key_type, k, key, ctx, root): _convert(value_type, v, f"{key}.{k}", ctx, root)
            for k, v in value.items()
        }

    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ctx.error(key, f"expected {_type_name(tp)}, got {_describe(value)}")


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, source: str | None = None) -> T:
    """Build and type-check a config dataclass from plain data (as read from YAML)."""
    if not _is_dataclass_type(cls):
        raise TypeError(f"{cls!r} is not a dataclass type")
    return _build(cls, data, "", _Ctx(source), cls)


# --------------------------------------------------------------------------------------------
# Back to plain data


def config_to_dict(obj: Any) -> dict[str, Any]:
    """A config (dataclass or mapping) as plain YAML-ready data: tuples -> lists, paths -> str."""
    data = _plain(obj, "")
    if not isinstance(data, dict):
        raise TypeError(f"expected a dataclass instance or a mapping, got {type(obj).__name__}")
    return data


def _plain(value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), f"{key}.{f.name}" if key else f.name)
            for f in dataclasses.fields(value)
            if f.init
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, enum.Enum):
        return _plain(value.value, key)
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _plain(value.item(), key)
    raise ConfigError(
        f"{key}: cannot store {_describe(value)} in a config; use YAML types "
        "(numbers, strings, booleans, lists, mappings, nested dataclasses)",
        key=key,
    )


def flatten_config(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-5}}`` -> ``{"train.lr": 1e-5}`` (lists are leaves)."""
    flat: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            flat.update(flatten_config(v, f"{key}."))
        else:
            flat[key] = v
    return flat


def save_config(obj: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically); :func:`load_config` reads it back."""
    path = Path(path)
    header = ""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        header = f"# {cls.__module__}.{cls.__qualname__}, resolved (defaults included)\n"
    _write_text_atomic(path, header + dump_yaml(config_to_dict(obj)))
    return path


# --------------------------------------------------------------------------------------------
# Overrides


def _parse_value(raw: str, key: str, ctx: _Ctx) -> Any:
    if raw == "":
        return ""
    try:
        return load_yaml(raw)
    except yaml.YAMLError as err:
        problem = str(err).splitlines()[0]
        raise ctx.error(
            key, f"cannot parse value {raw!r} ({problem}); quote strings, e.g. {key}='...'"
        ) from err


def _split_override(override: str, ctx: _Ctx) -> tuple[str, str]:
    match = _OVERRIDE_RE.match(override)
    if not match:
        raise ConfigError(
            f"malformed override {override!r}: expected key=value with a dotted key, "
            "e.g. train.lr=1e-5 or model.lora=null",
            source=ctx.source,
        )
    return match.group(1), match.group(2)


def _set_override(root: type, data: dict[str, Any], key: str, raw: str, ctx: _Ctx) -> None:
    """Set ``key`` (dotted) in the plain config ``data``, guided by the dataclass types."""
    parts = key.split(".")
    node: dict[str, Any] = data
    tp: Any = root
    for depth, part in enumerate(parts):
        prefix = ".".join(parts[:depth])
        last = depth == len(parts) - 1
        inner, _ = _strip_optional(tp)
        if _is_dataclass_type(inner):
            fields = _fields(inner)
            if part not in fields:
                raise _unknown_key(ctx, root, inner, prefix, part)
            field_type = fields[part][1]
        else:
            value_type = _mapping_value_type(inner)
            if value_type is None:
                raise ctx.error(
                    prefix,
                    f"is a {_type_name(tp)}, not a section, so '{key}' cannot be set",
                )
            field_type = value_type
        if last:
            value = _parse_value(raw, key, ctx)
            keep_raw = not isinstance(value, str) and (
                value is not None or not _strip_optional(field_type)[1]
            )
            if keep_raw and _accepts_str(field_type):
                value = raw
            _convert(field_type, value, key, ctx, root)  # type errors name this override
            node[part] = value
            return
        child = node.get(part)
        if child is None:
            section, _ = _strip_optional(field_type)
            if _is_dataclass_type(section):
                try:  # a disabled optional section (``lora: null``) comes back with its defaults
                    child = config_to_dict(section())
                except TypeError:
                    child = {}
            elif _mapping_value_type(section) is not None:
                child = {}
            else:
                raise ctx.error(
                    f"{prefix}.{part}" if prefix else part,
                    f"is a {_type_name(field_type)}, not a section, so '{key}' cannot be set",
                )
            node[part] = child
        elif not isinstance(child, dict):
            raise ctx.error(
                f"{prefix}.{part}" if prefix else part,
                f"is {_describe(child)}, not a section, so '{key}' cannot be set",
            )
        node = child
        tp = field_type


def format_override(key: str, value: Any) -> str:
    """The override string that sets ``key`` to ``value`` (for building command lines)."""
    if not _OVERRIDE_RE.match(f"{key}="):
        raise ConfigError(f"invalid override key {key!r}: expected a dotted name like train.lr")
    plain = _plain(value, key)
    text = yaml.dump(plain, Dumper=_Dumper, default_flow_style=True, width=float("inf"))
    text = text.removesuffix("\n").removesuffix("\n...").removesuffix("\n")
    return f"{key}={text}"


def _apply_to_data(
    cls: type, data: dict[str, Any], overrides: Sequence[str], source: str | None
) -> None:
    """Apply overrides to plain config data in place; each value is type-checked as it is set."""
    if isinstance(overrides, str):
        raise TypeError("overrides must be a sequence of 'key=value' strings, not one string")
    for override in overrides:
        ctx = _Ctx(f"override '{override}'" + (f" (on {source})" if source else ""))
        key, raw = _split_override(override, ctx)
        _set_override(cls, data, key, raw, ctx)


def _final_ctx(source: str | None, overrides: Sequence[str]) -> _Ctx:
    if not overrides:
        return _Ctx(source)
    return _Ctx(f"{source or 'defaults'} with overrides {' '.join(overrides)}")


def apply_overrides(config: T, overrides: Sequence[str], *, source: str | None = None) -> T:
    """A copy of ``config`` with ``key.sub=value`` overrides applied in order, and checked."""
    cls = type(config)
    if not _is_dataclass_type(cls):
        raise TypeError(f"expected a dataclass instance, got {cls.__name__}")
    data = config_to_dict(config)
    _apply_to_data(cls, data, overrides, source)
    return _build(cls, data, "", _final_ctx(source, overrides), cls)


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build config ``cls`` from a YAML file (or its defaults), then apply overrides.

    Raises :class:`ConfigError` naming the file, the key and the valid keys for a missing file,
    bad YAML, an unknown key (with a close-match suggestion) or a value of the wrong type.
    Required fields (no default) may come from the file or from an override.
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"{cls!r} is not a dataclass type")
    data: dict[str, Any] = {}
    source = None
    if path is not None:
        path = Path(path)
        source = str(path)
        data = copy.deepcopy(_read_config_file(path))
    _apply_to_data(cls, data, overrides, source)
    return _build(cls, data, "", _final_ctx(source, overrides), cls)


def _read_config_file(path: Path) -> Any:
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            siblings = [p.name for p in path.parent.iterdir() if p.suffix in (".yaml", ".yml")]
            close = _suggest(path.name, siblings)
            if close:
                hint = f" Did you mean {path.parent / close[0]}?"
            elif siblings:
                hint = f" Configs in {path.parent}: {', '.join(sorted(siblings))}."
        else:
            hint = f" (folder {path.parent} does not exist)"
        raise ConfigError(f"config file not found: {path}.{hint}", source=str(path))
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}", source=str(path)) from err
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, got {_describe(data)}",
            source=str(path),
        )
    return data


def parse_overrides(argv: Sequence[str]) -> tuple[Path | None, list[str]]:
    """Split CLI arguments into a config path and ``key=value`` overrides.

    Accepts ``--config FILE``, ``--config=FILE``, ``-c FILE`` or a bare ``*.yaml`` path, and
    overrides as ``key.sub=value`` (or ``--key.sub=value``, the official launcher's style).
    """
    config: Path | None = None
    overrides: list[str] = []

    def set_config(value: str) -> None:
        nonlocal config
        if config is not None:
            raise ConfigError(f"more than one config file given: {config} and {value}")
        config = Path(value)

    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config", "-c"):
            if i + 1 >= len(args):
                raise ConfigError(f"{arg} needs a file, e.g. {arg} configs/tiny/gp_l_sft.yaml")
            set_config(args[i + 1])
            i += 2
            continue
        if arg.startswith("--config="):
            set_config(arg.split("=", 1)[1])
        elif _OVERRIDE_RE.match(arg):
            overrides.append(arg)
        elif arg.startswith("--") and _OVERRIDE_RE.match(arg[2:]):
            overrides.append(arg[2:])
        elif not arg.startswith("-") and arg.endswith((".yaml", ".yml")):
            set_config(arg)
        else:
            raise ConfigError(
                f"unexpected argument {arg!r}: expected --config FILE and overrides such as "
                "train.lr=1e-5 (no spaces around '=')"
            )
        i += 1
    return config, overrides
