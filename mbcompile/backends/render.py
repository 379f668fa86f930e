"""Rendering shared by both backends: the Jinja environment, the view of each block
a template gets, and the context common to both frameworks.

Block-specific text lives in `templates/<backend>/blocks/<template>.py.j2`: a
`define(m, used)` macro emitted once per template the network uses (`used`: the
keyword arguments its calls pass, so a helper has no parameter nobody passes) and an
`args(b)` macro for each call. Backends read the graph IR only: its network header,
its blocks with their typed parameters, and its shapes.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..analysis.cost import report
from ..ir.blocks import BLOCK_TYPES
from ..ir.blocks.base import spatial_convs
from ..ir.graph import Graph
from ..ir.layers import LAYER_UNITS, units_used
from ..ir.layers.mixed_conv import Mixed
from ..ir.norms import NORM_TYPES, NORMS_BY_KIND
from ..version import __version__
from .naming import KerasNames, fstring
from .pyformat import call, split_args

if TYPE_CHECKING:  # imported by environment(): the cost commands use no template
    import jinja2


def template_dir() -> Path:
    """Templates ship inside the wheel; in a checkout they sit at the repo root."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "mbcompile templates not found; the installation is incomplete"
    )


_ENV: jinja2.Environment | None = None


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs, so that a fresh process does not
    compile them all again (`mbcompile check` starts ~0.3 s sooner). Jinja keeps
    them in the system's temporary folder, in a folder private to the user, keyed
    by each template's source. A cache that cannot be read or written (a full or
    read-only disk, a damaged file) is passed over: it never fails a run."""
    import jinja2

    class TemplateCache(jinja2.FileSystemBytecodeCache):
        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            try:
                super().load_bytecode(bucket)
            except Exception:
                bucket.reset()

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            with contextlib.suppress(OSError):
                super().dump_bytecode(bucket)

    try:
        return TemplateCache()
    except (OSError, RuntimeError):  # no usable temporary folder
        return None


def environment() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(template_dir())),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
            bytecode_cache=_bytecode_cache(),
        )
        _ENV.filters["call"] = _call_filter
        _ENV.filters["py"] = py_literal
        _ENV.filters["fstring"] = fstring
        _ENV.globals["keras_names"] = KerasNames
    return _ENV


def _call_filter(
    args: str, indent: int, head: str, tail: str = "", comment: str = ""
) -> str:
    return call(indent, head, " ".join(args.split()), tail, comment)


def py_literal(value: Any) -> str:
    """A Python literal for a value that goes into generated code.

    Strings are always emitted escaped and double-quoted (never pasted raw), so no
    spec content can become code.
    """
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        items = ", ".join(py_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    raise TypeError(f"cannot emit {type(value).__name__} into generated code")


@dataclass
class BlockView:
    """One block as a template sees it."""

    type: str  # block type (registry name)
    template: str  # the template (and generated helper) that builds it
    role: str  # stem, stage, neck, head or classifier
    index: int  # position in the model body
    number: int | None  # position among stage-table blocks (Keras block ids)
    group: int | None  # the item of `stages` it comes from (timm's stage)
    position: int | None  # its position in that item (timm's block in the stage)
    p: Any  # the block's typed parameters (see mbcompile/ir/blocks/)
    shape: tuple[int, ...]  # output shape, (C, H, W) or (F,)
    x: dict[str, Any] = field(default_factory=dict)  # backend-specific spellings


def block_views(graph: Graph) -> list[BlockView]:
    views, number, in_group = [], 0, {}
    for block in graph.blocks:
        stage = block.role == "stage"
        group = block.stage
        views.append(
            BlockView(
                type=block.type,
                template=BLOCK_TYPES[block.type].template,
                role=block.role,
                index=block.index,
                number=number if stage else None,
                group=group,
                position=in_group.get(group, 0) if stage else None,
                p=block.params,
                shape=block.out_shape,
            )
        )
        number += stage
        if stage:
            in_group[group] = in_group.get(group, 0) + 1
    return views


def class_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def feature_taps(graph: Graph) -> dict[int, tuple[str, ...]]:
    """Block index -> names of the outputs it provides (backbone feature taps)."""
    taps: dict[int, tuple[str, ...]] = {}
    for name, node in graph.outputs.items():
        index = next(b.index for b in graph.blocks if b.output == node)
        taps[index] = (*taps.get(index, ()), name)
    return taps


def spell_padding(blocks: list[BlockView], spell) -> None:
    """`b.x["pad"][field]`: each k x k convolution's padding as the backend writes
    it (`spell(conv)`, None where the framework's own padding is exact; for a mixed
    conv, its groups' spellings, or None where all are)."""

    def spelled(conv):
        if isinstance(conv, Mixed):
            pads = tuple(spell(group) for group in conv.convs)
            return pads if any(pads) else None
        return spell(conv)

    for b in blocks:
        b.x["pad"] = {name: spelled(conv) for name, conv in spatial_convs(b.p).items()}


def options(graph: Graph, blocks: list[BlockView], norm: Any) -> dict[str, Any]:
    """What the helpers of several block types share, so that a network that does
    not use an option gets helpers without it: explicit padding (after
    `spell_padding`), dilation, mixed convs (a tuple of kernels), anti-aliasing (a
    flag `aa` to the blocks whose conv it follows), convolutions with a bias of their
    own, the network's norm (its settings, and its label from the backend's `norm`
    template; none left once batch norms are folded), squeeze-excite (`se`: how the
    network builds it; `se_home`: the template before whose helper its helper is
    emitted, none where an attention unit is built in its place; `se_function` and
    `se_class`: what the blocks call; `se_acts`: its activations, and
    `se_takes_act` where they differ: each block then passes its own, as the
    spec's `squeeze_excite: {act: block}` decided)."""
    convs = [conv for b in blocks for conv in spatial_convs(b.p).values()]
    with_se = [b for b in blocks if getattr(b.p, "se", None)]
    kinds = {graph.node(n)["kind"] for n in graph.order}
    norm_type = NORM_TYPES[graph.network.norm.type]
    se = with_se[0].p.se if with_se else None
    se_acts = sorted({b.p.se.act for b in with_se})
    if len(se_acts) > 1:  # only the block's own activation varies
        assert all(b.p.se.act == b.p.act for b in with_se)
    return {
        "fold_bn": graph.network.fold_batch_norm,
        "uses_bn": "bn" in kinds,  # torchvision's layouts spell BatchNorm2d out
        "uses_norm": norm_type.kind in kinds,
        "norm": graph.network.norm,  # the spec's settings of the network's norm
        "norm_activates": norm_type.activates,
        "norm_label": str(norm.label()),  # the norm template's name of its layer
        "uses_pad": any(pad for b in blocks for pad in b.x["pad"].values()),
        "uses_dilation": any(conv.dilation != 1 for conv in convs),
        "uses_groups": any(
            graph.node(n)["kind"] == "conv" and graph.node(n)["attrs"]["groups"] > 1
            for n in graph.order
        ),
        "uses_mixed": any(isinstance(conv, Mixed) for conv in convs),
        "uses_aa": any(conv.pool for conv in convs),
        # a conv with its own bias before its norm (MobileNetV5's stem)
        "uses_bias": any(getattr(b.p, "bias", False) for b in blocks),
        "uses_se": bool(with_se),
        "se": se,
        # squeeze-excite's own helper; an attention unit built in its place (se.unit)
        # is a layer piece, emitted with the others
        "se_home": with_se[0].template if se and se.unit is None else None,
        # what the blocks call: the Keras helper function, the PyTorch class
        "se_function": se and (se.unit or "squeeze_excite"),
        "se_class": se and class_name(se.unit or "squeeze_excite"),
        # the epsilon of the norm inside such a unit (Global Context's layer norm)
        "se_norm_eps": se and se.unit and _norm_epsilon(graph, se.unit),
        "se_acts": se_acts,
        "se_takes_act": len(se_acts) > 1,
    }


def _norm_epsilon(graph: Graph, unit: str) -> float | None:
    """The epsilon of the norm among a layer unit's ops (Global Context's layer
    norm), if it has one."""
    for node_id in graph.order:
        node = graph.node(node_id)
        if node["kind"] in NORMS_BY_KIND and node["attrs"].get("unit") == unit:
            return node["attrs"]["eps"]
    return None


def helpers_needed(templates, norm: Any, units=()) -> set[str]:
    """The shared helpers (`BlockType.helpers`, `NormType.helpers`,
    `LayerUnit.helpers`) that the block types rendered by `templates`, the network's
    norm (its settings) and the layer units `units` ask for."""
    wanted = [t.helpers for t in BLOCK_TYPES.values() if t.template in templates]
    wanted += [LAYER_UNITS[unit].helpers for unit in units]
    return set().union(*wanted, NORM_TYPES[norm.type].helpers)


def keywords_used(blocks: list[BlockView], macros: dict) -> dict[str, set[str]]:
    """Template -> the keyword arguments its calls pass (read off the calls)."""
    used: dict[str, set[str]] = {t: set() for t in macros}
    for b in blocks:
        if b.template in macros:
            args = split_args(" ".join(str(macros[b.template].args(b)).split()))
            used[b.template] |= {a.split("=")[0] for a in args if "=" in a}
    return used


def _activations(graph: Graph) -> set[str]:
    """Activations of the network's blocks (squeeze-excite's own are spelled by
    each backend's squeeze-excite helper)."""
    used = set()
    for block in graph.blocks:
        used |= {getattr(block.params, "act", None)}
        used |= {getattr(block.params, "hidden_act", None)}
    return used - {None}


def common_context(graph: Graph, backend: str) -> dict[str, Any]:
    net = graph.network
    blocks = block_views(graph)
    templates = dict.fromkeys(b.template for b in blocks if b.role != "classifier")
    neck = next((b for b in blocks if b.role == "neck"), None)
    macros = {
        t: environment().get_template(f"{backend}/blocks/{t}.py.j2").module
        for t in templates
    }
    units = units_used(graph)
    return {
        "version": __version__,
        "backend": backend,
        "net": net,
        "spec_file": Path(net.source).name,
        "conventions": net.conventions,
        "class_name": class_name(net.name),
        "costs": report(graph),
        "blocks": blocks,
        "features": [b for b in blocks if b.role not in ("neck", "classifier")],
        "neck": neck,
        # blocks whose outputs the neck fuses, in order
        "neck_inputs": list(neck.p.sources) if neck else [],
        "classifier": next((b for b in blocks if b.role == "classifier"), None),
        "templates": list(templates),
        "macros": macros,
        # the layer units the network uses, and their pieces (what generated code
        # calls: MixedConv2d, anti_alias, ...), emitted once each
        "units": units,
        "layer_pieces": [
            environment().get_template(f"{backend}/layers/{unit}.py.j2").module
            for unit in units
        ],
        "activations": sorted(_activations(graph)),
        "input_shape": graph.shape("input"),
        "squeeze_excite": environment()
        .get_template(f"{backend}/squeeze_excite.py.j2")
        .module,
        # the network's norm: its constants, helper and call (templates/*/norms/)
        "norm": environment()
        .get_template(f"{backend}/norms/{net.norm.type}.py.j2")
        .module,
        "taps": feature_taps(graph),
        "returns": (
            "feature maps by name"
            if graph.outputs
            else ("logits" if net.include_top and net.num_classes else "features")
        ),
    }


def render(backend: str, context: dict[str, Any]) -> str:
    """Source text of the model module from the common and the backend's context
    (whose block spellings the calls need before their keywords are read)."""
    context = {**context, "used": keywords_used(context["blocks"], context["macros"])}
    text = environment().get_template(f"{backend}/model.py.j2").render(**context)
    # Templates may leave runs of blank lines where optional parts were skipped.
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text.rstrip("\n") + "\n"
