"""The shape of the package: stages that import one way, a registry that is the one
list of block types, an IR that carries the whole network, and generated helpers
that read decisions instead of making them."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

from helpers import CANONICAL, ROOT, SPECS
from mbcompile import compiler
from mbcompile.analysis.diagram import colour
from mbcompile.backends import naming
from mbcompile.frontend import conventions, schema
from mbcompile.frontend.model import Spec, StageRow
from mbcompile.ir.blocks import BLOCK_TYPES, ROW_MODELS
from mbcompile.ir.blocks.base import HELPERS
from mbcompile.ir.norms import NORM_MODELS, NORM_TYPES

PACKAGE = ROOT / "mbcompile"

# Which stage may import which: data flows front end -> IR -> analysis -> backends
# -> checkpoints and pipeline -> export -> measuring -> command line. The front end
# reads the block registry (the row models are the block modules'), so frontend and
# ir both sit at the bottom.
LAYERS = {
    "version": 0,
    "errors": 0,
    "files": 0,
    "extras": 0,  # which optional packages a feature needs, and the hint to install
    "frontend": 1,
    "ir": 1,
    "analysis": 2,
    "backends": 3,
    "checkpoints": 4,  # weights files read and written, matched to the IR
    "compiler": 4,
    "export": 5,  # a checkpoint's model in a deployment format, validated
    "bench": 6,  # measuring: what export writes, run in its runtime, and a timer
    "project": 5,
    "api": 5,
    "cli": 7,
    "__main__": 8,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node of `tree` but those under `if TYPE_CHECKING:`, which only type
    checkers import (the package's face names its API for them that way)."""
    for node in ast.iter_child_nodes(tree):
        typing_only = (
            isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        )
        for kept in node.orelse if typing_only else [node]:
            yield kept
            yield from _runtime_nodes(kept)


def _imports(path: Path) -> set[str]:
    """mbcompile modules that `path` imports when it runs, at any depth of the
    code."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mbcompile")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("mbcompile"):
                continue
            for alias in node.names:  # `from . import x` may name a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    return found


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)
        graph.add_node(source)
        for target in _imports(path):
            if target != source:
                graph.add_edge(source, target)
    return graph


def _stage(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_the_package_has_no_import_cycle():
    cycles = list(nx.simple_cycles(_import_graph()))
    assert not cycles, cycles


def test_stages_import_only_earlier_stages():
    wrong = []
    for source, target in _import_graph().edges:
        if source == "mbcompile" or target == "mbcompile":
            continue  # the package's face: its version
        if LAYERS[_stage(target)] > LAYERS[_stage(source)]:
            wrong.append(f"{source} -> {target}")
    assert not wrong


def test_backends_read_the_ir_not_the_spec():
    """Backends take everything from the graph; of the front end they know only
    the Conventions record the network header holds."""
    for path in (PACKAGE / "backends").glob("*.py"):
        front = {m for m in _imports(path) if _stage(m) == "frontend"}
        assert front <= {"mbcompile.frontend.conventions"}, (path.name, front)


def test_subcommands_do_not_import_each_other():
    graph = _import_graph()
    commands = [m for m in graph if m.startswith("mbcompile.cli.")]
    for command in commands:
        others = {t for t in graph.successors(command) if t in commands}
        assert others <= {"mbcompile.cli.options"}, (command, others)


# ------------------------------------------------------------------- the registry


def test_every_registered_block_type_is_complete():
    for name, block in BLOCK_TYPES.items():
        for backend in ("keras", "torch"):
            template = (
                ROOT / "templates" / backend / "blocks" / f"{block.template}.py.j2"
            )
            assert template.is_file() or name == "classifier", template
        assert block.colour.startswith("#") and colour(name) == block.colour
    colours = [b.colour for b in BLOCK_TYPES.values()]
    assert len(set(colours)) == len(colours), "block types share a colour"


def _names_tested(path: Path, names: set[str]) -> list[str]:
    """Registered names that the code of `path` spells out anywhere but in a table
    (as a key or value of a dict literal): comparisons, `in` tests, subscripts."""
    tree = ast.parse(path.read_text())
    tables = {
        id(item)
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for item in (*node.keys, *node.values)
    }
    return [
        f"{path.name}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and node.value in names
        and id(node) not in tables
    ]


def test_backends_ask_units_instead_of_testing_their_names():
    """Adding a block type never edits a backend: backends read what each block
    type declares (its template, classes, helpers), never test which one it is.
    (`classifier` is also a block's role, which backends do read.)"""
    rows = [BLOCK_TYPES[name] for name in ROW_MODELS]
    names = {t.name for t in rows} | {t.template for t in rows} | set(NORM_TYPES)
    found = []
    for path in sorted((PACKAGE / "backends").glob("*.py")):
        found += _names_tested(path, names)
    assert not found
    for unit in (*BLOCK_TYPES.values(), *NORM_TYPES.values()):
        assert unit.helpers <= set(HELPERS), unit.name


def test_the_name_test_finds_a_name_test(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        'table = {"mobile_attention": 1, "style": "conv_bn_act"}\n'
        'uses = "mobile_attention" in templates\n'
        'name = names["conv_bn_act"]\n'
    )
    assert _names_tested(probe, set(BLOCK_TYPES)) == [
        "probe.py:2: 'mobile_attention'",
        "probe.py:3: 'conv_bn_act'",
    ]


def test_a_block_type_no_reference_names_needs_no_naming_entry():
    # keras.applications' style, spelled out by hand: a conv after its part, its BN
    # "<part>_bn", the squeeze-excite under "<part>se_", V1's own table untouched.
    names = naming.keras_names(
        conventions.resolve("keras_applications", "v1", {}), "v1"
    )
    expected = {
        "expand.conv": "new_block_3_expand",
        "expand.bn": "new_block_3_expand_bn",
        "key.down.conv": "new_block_3_key_down",
        "dw.pad": "new_block_3_dw_pad",
        "se.fc1": "new_block_3_se_conv",
        "add": "new_block_3_add",
    }
    for part, name in expected.items():
        assert naming.keras_layer_name(names, "new_block", part, 3) == name
    v1 = "depthwise_separable"
    assert naming.keras_layer_name(names, v1, "dw.conv", 3) == "conv_dw_3"
    assert naming.keras_layer_name(names, v1, "add", 3) == "conv_3_add"


def test_every_registered_norm_is_complete():
    """A norm is one unit: its module (registered), one op kind, a template per
    backend, its settings in the spec's union and the schema."""
    kinds = [norm.kind for norm in NORM_TYPES.values()]
    assert len(set(kinds)) == len(kinds)
    for name in NORM_TYPES:
        for backend in ("keras", "torch"):
            assert (ROOT / "templates" / backend / "norms" / f"{name}.py.j2").is_file()
    union = Spec.model_fields["norm"].annotation.__args__
    assert set(union) == set(NORM_MODELS.values())
    defs = schema.build()["$defs"]
    assert {m.__name__ for m in NORM_MODELS.values()} <= set(defs)


def test_the_spec_and_the_schema_take_their_rows_from_the_registry():
    union = StageRow.__origin__.__args__  # Annotated[Union[...], discriminator]
    assert set(union) == set(ROW_MODELS.values())
    defs = schema.build()["$defs"]
    assert {m.__name__ for m in ROW_MODELS.values()} <= set(defs)


# ---------------------------------------------------------- the IR carries it all


def test_blocks_know_their_role_and_the_spec_path_they_came_from():
    _, graph = compiler.load_and_expand(SPECS / "v3_large.yaml")
    roles = [b.role for b in graph.blocks]
    assert roles == ["stem"] + ["stage"] * 15 + ["head", "classifier"]
    assert graph.blocks[0].origin == ("stem",)
    assert [b.origin for b in graph.blocks[1:16]] == [("stages", i) for i in range(15)]
    assert graph.blocks[-2].origin == ("head", "conv")
    assert graph.network.name == "mobilenet_v3_large"
    assert graph.network.conventions.bn_epsilon == 1e-3


@pytest.mark.parametrize("name", CANONICAL)
def test_every_batch_norm_decides_whether_it_folds(name):
    _, graph = compiler.load_and_expand(SPECS / f"{name}.yaml")
    _, folded = compiler.load_and_expand(
        SPECS / f"{name}.yaml", ["fold_batch_norm=true"]
    )
    norms = [graph.node(n) for n in graph.order if graph.node(n)["kind"] == "bn"]
    assert norms and all(n["attrs"]["foldable"] for n in norms)
    # Every batch norm of these networks follows a conv, so none is left once folded.
    assert not [n for n in folded.order if folded.node(n)["kind"] == "bn"]


# ------------------------------------------------- templates read the decisions


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_generated_helpers_do_not_decide_again(backend):
    """The residual and expansion rules live in the block modules; generated
    helpers take `residual=` and `expanded=` from the calls."""
    for name in CANONICAL:
        text = (ROOT / "generated" / backend / f"{name}.py").read_text()
        assert "stride == 1" not in text
        assert "!= in_c" not in text and "!= in_channels" not in text
