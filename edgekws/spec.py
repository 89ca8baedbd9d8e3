"""`SubnetSpec` — the currency between training, extraction, export, profiling and search — and
the `SearchSpace` that says which specs a supernet can run.

A spec is a family name plus one channel count per *channel slot* and one block count per *depth
slot*. The slots are named by the family (dscnn: `stem`, `stage1..3` channels and `stage1..3`
depths; kwt: `embed`, `mlp` channels and `layers` depth), so an error can say exactly which value
is wrong and what would be right.

One vocabulary: a *width* (`--width 0.5`, `width_multipliers`, `uniform(width)`) is always a
multiplier of the largest subnet; *channels* (`SubnetSpec.channels`, `channel_choices`) are always
counts. Specs and spaces written before that split (`"widths"`, `"width_names"`,
`"width_choices"` for the counts) still read.

Channel choices come from the family's width multipliers (0.25, 0.5, 0.75, 1.0) applied to each
slot's largest channel count and rounded to the slot's channel grid (8 channels for convolutions, the
16-dim head size for attention). `uniform(width=m)` for any other multiplier in (0, 1] snaps each
slot to the nearest available channel count (ties go to the wider one), so 0.6 gives the 0.5
subnet and 0.65 the 0.75 one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgekws.errors import EdgeKWSError


class SpecError(EdgeKWSError):
    """A spec that is malformed or outside the search space."""


@dataclass(frozen=True)
class SubnetSpec:
    """Which subnet: family, channels per width slot, blocks per depth slot."""

    family: str
    channels: tuple[int, ...]
    depths: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(w) for w in self.channels))
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))

    @property
    def name(self) -> str:
        """Readable and unique, e.g. `dscnn-w32.48.80.112-d2.3.3`."""
        return f"{self.family}-w{'.'.join(map(str, self.channels))}-d{'.'.join(map(str, self.depths))}"

    @classmethod
    def parse_name(cls, name: str) -> "SubnetSpec | None":
        """The spec a `name` stands for (`dscnn-w32.48.80.112-d2.3.3`), or None if it is not one."""
        parts = name.rsplit("-", 2)
        if len(parts) != 3 or not parts[0] or parts[1][:1] != "w" or parts[2][:1] != "d":
            return None
        try:
            channels = tuple(int(v) for v in parts[1][1:].split("."))
            depths = tuple(int(v) for v in parts[2][1:].split("."))
        except ValueError:
            return None
        return cls(parts[0], channels, depths)

    def to_dict(self) -> dict:
        return {"family": self.family, "channels": list(self.channels), "depths": list(self.depths)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: object) -> "SubnetSpec":
        """From `to_dict` output, or a spec written before the vocabulary split (`"widths"` for
        the channel counts; not both keys)."""
        shape = 'a spec is a JSON object {"family": str, "channels": [int, ...], "depths": [int, ...]}'
        if isinstance(d, dict) and "widths" in d and "channels" not in d:
            d = {("channels" if k == "widths" else k): v for k, v in d.items()}
        if not isinstance(d, dict) or set(d) - {"family", "channels", "depths", "name"} or not {"family", "channels", "depths"} <= set(d):
            raise SpecError(shape)
        fam, channels, depths = d["family"], d["channels"], d["depths"]
        ok_list = lambda v: isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        if not isinstance(fam, str) or not ok_list(channels) or not ok_list(depths):
            raise SpecError(shape)
        return cls(fam, tuple(channels), tuple(depths))

    @classmethod
    def from_json(cls, text: str) -> "SubnetSpec":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"malformed spec JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise SpecError("spec JSON nested too deeply") from None
        return cls.from_dict(d)


def round_channels(x: float, divisor: int) -> int:
    """Nearest multiple of `divisor`, at least `divisor`."""
    return max(divisor, int(round(x / divisor)) * divisor)


@dataclass(frozen=True)
class SearchSpace:
    """The specs one supernet can run. Choices are sorted ascending."""

    family: str
    channel_names: tuple[str, ...]
    channel_choices: tuple[tuple[int, ...], ...]
    depth_names: tuple[str, ...]
    depth_choices: tuple[tuple[int, ...], ...]
    width_multipliers: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)

    @classmethod
    def from_max(cls, family: str, channels: dict[str, tuple[int, int]], depths: dict[str, tuple[int, ...]],
                 multipliers: Sequence[float] = (0.25, 0.5, 0.75, 1.0)) -> "SearchSpace":
        """Build from {slot: (max_channels, divisor)} and {slot: depth choices}."""
        wc = tuple(tuple(sorted({round_channels(m * mx, div) for m in multipliers})) for mx, div in channels.values())
        return cls(family, tuple(channels), wc, tuple(depths), tuple(tuple(sorted(c)) for c in depths.values()),
                   tuple(multipliers))

    # -- canonical members
    def largest(self) -> SubnetSpec:
        return SubnetSpec(self.family, tuple(c[-1] for c in self.channel_choices), tuple(c[-1] for c in self.depth_choices))

    def smallest(self) -> SubnetSpec:
        return SubnetSpec(self.family, tuple(c[0] for c in self.channel_choices), tuple(c[0] for c in self.depth_choices))

    def uniform(self, width: float = 1.0, depth: int | None = None) -> SubnetSpec:
        """Every slot at `width` × its largest channels (snapped to the grid); depth per stage
        `min(depth, stage max)`, or the largest depth when None."""
        if not isinstance(width, (int, float)) or not 0 < width <= 1:
            raise SpecError(f"width multiplier {width} is outside (0, 1]; the trained ones are "
                            f"{', '.join(map(str, self.width_multipliers))}")
        channels = []
        for c in self.channel_choices:
            target = width * c[-1]
            channels.append(min(c, key=lambda w: (abs(w - target), -w)))
        if depth is None:
            depths = tuple(c[-1] for c in self.depth_choices)
        else:
            valid = sorted({d for c in self.depth_choices for d in c})
            if depth not in valid:
                raise SpecError(f"depth {depth} is not in the space (valid: {', '.join(map(str, valid))})")
            depths = tuple(max([d for d in c if d <= depth], default=c[0]) for c in self.depth_choices)
        return SubnetSpec(self.family, tuple(channels), depths)

    def width_multiplier_specs(self) -> dict[float, SubnetSpec]:
        return {m: self.uniform(m) for m in self.width_multipliers}

    # -- sampling for training and search
    def sample(self, rng: np.random.Generator, width_bias: float = 0.0) -> SubnetSpec:
        """A spec with every width and depth slot drawn independently. `width_bias` > 0 favours
        narrow choices: the i-th narrowest is drawn with probability ∝ (i + 1) ** -width_bias
        (every spec keeps a non-zero chance); 0 draws uniformly."""
        if width_bias:
            def pick(c):
                p = np.arange(1, len(c) + 1, dtype=np.float64) ** -width_bias
                return int(c[rng.choice(len(c), p=p / p.sum())])
        else:
            def pick(c):
                return int(c[rng.integers(len(c))])
        return SubnetSpec(
            self.family,
            tuple(pick(c) for c in self.channel_choices),
            self.sample_depths(rng),
        )

    def sample_depths(self, rng: np.random.Generator) -> tuple[int, ...]:
        """Each stage's depth drawn uniformly from its choices."""
        return tuple(int(c[rng.integers(len(c))]) for c in self.depth_choices)

    def mutate(self, spec: SubnetSpec, rng: np.random.Generator, prob: float = 0.2) -> SubnetSpec:
        """Resample each slot with probability `prob` (evolutionary search)."""
        self.validate(spec)
        w = tuple(int(c[rng.integers(len(c))]) if rng.random() < prob else v for v, c in zip(spec.channels, self.channel_choices))
        d = tuple(int(c[rng.integers(len(c))]) if rng.random() < prob else v for v, c in zip(spec.depths, self.depth_choices))
        return SubnetSpec(self.family, w, d)

    def crossover(self, a: SubnetSpec, b: SubnetSpec, rng: np.random.Generator) -> SubnetSpec:
        """Each slot taken from one parent at random."""
        self.validate(a)
        self.validate(b)
        w = tuple(x if rng.random() < 0.5 else y for x, y in zip(a.channels, b.channels))
        d = tuple(x if rng.random() < 0.5 else y for x, y in zip(a.depths, b.depths))
        return SubnetSpec(self.family, w, d)

    def size(self) -> int:
        n = 1
        for c in (*self.channel_choices, *self.depth_choices):
            n *= len(c)
        return n

    # -- validation
    def validate(self, spec: SubnetSpec) -> SubnetSpec:
        if spec.family != self.family:
            raise SpecError(f"spec is for family '{spec.family}' but this space is '{self.family}'")
        for kind, values, names, choices in (("channels", spec.channels, self.channel_names, self.channel_choices),
                                             ("depths", spec.depths, self.depth_names, self.depth_choices)):
            if len(values) != len(names):
                raise SpecError(f"{self.family} specs have {len(names)} {kind} ({', '.join(names)}), got {len(values)}")
            for v, n, c in zip(values, names, choices):
                if v not in c:
                    what = "channels" if kind == "channels" else "depth"
                    raise SpecError(f"{what} {v} for '{n}' is not in the space (valid: {', '.join(map(str, c))})")
        return spec

    def describe(self) -> str:
        w = "; ".join(f"{n} {list(c)}" for n, c in zip(self.channel_names, self.channel_choices))
        d = "; ".join(f"{n} {list(c)}" for n, c in zip(self.depth_names, self.depth_choices))
        return f"channels: {w} | depths: {d}"

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "channel_names": list(self.channel_names),
            "channel_choices": [list(c) for c in self.channel_choices],
            "depth_names": list(self.depth_names),
            "depth_choices": [list(c) for c in self.depth_choices],
            "width_multipliers": list(self.width_multipliers),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        """From `to_dict` output (checkpoints carry it): types, sizes and order checked, since a
        damaged space would otherwise fail inside model building."""
        def names(v) -> tuple[str, ...]:
            if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) and x for x in v):
                raise SpecError("search space slot names must be a non-empty list of strings")
            return tuple(v)

        def choices(v, n: int) -> tuple[tuple[int, ...], ...]:
            ok = isinstance(v, (list, tuple)) and len(v) == n and all(
                isinstance(c, (list, tuple)) and c and list(c) == sorted(set(c))
                and all(isinstance(x, int) and not isinstance(x, bool) and 0 < x <= 65_536 for x in c) for c in v)
            if not ok:
                raise SpecError("search space choices must be one ascending list of positive integers per slot")
            return tuple(tuple(c) for c in v)

        if not isinstance(d, dict) or not isinstance(d.get("family"), str):
            raise SpecError("a search space is a table with a family name")
        if "width_names" in d and "channel_names" not in d:  # written before the vocabulary split
            d = {{"width_names": "channel_names", "width_choices": "channel_choices"}.get(k, k): v for k, v in d.items()}
        wn, dn = names(d.get("channel_names")), names(d.get("depth_names"))
        mult = d.get("width_multipliers", (0.25, 0.5, 0.75, 1.0))
        if not isinstance(mult, (list, tuple)) or not mult or not all(
                isinstance(m, (int, float)) and not isinstance(m, bool) and 0 < m <= 1 for m in mult):
            raise SpecError("search space width multipliers must be numbers in (0, 1]")
        return cls(d["family"], wn, choices(d.get("channel_choices"), len(wn)), dn, choices(d.get("depth_choices"), len(dn)),
                   tuple(float(m) for m in mult))
