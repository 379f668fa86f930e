"""What every normalisation unit shares: the descriptor a norm module registers,
the settings of norms that normalise groups of channels, and `Norm`, the network's
norm as the block modules add it to the graph.

A norm is one IR op kind. Its attributes are the channels plus what the unit
decides for each op (`NormType.attrs`); its weights are per-channel vectors, the
same in PyTorch's state_dict and in Keras, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, model_validator

from ...frontend.conventions import Conventions
from ...frontend.fields import MAX_CHANNELS, Positive, Strict, check


@dataclass(frozen=True)
class NormType:
    """Everything about one normalisation, registered in `mbcompile.ir.norms`."""

    name: str  # the spec's `norm: {type: <name>}`; templates/<backend>/norms/<name>
    kind: str  # its IR op kind
    settings: type[Strict]  # the validated `norm:` mapping
    # (the norm, channels, whether an activation follows) -> the op's attributes
    # besides `channels`
    attrs: Callable[[Norm, int, bool], dict[str, Any]]
    # op attributes -> the (C,) vectors it learns (weight, bias, ...), which
    # PyTorch's state_dict and Keras store in the same order
    trainable: Callable[[dict[str, Any]], int]
    # op attributes -> operations per output element, by cost field (cost.py)
    per_element: Callable[[dict[str, Any]], dict[str, int]]
    statistics: int = 0  # (C,) running statistics stored after the learned ones
    # the state_dict names of its tensors, learned then statistics (a prefix of
    # them: as many as `trainable` + `statistics` say)
    tensor_names: tuple[str, ...] = ("weight", "bias")
    # op attributes -> what makes the op impossible (groups that do not divide
    # the channels), or None
    check: Callable[[dict[str, Any]], str | None] = lambda attrs: None
    activates: bool = False  # applies the activation after it itself (no act op)
    folds: bool = False  # folds into the convolution before it (--fold-bn)
    dense: bool = False  # also normalises a dense layer's features
    # conventions profiles whose reference library builds it; other profiles refuse
    profiles: tuple[str, ...] = ("timm",)
    helpers: frozenset[str] = frozenset()  # shared helpers (see blocks.base.HELPERS)


@dataclass(frozen=True)
class Norm:
    """The network's norm where a block puts one: its type, the spec's settings
    for it, the conventions, and whether this one could fold into a convolution
    before it (a pre-norm cannot)."""

    type: NormType
    settings: Any
    conventions: Conventions
    foldable: bool = True


def eps_attrs(norm: Norm, channels: int, activated: bool) -> dict[str, Any]:
    """The attributes of a norm whose one setting is its epsilon."""
    return {"eps": norm.settings.eps}


# ------------------------------------------------------- norms over channel groups

Groups = Annotated[int, Field(ge=1, le=MAX_CHANNELS)]


class GroupedSettings(Strict):
    """Statistics over groups of channels: `group_size` channels each, or
    `groups` of them (neither: 32 groups, timm's default)."""

    group_size: Groups | None = None
    groups: Groups | None = None
    eps: Positive = 1e-5

    @model_validator(mode="after")
    def _one_grouping(self) -> GroupedSettings:
        check(
            self.group_size is None or self.groups is None,
            "give 'group_size' (channels per group) or 'groups' (how many), not both",
        )
        return self


def groups(settings: GroupedSettings, channels: int) -> int:
    """How many groups `channels` channels form (timm's _num_groups)."""
    if settings.group_size is None:
        return settings.groups or 32
    return channels // settings.group_size


def grouped_attrs(norm: Norm, channels: int) -> dict[str, Any]:
    """The attributes of a norm over channel groups: how many, of what size."""
    settings = norm.settings
    return {
        "groups": groups(settings, channels),
        "group_size": settings.group_size,
        "eps": settings.eps,
    }


def grouping_problem(attrs: dict[str, Any]) -> str | None:
    """Groups that do not divide the channels, which timm and the frameworks
    refuse."""
    channels, size, count = attrs["channels"], attrs["group_size"], attrs["groups"]
    if size is not None and channels % size:
        return f"{channels} channels do not split into groups of {size}"
    if size is None and channels % count:
        return f"{channels} channels do not split into {count} groups"
    return None
