"""`edgekws finetune`: one subnet of a finished supernet, trained alone for a few epochs with the
supernet's largest subnet as its teacher. Train once, then polish what you deploy.

Why: a supernet's narrow subnets share every weight with the wider ones, and after 150 epochs
they still trail twins trained alone (benchmarks/results/train_once_dscnn_150ep_v5: −3.7 pt at
width 0.25). Fine-tuning the narrow widths *inside* the supernet was measured and rejected
(benchmarks/results/finetune_students_dscnn_10ep.json: +0.1 pt at 0.25, −0.4 to −1.6 pt
elsewhere — the shared weights drift away from what the wide subnets need). Here nothing is
shared: the subnet starts from the supernet's weights and BN statistics (`TrainConfig.init`),
trains as a fixed spec (`fixed_spec`), and learns from the labels and from the supernet's largest
subnet (`teacher`: knowledge distillation into a small network, as for small highway networks,
Lu et al. 2016). The supernet is untouched; the result is a one-spec checkpoint ("fixed"
sampling) that `eval`, `export` and `info` read like any other, refusing every spec but its own.

The recipe is the source's own (augmentation, batch size, label smoothing, dropout, weight decay),
so that the only differences from the supernet's training are the ones named here: epochs,
learning rate, warm-up, the teacher and its weight (`recipe.FinetuneDefaults`, what the defaults buy is
in the README's Stage 3 and `benchmarks/results/finetune_dscnn_*`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edgekws.checkpoint import Checkpoint
from edgekws.errors import EdgeKWSError
from edgekws.recipe import FINETUNE as DEFAULTS
from edgekws.recipe import TrainConfig
from edgekws.spec import SubnetSpec


def finetune_config(source: Checkpoint, source_path: Path, spec: SubnetSpec, epochs: int = DEFAULTS.epochs,
                    lr: float = DEFAULTS.lr, warmup_epochs: float = DEFAULTS.warmup_epochs,
                    teacher: Path | None = None, teacher_weight: float = DEFAULTS.teacher_weight,
                    seed: int | None = None) -> TrainConfig:
    """The source's recipe, turned into a one-spec run that starts from the source's weights.

    Refuses a spec that the source's training never visited (a uniform-sampling supernet's mixed
    widths): its weights were never trained as that subnet, so there is nothing to polish."""
    if not source.trained(spec):
        raise EdgeKWSError(f"{source_path}: its training never visited {spec.name} (sampling '{source.sampling}'); "
                           "fine-tune a spec it trained")
    base = TrainConfig.recorded(source.train_config, known_only=True)
    return replace(base, epochs=epochs, lr=lr, warmup_epochs=warmup_epochs, fixed_spec=spec.to_dict(),
                   init=str(source_path), teacher=str(teacher or source_path), teacher_weight=teacher_weight,
                   seed=base.seed if seed is None else seed)


def source_accuracy(source: Checkpoint, spec: SubnetSpec) -> float | None:
    """The source's recorded test accuracy for `spec`, if its training recorded one (it records the
    uniform widths and the smallest)."""
    for row in source.metrics.get("test", {}).values():
        if isinstance(row, dict) and row.get("name") == spec.name:
            return row.get("accuracy")
    return None
