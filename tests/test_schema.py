"""The spec JSON Schema: committed and fresh, pointed at by every shipped spec."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT
from mbcompile.frontend import schema
from mbcompile.frontend.model import Spec
from mbcompile.frontend.yamlsource import parse
from mbcompile.ir.blocks import ROW_MODELS, ROW_TYPES

SHIPPED = sorted(
    [*(ROOT / "specs").glob("*.yaml"), *(ROOT / "examples").glob("*.yaml")]
)


def test_committed_schema_is_fresh():
    committed = (ROOT / schema.SCHEMA_PATH).read_text()
    assert committed == schema.render(), (
        "stale; run `mbcompile schema -o schema/mbcompile-spec.schema.json`"
    )


def test_cli_prints_the_schema():
    run = subprocess.run(
        [sys.executable, "-m", "mbcompile", "schema"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(run.stdout) == json.loads(schema.render())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_specs_carry_a_modeline_to_the_schema(path):
    first = path.read_text().splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    target = (path.parent / first.removeprefix(prefix)).resolve()
    assert target == (ROOT / schema.SCHEMA_PATH).resolve()


def _check(value, node, defs, where=""):
    """A small validator for the parts of JSON Schema this schema uses: enough to
    show that editors accept the shipped specs and flag unknown keys."""
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in node:
        errors = [_check(value, option, defs, where) for option in node["anyOf"]]
        return [] if any(not e for e in errors) else min(errors, key=len)
    errors = []
    if "if" in node:  # only `{required: [...]}` conditions occur here
        met = isinstance(value, dict) and all(
            k in value for k in node["if"]["required"]
        )
        errors += _check(value, node.get("then" if met else "else", {}), defs, where)
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{where}: {value!r} not in enum")
    if "const" in node and value != node["const"]:
        errors.append(f"{where}: {value!r} != {node['const']!r}")
    if isinstance(value, dict):
        errors += [
            f"{where}: missing {r}" for r in node.get("required", []) if r not in value
        ]
    kind = node.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        props = node.get("properties", {})
        for key, item in value.items():
            if key in props:
                errors += _check(item, props[key], defs, f"{where}.{key}")
            elif node.get("additionalProperties") is False:
                errors.append(f"{where}: unknown key {key!r}")
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        for i, item in enumerate(value):
            errors += _check(item, node.get("items", {}), defs, f"{where}[{i}]")
    elif kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        errors.append(f"{where}: not an integer")
    elif kind == "string" and not isinstance(value, str):
        errors.append(f"{where}: not a string")
    return errors


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_specs_satisfy_the_schema(path):
    built = schema.build()
    data = parse(path.read_text(), str(path)).data
    assert _check(data, built, built["$defs"]) == []


def test_schema_flags_typos_and_knows_every_key():
    built = schema.build()
    bad = {"widht_multiplier": 1.0, "stages": [{"block": "bneck", "kk": 3}]}
    errors = _check(bad, built, built["$defs"])
    assert any("missing name" in e for e in errors)
    assert not any("missing" in e for e in _check({"extends": "x.yaml"}, built, {}))
    assert any("unknown key 'widht_multiplier'" in e for e in errors)
    assert any("unknown key 'kk'" in e for e in errors)
    assert set(Spec.model_fields) | {"extends", "all_rows"} == set(built["properties"])
    row_defs = {m.__name__ for m in ROW_MODELS.values()}
    assert len(row_defs) == len(ROW_TYPES)
    all_rows = built["properties"]["all_rows"]["properties"]
    for name in row_defs:
        assert set(built["$defs"][name]["properties"]) - {"block"} <= set(all_rows)
