"""The training recipe: every choice that changes what a training run learns, in one frozen-able
dataclass with no heavy imports (the CLI reads its defaults without loading torch).

What each default buys, measured, is in the README (Stage 3) and in
`benchmarks/results/recipe_ablation_*`. Engine settings — threads, local processes, memory
format, validation interval — are not part of the recipe and `--resume` does not check them;
they change speed and float rounding (or, with several processes, the BN statistics of each
rank's shard), not what the recipe asks for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class TrainConfig:
    """The default recipe (what each default buys is in the README). A family may register other
    defaults for some knobs (kwt: no width anchors); `for_family` applies them."""

    family: str = "dscnn"
    protocol: str = "12"
    epochs: int = 150
    batch_size: int = 128
    lr: float = 3e-3  # AdamW peak learning rate, after a 1-epoch linear warm-up, cosine to 0
    weight_decay: float = 1e-2
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    # Random subnets per step besides the largest and the smallest, `width_anchors` of them the
    # narrow uniform widths: 4 per-stage draws (4 > 3: +0.57 pt on mixed specs, 16 of 16, at 150
    # epochs) and the 3 anchors beside them (README Stage 3: every tier's release pick scores
    # higher on the test pack; +45 % per step).
    num_random: int = 7
    kd: str = "kl"  # in-place distillation loss: "kl" or "alpha" (TODM / AlphaNet)
    alpha_min: float = -1.0
    alpha_max: float = 1.0
    alpha_clip: float = 5.0  # importance-ratio clip of the alpha-divergence
    adaptive_dropout: bool = True
    dropout_max: float = 0.2
    teacher: str = ""  # path of a teacher checkpoint (its largest subnet teaches the largest)
    # Path of a checkpoint whose weights (and BN statistics) start the run instead of a random
    # init: fine-tuning a finished supernet, e.g. its narrow widths with `sampler="students"`.
    init: str = ""
    teacher_temperature: float = 4.0
    teacher_weight: float = 0.5
    wave_augment: bool = True
    # Speed perturbation, VTLP, band limits and spectral tilt (`augment.ChannelConfig`): variety
    # of speakers and channels that the TTS engines do not have.
    channel_augment: bool = False
    # Feature bank: 0 = augment and compute log-mels every step; K > 0 = K precomputed augmented
    # variants per clip (shift, noise, channel), epoch e reading variant e mod K, SpecAugment
    # still per step (see train.BatchMaker).
    feature_variants: int = 8
    spec_augment: bool = True
    # Which subnets see SpecAugment's masks: "all", or "largest" (the small ones train on unmasked
    # features, with the largest's soft outputs on the masked view as targets: tiny models
    # underfit, and BC-ResNet turns SpecAugment off for its smallest).
    spec_augment_scope: str = "all"
    # How the `num_random` subnets are drawn: "per_stage" (a width and a depth per stage, so every
    # spec of the search space is one training visits) or "uniform" (one width multiplier for all
    # stages, random depths: the first shipped supernet's policy, which leaves most mixed-width
    # specs untrained).
    sampling: str = "per_stage"
    # Which subnets a step trains (`edgekws.step`): "sandwich" (largest, smallest, num_random
    # random; the largest teaches the rest) or "students" (num_random random subnets taught by
    # --teacher: fine-tuning small widths from a finished model). `fixed_spec` overrides both.
    sampler: str = "sandwich"
    # Per-stage sampling favouring narrow widths: the i-th narrowest choice of a stage is drawn
    # with probability ∝ (i + 1) ** -small_width_bias (0 = uniform). Narrow weights are shared by
    # every subnet but only the narrow subnets are scored on them alone.
    small_width_bias: float = 0.0
    # Of the `num_random` subnets, how many are *width anchors*: distinct width multipliers below
    # 1.0 at full depth, drawn at random (the specs `export --width` ships and `train_once` scores).
    # Each is one spec of the 4,608 per-stage draws pick from (4 draws a step: ~17 visits in a
    # 150-epoch run), so the deployable narrow subnets are trained mostly through their neighbours.
    # 3 trains all three every step, as slimmable networks do: at 150 epochs +2.53 / +1.80 / +1.02 /
    # +0.46 pt at width 0.25 / 0.5 / 0.75 / 1.0 over 4 draws alone, -0.52 pt on 16 random mixed
    # specs (-0.83 on those with a depth-1 stage), and a better pick for every device tier.
    width_anchors: int = 3
    # Depth of the width anchors: "full" (the exported specs themselves) or "per_stage" (the
    # anchor's one width multiplier for every stage, each stage's depth drawn at random: full depth
    # then comes up for 1 of the 18 depth combinations). Anchors do not cost the reduced-depth mixed
    # specs by being full depth: one anchor beside 3 per-stage draws scores the 12 depth-1 specs
    # 0.24 pt below 3 draws alone; what costs them is a draw the anchor replaces (README Stage 3).
    anchor_depth: str = "full"
    # Share of the batch each per-stage random draw trains on (the largest, the smallest and the
    # width anchors always see all of it): 0.5 gives every draw one half of the batch, alternating
    # halves, so the 4 draws still visit 4 specs a step on half the examples each; the default step
    # then takes 0.87x the time (README Stage 3, the engine). Not the default: at 150 epochs every
    # tier's search pick scored 0.4-1.2 pt lower on the validation voices than both seeds of 1.0,
    # and the 16 mixed specs 0.10-0.17 pt lower (benchmarks/runs/dscnn_draw_half_150ep/).
    draw_fraction: float = 1.0
    # Loss weight of the width anchor at the narrowest width multiplier (the 0.25 subnet a small
    # tier ships), against 1 for every other subnet of the step. Its first channels are shared by
    # all nine subnets of a step, and AdamW normalises their update by the whole summed gradient,
    # so the narrow subnet's own pull on them is about a ninth of it — a twin trained alone gets
    # all of it (NetAug's argument that tiny models underfit, turned into a weight). 1 = off.
    narrowest_anchor_weight: float = 1.0
    # Hard labels mixed into the distilled subnets' loss: (1 - w) · KD + w · CE(labels). Twins
    # trained alone on labels beat the supernet's narrow subnets (train_once).
    small_label_weight: float = 0.5
    # Ladder in-place distillation: each width anchor learns from the next wider uniform subnet of
    # its step (0.25 from 0.5, 0.5 from 0.75, 0.75 from the largest) instead of from the largest —
    # a teacher assistant for the narrowest (Mirzadeh et al. 2020); every other student unchanged.
    kd_ladder: bool = False
    # Weight decay only on conv/linear weights (not on BN/LayerNorm affine parameters and biases).
    decay_weights_only: bool = True
    # Per-clip normalisation of the log-mel input, part of the model (its `arch.input_norm`, so
    # checkpoints and exports carry it): "none", "band_mean" or "spectral_shape"
    # (`edgekws.models.input_norm`; measured on an unheard engine in the README, `edgekws loeo`).
    input_norm: str = "none"
    # How kwt turns a frame into a token, part of the model (its `arch.embed`): "linear" (Berg et
    # al.) or "conv" (a convolutional stem first; `edgekws.models.kwt_arch`), which kwt's own
    # recipe sets (`Family.recipe`; measured in the README). Families without the choice refuse "conv".
    embed: str = "linear"
    # How often an epoch draws each TTS engine's clips: engine g with n_g clips ∝ n_g^(1 − P),
    # so 0 = the corpus as it is, 1 = an equal share per engine (`edgekws.balance`; needs the
    # corpus's meta.csv; measured on an unheard engine in the README, `edgekws loeo`).
    engine_balance: float = 0.0
    seed: int = 0
    fixed_spec: dict | None = None  # train one spec only (the "twin" baseline of train_once)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_family(cls, family: str = "dscnn", **knobs) -> "TrainConfig":
        """The default recipe for `family` (its registered `Family.recipe` over this class's
        defaults), then `knobs`: what `edgekws train --family F` runs when no option is given."""
        from edgekws.models import get_family  # torch-free registry

        return cls.with_defaults(family, get_family(family).recipe, **knobs)

    @classmethod
    def with_defaults(cls, family: str, recipe: tuple[tuple[str, object], ...], **knobs) -> "TrainConfig":
        """`for_family` given the family's recipe pairs; a pair naming no knob is refused."""
        from edgekws.errors import EdgeKWSError

        unknown = sorted({k for k, _ in recipe} - ({f.name for f in fields(cls)} - {"family"}))
        if unknown:
            raise EdgeKWSError(f"family '{family}': recipe names no training knob {', '.join(unknown)}")
        return cls(**{**dict(recipe), **knobs, "family": family})

    @classmethod
    def recorded(cls, d: dict, known_only: bool = False) -> "TrainConfig":
        """The recipe a checkpoint's or state's `train_config` ran. A knob the run predates ran
        as it did before it existed — its `ABSENT` value, not today's default (the default of
        `width_anchors` became 3 after runs without the knob had run with none)."""
        names = {f.name for f in fields(cls)}
        if not known_only and set(d) - names:
            raise TypeError(f"unknown training knobs {sorted(set(d) - names)}")
        return cls(**{**ABSENT, **{k: v for k, v in d.items() if k in names}})


# What a knob meant in a train_config written before the knob existed, where that differs from
# today's default.
ABSENT = {"width_anchors": 0}


@dataclass(frozen=True)
class FinetuneDefaults:
    """`edgekws finetune`'s knobs (the rest of its recipe is the source supernet's own)."""

    epochs: int = 20
    # The supernet's own peak: at width 0.25 it beat 1e-3 by 1.1 pt over 20 epochs (and 40 epochs
    # at 1e-3 by 0.4), level at 0.5 (+0.13); benchmarks/results/finetune_dscnn_20ep*.
    lr: float = 3e-3
    warmup_epochs: float = 0.5
    teacher_weight: float = 0.5


FINETUNE = FinetuneDefaults()


def family_for(cfg: TrainConfig):
    """The registered family with the architecture arguments the recipe sets (`input_norm`,
    `embed`): what `cfg` trains. Torch-free, so `edgekws info --family` prices what `edgekws train
    --family` builds (kwt's default recipe has the convolutional stem the registered kwt lacks)."""
    from dataclasses import replace

    from edgekws.errors import EdgeKWSError
    from edgekws.models import get_family

    fam = get_family(cfg.family)
    arch_fields = {f.name for f in fields(fam.arch)}
    if cfg.input_norm != "none":
        if "input_norm" not in arch_fields:
            raise EdgeKWSError(f"--input-norm: family '{cfg.family}' has no input normalisation")
        fam = replace(fam, arch=replace(fam.arch, input_norm=cfg.input_norm))
    if cfg.embed != "linear":
        if "embed" not in arch_fields:
            raise EdgeKWSError(f"--embed: family '{cfg.family}' has no choice of token embedding (kwt has)")
        fam = replace(fam, arch=replace(fam.arch, embed=cfg.embed))
    return fam
