"""Variants: a method plus explicit option overrides, named `method[key=value,...]` (one row
of a table), grids of them (`partedit[t_e=10|30]`), and the `--set METHOD.KEY=VALUE` flags:
the text a user writes, parsed (no method is imported here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from partedit_bench.errors import UserError

_VARIANT_RE = re.compile(r"^(?P<method>[^\[\]]+?)(?:\[(?P<opts>[^\[\]]*)\])?$")


@dataclass(frozen=True)
class VariantSpec:
    """One row of a results table: a method with explicit option overrides."""

    method: str
    overrides: tuple[tuple[str, Any], ...] = ()
    label: str | None = None
    #: The swept keys of the grid this row belongs to and all their values (`partedit[t_e=
    #: 10|30]`), recorded with the job; empty for a single variant.
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        base = self.method.rsplit(":", 1)[-1] if ":" in self.method else self.method
        if not self.overrides:
            return base
        inner = ",".join(f"{k}={_format_value(v)}" for k, v in self.overrides)
        return f"{base}[{inner}]"


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    return str(value)


def parse_scalar(text: str) -> Any:
    """Parses a command-line value as YAML would (`30` -> int, `0.4` -> float, `true`)."""
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def split_method_list(text: str) -> list[str]:
    """Splits `a,b[k=1,j=2],c` on the commas outside brackets."""
    items, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    if depth != 0:
        raise UserError(f"unbalanced brackets in --methods '{text}'")
    items.append(current.strip())
    return [item for item in items if item]


def parse_variant(text: str) -> VariantSpec:
    """Parses `partedit` or `partedit[t_e=30,omega=1.5]` (one row; see `parse_variants`)."""
    specs = parse_variants(text)
    if len(specs) != 1:
        raise UserError(f"'{text}' is a grid of {len(specs)} rows where one row is expected")
    return specs[0]


def parse_variants(text: str) -> list[VariantSpec]:
    """Parses `partedit`, `partedit[t_e=30,omega=1.5]`, or a grid: `partedit[t_e=10|30,
    omega=1|1.5]` is the product of the values, one row per combination, each named by its
    values and carrying the grid's axes. A malformed grid (an empty value, a value twice, a
    key twice) is one line."""
    import itertools

    match = _VARIANT_RE.match(text.strip())
    if not match:
        raise UserError(f"cannot parse method '{text}': expected name or name[key=value,...]")
    axes: list[tuple[str, list[Any]]] = []
    for item in (match.group("opts") or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"cannot parse option '{item}' in '{text}': expected key=value")
        if key in dict(axes):
            raise UserError(f"option '{key}' is given twice in '{text}'")
        alternatives = value.split("|")
        if len(alternatives) > 1 and any(not a.strip() for a in alternatives):
            raise UserError(f"grid '{key}={value}' in '{text}' has an empty value")
        values = [parse_scalar(a.strip()) for a in alternatives]
        if len({repr(v) for v in values}) != len(values):
            raise UserError(f"grid '{key}={value}' in '{text}' lists a value twice")
        axes.append((key, values))
    grid = tuple((k, tuple(v)) for k, v in axes if len(v) > 1)
    keys = [k for k, _ in axes]
    return [
        VariantSpec(match.group("method").strip(), tuple(zip(keys, combo, strict=True)), None, grid)
        for combo in itertools.product(*(v for _, v in axes))
    ]


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """`--set METHOD.KEY=VALUE` flags (run, edit) as {method: {key: value}}."""
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, option = key.rpartition(".")
        if not sep or not dot or not option.strip() or not method.strip():
            raise UserError(f"--set expects method.key=value, got '{item}'")
        found.setdefault(method.strip(), {})[option.strip()] = parse_scalar(value.strip())
    return found
