"""Run configuration: `RunConfig`, whose fields carry their help text (the `run` flags are
generated from them), and the method variants with their options.

Method options: `--set method.key=value` over `--method-config FILE` (YAML `options:` and
`variants:`; without it, a backbone folder's `default_methods.yaml`) over the method's own
defaults.
From Python: `RunConfig(methods="p2p", backbone="sdxl", ...)` and
`partedit_bench.benchmark.run_benchmark(cfg)`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from partedit_bench.api import (
    METHOD_REGISTRY,
    EditMethod,
    build_options,
    options_to_dict,
    resolve_method_class,
)
from partedit_bench.errors import UserError, did_you_mean, safe_name
from partedit_bench.io import stable_hash  # noqa: F401 (re-exported)
from partedit_bench.variants import VariantSpec, parse_sets, parse_variants, split_method_list


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class RunConfig:
    """Everything `partedit-bench run` takes."""

    suite: str = _help("suite name (see `list suites`), folder or YAML file", default="partworld")
    methods: str = _help(
        "comma-separated methods or variants, e.g. identity,partedit[t_e=30]; `all` = every "
        "registered method (those that cannot run on the backbone are recorded as skipped)",
        default="all",
    )
    backbone: str = _help(
        "backbone name (see `list backbones`) or a diffusers folder", default="partworld-sd"
    )
    limit: int | None = _help("run only the first N samples of the suite", default=None)
    seeds: str = _help("comma-separated seeds for the methods' own noise", default="0")
    output: str | None = _help("run folder (default results/<suite>__<backbone>)", default=None)
    shard: str | None = _help(
        "i/n: run the i-th of n shards (0-based); default from RANK/"
        "WORLD_SIZE or SLURM array variables",
        default=None,
    )
    device: str = _help(
        "torch device; auto = cuda:LOCAL_RANK when a GPU exists, else cpu", default="auto"
    )
    dtype: str = _help(
        "auto (fp16 on GPU for real weights, else fp32), float32, float16, bfloat16", default="auto"
    )
    set: list[str] = _help(
        "method option override method.key=value (repeatable)", default_factory=list
    )
    method_config: str | None = _help(
        "YAML file: `options:` per method, `variants:` rows (default: the backbone's "
        "default_methods.yaml when it ships one; `none` for the methods' own defaults)",
        default=None,
    )
    check_tensors: bool = _help(
        "check that every tensor entering the models is on their device and in their dtype "
        "(slower; for a new method, dtype or device)",
        default=False,
    )
    recompute: bool = _help("redo jobs that already have a complete record", default=False)
    overwrite: bool = _help("replace a run folder whose configuration differs", default=False)

    def method_config_path(self) -> str | None:
        """--method-config, else the backbone's shipped default_methods.yaml (if any)."""
        if self.method_config:
            return None if self.method_config == "none" else self.method_config
        from partedit_bench.engine.registry import default_methods_file

        path = default_methods_file(self.backbone)
        return str(path) if path is not None else None

    def seed_list(self) -> list[int]:
        try:
            seeds = [int(s) for s in str(self.seeds).split(",") if s.strip()]
        except ValueError as exc:
            raise UserError(
                f"--seeds must be comma-separated integers, got '{self.seeds}'"
            ) from exc
        if not seeds:
            raise UserError("--seeds is empty")
        for seed in seeds:
            if not 0 <= seed < 2**63:
                raise UserError(f"--seeds: {seed} is outside 0 .. 2**63 - 1 (a generator seed)")
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise UserError(f"--seeds lists {', '.join(map(str, twice))} more than once")
        return seeds

    def limit_value(self) -> int | None:
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1, got {self.limit}")
        return self.limit

    def output_dir(self) -> Path:
        if self.output:
            return Path(self.output)
        suite = Path(self.suite).stem if self.suite.endswith((".yaml", ".yml")) else self.suite
        backbone = self.backbone.rstrip("/").replace(os.sep, "_")
        return Path("results") / f"{Path(suite).name}__{Path(backbone).name}"


@dataclass
class Variant:
    """A resolved method variant: one row of the results table."""

    spec: VariantSpec
    cls: type[EditMethod]
    options: Any

    @property
    def name(self) -> str:
        return self.spec.name

    def options_dict(self) -> dict[str, Any]:
        return options_to_dict(self.options)


def resolve_variants(methods: str, sets: list[str], method_config: str | None) -> list[Variant]:
    """Resolves `--methods`, `--method-config` and `--set` into variants, checking every
    method name and option key before anything runs."""
    items = [
        name
        for item in split_method_list(methods)
        for name in (METHOD_REGISTRY if item.strip() == "all" else [item])
    ]
    specs = [spec for item in items for spec in parse_variants(item)]
    defaults: dict[str, dict[str, Any]] = {}
    if method_config:
        defaults, extra_specs = read_method_config(Path(method_config))
        # a config's extra rows join the run when their method does (a default config's
        # `partedit[...]` row is not added to `--methods p2p`); alone they are the run
        chosen = {s.method for s in specs}
        specs.extend(s for s in extra_specs if not chosen or s.method in chosen)
    if not specs:
        raise UserError("no methods given")
    set_by_method = parse_sets(sets)
    for method in set_by_method:
        if method not in {s.method for s in specs}:
            raise UserError(f"--set names method '{method}', which is not in this run")
    variants: dict[str, Variant] = {}
    for spec in specs:
        cls = resolve_method_class(spec.method)
        overrides = dict(spec.overrides)
        overrides.update(set_by_method.get(spec.method, {}))
        spec = VariantSpec(spec.method, tuple(sorted(overrides.items())), spec.label, spec.grid)
        options = build_options(cls, {**defaults.get(spec.method, {}), **overrides})
        variant = Variant(spec, cls, options)
        previous = variants.get(variant.name)
        if previous is not None and previous.options_dict() != variant.options_dict():
            raise UserError(f"two variants are named '{variant.name}' with different options")
        variants[variant.name] = variant
    return list(variants.values())


def read_method_config(path: Path) -> tuple[dict[str, dict[str, Any]], list[VariantSpec]]:
    """Reads a method config: `options: {method: {key: value}}` (defaults for every row of the
    method; rows keep their plain names) and `variants:` (extra rows, `name[k=v]` strings or
    `{method, label, options}` mappings)."""
    if not path.is_file():
        raise UserError(f"method config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"malformed method config {path}: {str(exc).splitlines()[0]}") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"method config {path} is not a text (UTF-8) file: {exc.reason}") from exc
    if not isinstance(data, dict) or set(data) - {"options", "variants"}:
        raise UserError(
            f"malformed method config {path}: expected keys 'options' and/or 'variants'"
        )
    options = data.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise UserError(f"malformed method config {path}: 'options' maps method -> {{key: value}}")
    from partedit_bench.api import METHOD_REGISTRY

    for method in options:
        if method not in METHOD_REGISTRY and ":" not in str(method):
            raise UserError(
                f"{path}: options for unknown method '{method}'"
                f"{did_you_mean(str(method), METHOD_REGISTRY)}"
            )
    specs = []
    for item in data.get("variants") or []:
        if isinstance(item, str):
            specs.extend(parse_variants(item))
        elif isinstance(item, dict) and "method" in item:
            opts = item.get("options") or {}
            specs.append(
                VariantSpec(
                    str(item["method"]),
                    tuple(sorted(opts.items())),
                    None
                    if item.get("label") is None
                    else safe_name(item["label"], f"{path}: variant label"),
                )
            )
        else:
            raise UserError(f"malformed method config {path}: bad variant {item!r}")
    return options, specs


def config_fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(RunConfig))
