"""One training step, decomposed: which subnets a step trains (a sampler), what each learns from
(loss terms), and `train_step`, which runs them. Epochs, resume, feature banks and ranks are
`train.py`'s; nothing here knows about them, so a benchmark or a new schedule can drive a step.

Samplers (`make_sampler(cfg, space)`):
- `Sandwich` (the default): the largest subnet, the smallest, and `num_random` random subnets
  (slimmable networks' sandwich rule); the first learns from the labels, the rest from it;
- `FixedSpec`: one spec, from the labels alone (the separately trained "twin" of train_once);
- `StudentsOnly`: random subnets only, each from an external teacher and the labels (fine-tune a
  supernet's small widths from a finished model; needs `teacher`).

Loss terms (`loss_terms(cfg, role, teacher)`), summed with weights: labels (label-smoothed
cross-entropy), in-place KD from the step's first subnet (KL or TODM's alpha-divergence), and
teacher KD (a teacher checkpoint's logits, at a temperature).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekws.errors import EdgeKWSError
from edgekws.recipe import TrainConfig
from edgekws.spec import SearchSpace, SubnetSpec

# --------------------------------------------------------------------------------------------
# Divergences


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher ‖ student) on temperature-softened distributions, × T² (Hinton et al.)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True,
                    reduction="batchmean") * t * t


def alpha_divergence(student: torch.Tensor, teacher: torch.Tensor, alpha: float, clip: float) -> torch.Tensor:
    """Per-sample D_α(p_teacher ‖ q_student) = Σ p·((q/p)^(1−α) − 1) / (α(α−1)), ratio clipped.

    α → 1 gives KL(p‖q) (mean-seeking), α → 0 gives KL(q‖p) (mode-seeking); the limits are
    taken explicitly.
    """
    log_p = F.log_softmax(teacher, -1)
    log_q = F.log_softmax(student, -1)
    p = log_p.exp()
    if abs(alpha - 1.0) < 1e-6:
        return (p * (log_p - log_q)).sum(-1)
    if abs(alpha) < 1e-6:
        return (log_q.exp() * (log_q - log_p)).sum(-1)
    log_ratio = torch.clamp(log_q - log_p, max=math.log(clip))
    return (p * (torch.exp((1.0 - alpha) * log_ratio) - 1.0)).sum(-1) / (alpha * (alpha - 1.0))


def kd_alpha(student: torch.Tensor, teacher: torch.Tensor, alpha_min: float, alpha_max: float, clip: float) -> torch.Tensor:
    """AlphaNet's adaptive alpha-divergence: per sample, the larger of D_α− and D_α+."""
    return torch.maximum(alpha_divergence(student, teacher, alpha_min, clip),
                         alpha_divergence(student, teacher, alpha_max, clip)).mean()


# --------------------------------------------------------------------------------------------
# Samplers


SAMPLING_POLICIES = ("per_stage", "uniform")
ANCHOR_DEPTHS = ("full", "per_stage")  # width anchors: the exported specs, or depths drawn per stage


def training_spec(space: SearchSpace, rng: np.random.Generator, policy: str = "per_stage",
                  width_bias: float = 0.0) -> SubnetSpec:
    """A random subnet for the sandwich.

    "per_stage": every width slot and depth slot drawn independently — the whole search space is
    trained, so any spec a per-tier search picks is one training visited. "uniform": one width
    multiplier for every stage and a random depth per stage (what the first supernet used)."""
    if policy == "per_stage":
        return space.sample(rng, width_bias)
    if policy != "uniform":
        raise EdgeKWSError(f"unknown sampling policy '{policy}' (valid: {', '.join(SAMPLING_POLICIES)})")
    m = space.width_multipliers[rng.integers(len(space.width_multipliers))]
    return SubnetSpec(space.family, space.uniform(m).channels, space.sample_depths(rng))


@dataclass(frozen=True)
class _RandomDraws:
    space: SearchSpace
    n: int = 2  # random subnets per step
    policy: str = "per_stage"
    width_bias: float = 0.0
    anchors: int = 0  # of the n, narrow width multipliers for every stage
    anchor_depth: str = "full"  # their depth: "full" or "per_stage" (drawn per stage)
    draw_fraction: float = 1.0  # share of the batch each per-stage draw (not an anchor) sees
    narrowest_weight: float = 1.0  # loss weight of the anchor at the narrowest width multiplier
    lead_fixed = 0  # specs `draw()` puts before the random ones

    def random(self, rng: np.random.Generator) -> list[SubnetSpec]:
        anchors = self.anchor_specs(rng)
        return anchors + [training_spec(self.space, rng, self.policy, self.width_bias) for _ in range(self.n - len(anchors))]

    def anchor_specs(self, rng: np.random.Generator) -> list[SubnetSpec]:
        """`anchors` distinct narrow widths (all of them once `anchors` reaches their count, as
        slimmable networks train every width every step; beyond it they repeat), at full depth or
        with each stage's depth drawn (`anchor_depth`)."""
        narrow = [m for m in self.space.width_multipliers if m < 1.0]
        pool, picks = [], []
        for _ in range(self.n_anchors()):
            pool = pool or list(narrow)
            spec = self.space.uniform(pool.pop(int(rng.integers(len(pool)))))
            if self.anchor_depth == "per_stage":
                spec = SubnetSpec(spec.family, spec.channels, self.space.sample_depths(rng))
            picks.append(spec)
        return picks

    def weight(self, k: int, spec: SubnetSpec) -> float:
        """Loss weight of the k-th spec of `draw()`: `narrowest_weight` for a width anchor at the
        space's narrowest width multiplier (at any depth), 1 for everything else."""
        if self.narrowest_weight == 1.0 or not 0 <= k - self.lead_fixed < self.n_anchors():
            return 1.0
        narrowest = self.space.uniform(min(self.space.width_multipliers))
        return self.narrowest_weight if spec.channels == narrowest.channels else 1.0

    def n_anchors(self) -> int:
        """How many of `random()`'s specs are anchors (none if the space has no narrow width)."""
        return min(self.anchors, self.n) if any(m < 1.0 for m in self.space.width_multipliers) else 0

    def batch_rows(self, k: int, batch_size: int, lead: int) -> slice | None:
        """Rows of the batch the k-th spec of `draw()` trains on (None: all of them). The first
        `lead` specs (the fixed ones and the anchors) see the whole batch; per-stage draw j sees
        the j-th block of `draw_fraction` × batch rows, wrapping round, so consecutive draws see
        different clips and together cover the batch."""
        if self.draw_fraction >= 1.0 or k < lead:
            return None
        n = max(2, min(batch_size, round(self.draw_fraction * batch_size)))  # BN needs 2 rows
        start = ((k - lead) * n) % batch_size
        start = min(start, batch_size - n)
        return slice(start, start + n)


@dataclass(frozen=True)
class Sandwich(_RandomDraws):
    """Largest, smallest, then `n` random subnets drawn by `policy`."""

    first_from_labels = True  # the largest learns from the labels; the rest distil from it
    lead_fixed = 2  # the largest and the smallest

    def draw(self, rng: np.random.Generator) -> list[SubnetSpec]:
        return [self.space.largest(), self.space.smallest(), *self.random(rng)]

    def rows(self, k: int, batch_size: int) -> slice | None:
        return self.batch_rows(k, batch_size, 2 + self.n_anchors())


@dataclass(frozen=True)
class StudentsOnly(_RandomDraws):
    """`n` random subnets per step, each taught by the external teacher (and the labels)."""

    first_from_labels = False  # no subnet of the step teaches the others

    def draw(self, rng: np.random.Generator) -> list[SubnetSpec]:
        return self.random(rng)

    def rows(self, k: int, batch_size: int) -> slice | None:
        return self.batch_rows(k, batch_size, max(1, self.n_anchors()))  # the step reports on its first


@dataclass(frozen=True)
class FixedSpec:
    """One spec, every step (a twin trained alone)."""

    spec: SubnetSpec
    first_from_labels = True

    def draw(self, rng: np.random.Generator) -> list[SubnetSpec]:
        return [self.spec]

    def rows(self, k: int, batch_size: int) -> slice | None:
        return None

    def weight(self, k: int, spec: SubnetSpec) -> float:
        return 1.0


SAMPLERS = ("sandwich", "fixed", "students")


def make_sampler(cfg: TrainConfig, space: SearchSpace):
    if cfg.fixed_spec:
        return FixedSpec(SubnetSpec.from_dict(cfg.fixed_spec))
    if cfg.sampler == "students":
        if not cfg.teacher:
            raise EdgeKWSError("--sampler students needs --teacher (every subnet learns from it)")
        return StudentsOnly(space, max(1, cfg.num_random), cfg.sampling, cfg.small_width_bias, cfg.width_anchors,
                            cfg.anchor_depth, cfg.draw_fraction, cfg.narrowest_anchor_weight)
    if cfg.sampler != "sandwich":
        raise EdgeKWSError(f"--sampler must be one of {', '.join(s for s in SAMPLERS if s != 'fixed')} (got '{cfg.sampler}')")
    return Sandwich(space, cfg.num_random, cfg.sampling, cfg.small_width_bias, cfg.width_anchors,
                    cfg.anchor_depth, cfg.draw_fraction, cfg.narrowest_anchor_weight)


# --------------------------------------------------------------------------------------------
# Loss terms


@dataclass(frozen=True)
class Targets:
    """What a subnet of a step can learn from."""

    labels: torch.Tensor
    soft: torch.Tensor | None = None  # the step's first subnet's detached logits
    teacher: torch.Tensor | None = None  # the external teacher's logits

    def take(self, rows: slice | None) -> "Targets":
        """The targets of a subset of the batch's rows (all of them for None)."""
        if rows is None:
            return self
        pick = lambda t: None if t is None else t[rows]
        return Targets(self.labels[rows], pick(self.soft), pick(self.teacher))


def label_term(cfg: TrainConfig) -> Callable:
    return lambda logits, t: F.cross_entropy(logits, t.labels, label_smoothing=cfg.label_smoothing)


def inplace_kd_term(cfg: TrainConfig) -> Callable:
    if cfg.kd == "alpha":
        return lambda logits, t: kd_alpha(logits, t.soft, cfg.alpha_min, cfg.alpha_max, cfg.alpha_clip)
    return lambda logits, t: kd_kl(logits, t.soft)


def teacher_kd_term(cfg: TrainConfig) -> Callable:
    return lambda logits, t: kd_kl(logits, t.teacher, cfg.teacher_temperature)


def loss_terms(cfg: TrainConfig, role: str, teacher: bool) -> list[tuple[float, Callable]]:
    """(weight, term) pairs for a subnet's role in the step: "first" (learns from the labels,
    teaches the rest) or "student" (learns from the first, or from the teacher when the step has
    no first)."""
    if role == "first":
        if teacher:
            return [(1 - cfg.teacher_weight, label_term(cfg)), (cfg.teacher_weight, teacher_kd_term(cfg))]
        return [(1.0, label_term(cfg))]
    if role == "taught":  # StudentsOnly: the teacher replaces the in-place target
        return [(1 - cfg.teacher_weight, label_term(cfg)), (cfg.teacher_weight, teacher_kd_term(cfg))]
    kd = inplace_kd_term(cfg)
    if cfg.small_label_weight:
        return [(1 - cfg.small_label_weight, kd), (cfg.small_label_weight, label_term(cfg))]
    return [(1.0, kd)]


def combine(terms: list[tuple[float, Callable]], logits: torch.Tensor, targets: Targets) -> torch.Tensor:
    loss = None
    for w, term in terms:
        part = term(logits, targets) if w == 1.0 else w * term(logits, targets)
        loss = part if loss is None else loss + part
    return loss


# --------------------------------------------------------------------------------------------
# The step


def set_dropout(model: nn.Module, p: float) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p


def train_step(model: nn.Module, batch: dict, specs: list[SubnetSpec], cfg: TrainConfig,
               dropout_for: Callable[[SubnetSpec], float], teacher: nn.Module | None = None,
               timings: dict | None = None, small_first: bool = False, first_from_labels: bool = True,
               rows: Callable[[int, int], slice | None] | None = None,
               weights: Callable[[int, SubnetSpec], float] | None = None) -> tuple[float, int]:
    """Forward and backward every subnet of one step (gradients accumulate; the caller steps the
    optimizer). With `first_from_labels`, the first spec learns from the labels (and the teacher)
    and the rest from its detached outputs; otherwise each learns from the teacher and the labels.
    Returns (summed loss of the first spec, its correct count).

    The first spec sees the fully augmented batch, the others `batch["small"]` (the same clips
    without SpecAugment when the recipe keeps masks for the largest only); `small_first` gives
    the first spec that input too — a twin trained alone at a small width gets what its
    supernet counterpart gets. `rows(k, batch_size)` (a sampler's `rows`) picks the rows of the
    batch the k-th spec trains on (None: all); the first spec always sees the whole batch.
    `weights(k, spec)` (a sampler's `weight`) scales the k-th spec's loss before its backward
    (the reported loss of the first spec is unscaled). With `cfg.kd_ladder` the step's uniform
    full-depth subnets (the width anchors) run widest first and each distils from the next wider
    one the step has run, not from the first (a teacher assistant for the narrowest)."""
    y = batch["y"]
    t_logits = None
    if teacher is not None:
        with torch.no_grad():
            t_logits = teacher(batch["feats"])
    targets = Targets(y, None, t_logits)
    first_terms = loss_terms(cfg, "first", teacher is not None)
    student_terms = loss_terms(cfg, "student" if first_from_labels else "taught", teacher is not None)
    first_loss, correct = 0.0, 0
    order = list(enumerate(specs))
    ladder: dict[SubnetSpec, float] = {}
    if cfg.kd_ladder and first_from_labels and hasattr(model, "space"):
        ladder = {s: m for m, s in model.space.width_multiplier_specs().items()}
        order = order[:1] + sorted(order[1:], key=lambda ks: -ladder.get(ks[1], -1.0))  # widest anchors first
    wider: dict[float, torch.Tensor] = {}  # detached logits of the step's uniform subnets, by multiplier
    for k, spec in order:
        t0 = time.perf_counter()
        model.set_active(spec)
        set_dropout(model, dropout_for(spec))
        sub = rows(k, len(y)) if rows is not None and k > 0 else None
        x = batch["feats"] if k == 0 and not small_first else batch["small"]
        logits = model(x if sub is None else x[sub])
        if k == 0 and first_from_labels:
            loss = combine(first_terms, logits, targets)
            targets = Targets(y, logits.detach(), t_logits)
        elif spec in ladder and any(m > ladder[spec] for m in wider):
            m = min(m for m in wider if m > ladder[spec])
            loss = combine(student_terms, logits, Targets(targets.labels, wider[m], targets.teacher).take(sub))
        else:
            loss = combine(student_terms, logits, targets.take(sub))
        if spec in ladder and sub is None:
            wider[ladder[spec]] = logits.detach()
        if k == 0:
            first_loss = loss.item() * len(y)
            correct = int((logits.argmax(1) == y).sum())
        w = 1.0 if weights is None else weights(k, spec)
        if w != 1.0:
            loss = w * loss
        t1 = time.perf_counter()
        loss.backward()
        if timings is not None:
            timings["forward"] = timings.get("forward", 0.0) + t1 - t0
            timings["backward"] = timings.get("backward", 0.0) + time.perf_counter() - t1
    return first_loss, correct
