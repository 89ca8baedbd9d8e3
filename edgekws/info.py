"""`edgekws info`: a family's search space and what its subnets cost."""

from __future__ import annotations

from pathlib import Path

from edgekws.errors import EdgeKWSError
from edgekws.fileio import read_text
from edgekws.spec import SearchSpace, SubnetSpec


def load_spec_file(path: Path) -> SubnetSpec:
    text = read_text(path, "spec file")
    try:
        return SubnetSpec.from_json(text)
    except EdgeKWSError as exc:
        raise EdgeKWSError(f"{path}: {exc}") from None


def grid_specs(space: SearchSpace) -> list[tuple[str, str, SubnetSpec]]:
    """(width label, depth label, spec) for every width multiplier × uniform depth."""
    depths = sorted({d for c in space.depth_choices for d in c}, reverse=True)
    out = []
    for m in sorted(space.width_multipliers, reverse=True):
        for d in depths:
            spec = space.uniform(m, d)
            if all(spec != s for _, _, s in out):
                out.append((f"{m:g}", str(d), spec))
    return out


def family_report(family: str | None, only: list[SubnetSpec] | None = None, checkpoint=None
                  ) -> tuple[list[dict], SearchSpace, int]:
    """Rows of accounting for the grid (or for `only`), the space, and the parameter budget. With
    a checkpoint, its space, architecture arguments, class count and input shape are used."""
    from edgekws.accounting import account
    from edgekws.models import PARAM_BUDGET, list_families
    from edgekws.recipe import TrainConfig, family_for

    if family is None:
        raise EdgeKWSError(f"name a family with --family (valid: {', '.join(list_families())}), --spec or --checkpoint")
    # without a checkpoint: what `edgekws train --family F` builds (its recipe's architecture)
    fam = checkpoint.family_def() if checkpoint is not None else family_for(TrainConfig.for_family(family))
    classes = len(checkpoint.labels) if checkpoint is not None else 12
    shape = checkpoint.features.shape if checkpoint is not None else None
    space = fam.space
    if only is not None:
        entries = [("-", "-", space.validate(s)) for s in only]
    else:
        entries = grid_specs(space)
    rows = []
    for wl, dl, spec in entries:
        row = account(spec, classes, shape, family=fam).to_dict()
        row.update(label_width=wl, label_depth=dl)
        rows.append(row)
    return rows, space, PARAM_BUDGET
