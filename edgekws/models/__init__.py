"""Model families, registered timm-style: a name maps to a search space, an architecture, a
supernet class, the static subnet class that extraction produces, and the family's graph as
costed ops (`edgekws.costs`).

    create_supernet("dscnn", num_classes=12)      # the trainable supernet
    build_subnet(spec, num_classes=12)            # a plain model rebuilt from its spec alone

The registry itself is torch-free: model classes are named "module:Class" and imported when a
model is first built, and sizes come from the cost table, so `edgekws info` and searches never
import torch. Every family must keep its largest subnet within `PARAM_BUDGET` (250k trainable
parameters, at 12 classes on 49×40 log-mels); registration and creation refuse one that does not,
unless `allow_over_budget=True` (for research).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any, Callable

from edgekws.errors import EdgeKWSError
from edgekws.fileio import first_line, shown_key
from edgekws.models.dscnn_arch import DSCNNArch, dscnn_ops
from edgekws.models.kwt_arch import KWTArch, kwt_ops
from edgekws.spec import SearchSpace, SubnetSpec

PARAM_BUDGET = 250_000
DEFAULT_INPUT = (49, 40)


def _resolve(cls: Callable | str) -> Callable:
    """A class, or "module:Class" imported on first use (keeps torch out of the registry)."""
    if not isinstance(cls, str):
        return cls
    module, _, name = cls.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Family:
    name: str
    space: SearchSpace
    arch: Any
    supernet_cls: Callable | str
    subnet_cls: Callable | str
    description: str
    input_shape: tuple[int, int] | None = None  # fixed input, for reference configurations
    # (spec, arch, num_classes, input_shape) -> the deployed graph as costed ops; None: accounting
    # builds the model and traces it (torch)
    ops: Callable | None = None
    # Training knobs whose default differs for this family, as (TrainConfig field, value) pairs
    # (`TrainConfig.for_family`, which checks the names): what measured best for one family need
    # not for another.
    recipe: tuple[tuple[str, Any], ...] = ()

    def supernet(self, num_classes: int = 12, input_shape: tuple[int, int] = DEFAULT_INPUT):
        return _resolve(self.supernet_cls)(self.space, self.arch, num_classes, self.input_shape or input_shape)

    def subnet(self, spec: SubnetSpec, num_classes: int = 12, input_shape: tuple[int, int] = DEFAULT_INPUT):
        self.space.validate(spec)
        return _resolve(self.subnet_cls)(spec, self.arch, num_classes, self.input_shape or input_shape)

    def with_arch(self, args: dict | None, whose: str = "the") -> "Family":
        """This family with some architecture arguments replaced (`args`: a checkpoint's or an
        export manifest's `arch` table, lists for tuples; None: unchanged). What a checkpoint
        records is what its subnets are priced and rebuilt with, not what the registry says now:
        kwt's registered stem is linear, its shipped supernet's is convolutional."""
        from dataclasses import fields

        if args is None:
            return self
        known = {f.name for f in fields(self.arch)}
        if set(args) - known:
            raise EdgeKWSError(f"{whose} architecture arguments {sorted(set(args) - known)} are unknown to family "
                               f"'{self.name}' (valid: {', '.join(sorted(known))}); upgrade edgekws")
        try:
            return replace(self, arch=replace(self.arch, **{k: tuple(v) if isinstance(v, list) else v
                                                           for k, v in args.items()}))
        except (TypeError, ValueError) as exc:
            raise EdgeKWSError(f"{whose} architecture arguments do not fit family '{self.name}': "
                               f"{first_line(exc)}") from None

    def params(self, spec: SubnetSpec, num_classes: int = 12, input_shape: tuple[int, int] = DEFAULT_INPUT) -> int:
        """Trainable parameters of a subnet (from the cost table when the family has one)."""
        if self.ops is not None:
            return sum(o.params for o in self.ops(spec, self.arch, num_classes, self.input_shape or input_shape))
        return count_params(self.subnet(spec, num_classes, input_shape))


_FAMILIES: dict[str, Family] = {}


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_budget(fam: Family, num_classes: int, input_shape: tuple[int, int]) -> None:
    n = fam.params(fam.space.largest(), num_classes, input_shape)
    if n > PARAM_BUDGET:
        raise EdgeKWSError(
            f"family '{fam.name}': largest subnet has {n:,} parameters, over the {PARAM_BUDGET:,} budget "
            "(pass allow_over_budget=True for research)"
        )


def register_family(fam: Family, allow_over_budget: bool = False) -> Family:
    if not allow_over_budget:
        _check_budget(fam, 12, DEFAULT_INPUT)
    _FAMILIES[fam.name] = fam
    return fam


def get_family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise EdgeKWSError(f"unknown family '{shown_key(str(name))}' (valid: {', '.join(list_families())})") from None


def list_families() -> list[str]:
    return sorted(_FAMILIES)


def create_supernet(name: str, num_classes: int = 12, input_shape: tuple[int, int] = DEFAULT_INPUT,
                    allow_over_budget: bool = False, arch: Any = None):
    """The family's supernet, with `arch` (its architecture dataclass) replacing the registered one."""
    fam = get_family(name)
    if arch is not None:
        fam = replace(fam, arch=arch)
    if not allow_over_budget:
        _check_budget(fam, num_classes, input_shape)
    return fam.supernet(num_classes, input_shape)


def build_subnet(spec: SubnetSpec, num_classes: int = 12, input_shape: tuple[int, int] = DEFAULT_INPUT):
    return get_family(spec.family).subnet(spec, num_classes, input_shape)


register_family(Family(
    name="dscnn",
    space=SearchSpace.from_max(
        "dscnn",
        channels={"stem": (64, 8), "stage1": (96, 8), "stage2": (160, 8), "stage3": (224, 8)},
        depths={"stage1": (1, 2), "stage2": (1, 2, 3), "stage3": (1, 2, 3)},
    ),
    arch=DSCNNArch(),
    supernet_cls="edgekws.models.dscnn:DSCNNSupernet",
    subnet_cls="edgekws.models.dscnn:DSCNN",
    description="depthwise-separable CNN (Hello Edge / MLPerf Tiny lineage), 3 elastic stages",
    ops=dscnn_ops,
))

register_family(Family(
    name="kwt",
    space=SearchSpace.from_max(
        "kwt",
        channels={"embed": (64, 16), "mlp": (128, 32)},
        depths={"layers": (2, 3, 4, 5, 6)},
    ),
    arch=KWTArch(),
    supernet_cls="edgekws.models.kwt:KWTSupernet",
    subnet_cls="edgekws.models.kwt:KWT",
    description="keyword Transformer (frames as tokens), slimmable dim/heads/MLP, elastic layers",
    ops=kwt_ops,
    # No width anchors, 4 per-stage draws (6 subnets a step). With dscnn's 3 full-depth anchors the
    # exported widths gained (+3.6 pt at 0.25) but the release's picks scored 0.5-1.0 pt lower on
    # test at 4 of 5 tiers and the depth-2 subnets lost up to 10 pt (benchmarks/runs/kwt_anchors_150ep/).
    # The convolutional stem (`embed` "conv"): at 150 epochs +5.2 pt at width 0.25, +6.9 at the
    # smallest subnet, +2.8 on mixed specs, level at width 1.0, width 0.25 passes TFLite int8, and
    # +7 to +17 pt on an unheard TTS engine at 20 epochs (benchmarks/runs/kwt_conv_150ep/).
    recipe=(("num_random", 4), ("width_anchors", 0), ("embed", "conv")),
))

# MLPerf Tiny's KWS reference DS-CNN, fixed (a one-point space), on its 49×10 MFCC input. It is
# here so that the accounting can be checked against the published 23,756 parameters.
register_family(Family(
    name="dscnn_mlperf",
    space=SearchSpace("dscnn_mlperf", ("stem", "stage1"), ((64,), (64,)), ("stage1",), ((4,),), (1.0,)),
    arch=DSCNNArch(stage_strides=(1,), bias=True, dropout=0.2),
    supernet_cls="edgekws.models.dscnn:DSCNNSupernet",
    subnet_cls="edgekws.models.dscnn:DSCNN",
    ops=dscnn_ops,
    description="MLPerf Tiny KWS reference DS-CNN (fixed; 49×10 MFCC input)",
    input_shape=(49, 10),
))
