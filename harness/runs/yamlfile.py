"""A config file read as YAML: safely (no tag builds a Python object), a key given twice refused
(plain YAML keeps the last), and every mistake a `ConfigError` of one line naming the file and
the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """A config the user must fix; its text is one line: `file: field: what is wrong`."""

    def __init__(self, file: str | Path, field: str, message: str):
        self.file, self.field = str(file), field
        self.message = " ".join(str(message).split())  # one line, whatever the cause said
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


# --- YAML -----------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader (no tag builds a Python object) that also refuses a key given twice, which
    plain YAML resolves silently to the last one."""


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}" if mark else "yaml"
        what = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, where, f"invalid YAML: {what}") from None
