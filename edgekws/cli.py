"""The `edgekws` command line. It parses options and calls plain functions; no logic lives here.

Heavy modules (torch, scipy, TensorFlow, onnxruntime) are imported inside commands so that
`edgekws --help` stays instant.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgekws.errors import EdgeKWSError
from edgekws.recipe import FINETUNE, TrainConfig

RECIPE = TrainConfig()  # the default recipe: train options show and use its values


def _family_default(knob: str) -> str:
    """Help text for a knob some family sets otherwise (`Family.recipe`): " (default: 7; kwt: 4)".
    Not in square brackets: the help is rich markup, which would take them for a tag."""
    from edgekws.models import get_family, list_families

    others = [f"{f}: {dict(get_family(f).recipe)[knob]}" for f in list_families() if knob in dict(get_family(f).recipe)]
    return f" (default: {getattr(RECIPE, knob)}" + "".join(f"; {o}" for o in others) + ")"


def _given(**knobs) -> dict:
    """The recipe knobs given on the command line: an option left out (None) takes its family's
    default (`TrainConfig.for_family`), not the class default, so it is not passed on."""
    return {k: v for k, v in knobs.items() if v is not None}


app = typer.Typer(
    help="edgekws: train once, deploy many — slimmable keyword spotting for edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Make, inspect and cache Speech Commands corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Piped output (logs, CI, the README's examples) gets 120 columns instead of rich's 80.
out = Console() if sys.stdout.isatty() else Console(width=120)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 400)


def _absent_dirs(kwargs: dict) -> list[Path]:
    """Folders a command could create for its path options that do not exist yet (each path
    and its missing ancestors), deepest first."""
    found: set[Path] = set()
    for v in kwargs.values():
        for p in (v if isinstance(v, list) else [v]):
            if not isinstance(p, Path):
                continue
            p = p.absolute()
            while not p.exists() and p != p.parent:
                found.add(p)
                p = p.parent
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _remove_if_empty(paths: list[Path]) -> None:
    for p in paths:
        try:
            if p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
                p.rmdir()
        except OSError:
            pass


def user_errors(fn: Callable) -> Callable:
    """Turn user-caused failures into one line on stderr and exit code 1 (never a traceback).
    A command that fails leaves behind no empty folder it created for its outputs."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        absent = _absent_dirs(kwargs)
        try:
            return fn(*args, **kwargs)
        except EdgeKWSError as exc:  # user text (paths, names) is printed verbatim, never as markup
            _remove_if_empty(absent)
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(1) from None
        except OSError as exc:
            _remove_if_empty(absent)
            where = f"{exc.filename}: " if exc.filename else ""
            err.print(f"[bold red]error:[/] {escape(where + str(exc.strerror or exc))}", soft_wrap=True)
            raise typer.Exit(1) from None
        except (typer.Exit, KeyboardInterrupt) as exc:
            if not isinstance(exc, typer.Exit) or exc.exit_code:
                _remove_if_empty(absent)
            raise

    return wrapper


def in_range(lo: float | None = None, hi: float | None = None, positive: bool = False) -> Callable:
    """An option callback refusing NaN, infinities and values outside [lo, hi] (> 0 with
    `positive`), the range in the message: numbers are validated where they enter."""

    def check(param: typer.CallbackParam, value):
        from edgekws.fileio import check_range

        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if v is not None:
                try:
                    check_range(v, param.opts[0] if param.opts else param.name, lo, hi, positive)
                except EdgeKWSError as exc:  # the project's one-line error, like every other one
                    err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
                    raise typer.Exit(1) from None
        return value

    return check


DataDir = Annotated[Path, typer.Option("--data-dir", "-d", help="A folder in the Speech Commands v2 layout.")]
Protocol = Annotated[str, typer.Option(help="12 (10 keywords + unknown + silence) or 35 (all words).")]
Seed = Annotated[int, typer.Option(help="Seed for every random choice (same seed, same result).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
Supernet = Annotated[Optional[str], typer.Option(help="Use the shipped supernet of this family (dscnn, kwt) "
                                                      "instead of --checkpoint.")]
# options several commands share (train and finetune; the feature cache everywhere)
Resume = Annotated[bool, typer.Option(help="Continue from the .state file of an interrupted run.")]
CacheDir = Annotated[Optional[Path], typer.Option(help="Feature cache folder.")]
Threads = Annotated[Optional[int], typer.Option(callback=in_range(1, 1024), help="torch intra-op threads (default: torch's choice).")]
Procs = Annotated[int, typer.Option(callback=in_range(1, 64), help="Training processes on this machine (gradients all-reduced; --threads each).")]
ValEvery = Annotated[int, typer.Option(callback=in_range(1, 100_000), help="Validate every N epochs (and after the last).")]


def _print_version(value: bool) -> None:
    if value:  # eager: runs before typer asks for a command, so `edgekws --version` alone works
        from edgekws import __version__

        out.print(f"edgekws {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """edgekws: train once, deploy many — slimmable keyword spotting for edge devices."""


@data_app.command("synth")
@user_errors
def data_synth(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (created; resumed if it holds a partial run).")],
    clips: Annotated[int, typer.Option(callback=in_range(1, 10_000_000), help="Number of word clips (default sized to train a good model).")] = 32000,
    seed: Seed = 0,
    workers: Annotated[Optional[int], typer.Option(callback=in_range(1, 256), help="Parallel TTS workers (default: all cores).")] = None,
) -> None:
    """Synthesize a Speech Commands v2 style corpus offline with espeak-ng, flite and festival.

    Example: edgekws data synth --out data/synth --clips 32000 --seed 0
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgekws.synth import synthesize

    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=out, transient=True, disable=not out.is_terminal) as bar:
        task = bar.add_task("synth", total=clips)
        rep = synthesize(out_dir, clips, seed=seed, workers=workers,
                         progress=lambda done, total: bar.update(task, completed=done, total=total))
    out.print(
        f"[green]✓[/] {rep.planned} clips in {rep.out} "
        f"({rep.generated} generated, {rep.kept} kept from an earlier run) in {rep.seconds:.1f} s"
        + (f", {rep.clips_per_second:.1f} clips/s" if rep.generated else ""),
        soft_wrap=True,
    )
    t = Table("split", "clips", "voices")
    for s, n in rep.per_split.items():
        t.add_row(s, str(n), str(rep.voices_per_split.get(s, "")))
    out.print(t)


@data_app.command("stats")
@user_errors
def data_stats(data_dir: DataDir, protocol: Protocol = "12", seed: Seed = 0, as_json: AsJson = False) -> None:
    """Count examples per split and label, reading every clip once to prove the folder is sound.

    Example: edgekws data stats --data-dir data/synth --json
    """
    from edgekws.data import SpeechCommands, dataset_stats

    ds = SpeechCommands.open(data_dir, protocol, seed)
    stats = dataset_stats(ds)
    if as_json:
        print(json.dumps(stats, indent=2))
        return
    splits = list(stats["splits"])
    t = Table("label", *splits, title=f"{data_dir} — protocol {protocol}")
    for label in stats["labels"]:
        t.add_row(label, *(str(stats["splits"][s]["counts"][label]) for s in splits))
    t.add_row("[bold]total", *(f"[bold]{stats['splits'][s]['examples']}" for s in splits))
    out.print(t)
    line = f"{stats['clips_checked']} clips decoded, {len(stats['background_noise'])} background recordings"
    if stats.get("voices_per_split"):
        line += ", voices per split: " + ", ".join(f"{k} {v}" for k, v in stats["voices_per_split"].items())
    out.print(line, soft_wrap=True)


@data_app.command("features")
@user_errors
def data_features(
    data_dir: DataDir,
    protocol: Protocol = "12",
    seed: Seed = 0,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where cached arrays go (default $EDGEKWS_CACHE or ~/.cache/edgekws).")] = None,
) -> None:
    """Decode every split and cache its waveforms and log-mel features for training.

    Example: edgekws data features --data-dir data/synth
    """
    import time

    from edgekws.data import SpeechCommands, load_split
    from edgekws.features import FeatureConfig

    ds = SpeechCommands.open(data_dir, protocol, seed)
    cfg = FeatureConfig()
    t = Table("split", "examples", "features", "seconds")
    for name in ds.available_splits():
        t0 = time.perf_counter()
        cs = load_split(ds, name, cfg, cache_dir)
        t.add_row(name, str(len(cs.targets)), "×".join(map(str, cs.features.shape[1:])), f"{time.perf_counter() - t0:.1f}")
    out.print(t)
    out.print(f"frontend: {cfg.n_mels} log-mels × {cfg.frames} frames "
              f"({cfg.window_samples / cfg.sample_rate * 1000:.0f} ms windows, {cfg.hop_samples / cfg.sample_rate * 1000:.0f} ms hop)")


@data_app.command("pack")
@user_errors
def data_pack(
    data_dir: DataDir,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The .npz to write.")],
    examples: Annotated[int, typer.Option(callback=in_range(1, 1_000_000), help="Examples from the split, in the pinned order.")] = 1000,
    audio: Annotated[int, typer.Option(callback=in_range(0, 1_000_000), help="How many of them also keep their audio (golden vectors).")] = 24,
    split: Annotated[str, typer.Option(help="testing (gates, calibration, golden vectors) or validation (the search's accuracy oracle).")] = "testing",
    protocol: Protocol = "12",
    seed: Seed = 0,
    cache_dir: CacheDir = None,
) -> None:
    """Write a pinned evaluation/calibration pack (what the package ships in edgekws/assets).

    Example: edgekws data pack --data-dir data/synth --out pack.npz --examples 1000
    """
    import numpy as np

    from edgekws.assets import make_pack

    pack = make_pack(data_dir, out_path, examples, audio, protocol, seed, cache_dir, split)
    counts = np.bincount(pack.targets, minlength=len(pack.labels))
    out.print(f"[green]✓[/] {out_path}: {len(pack)} examples ({', '.join(f'{l} {c}' for l, c in zip(pack.labels, counts))}), "
              f"{len(pack.waves)} with audio, {out_path.stat().st_size / 2**20:.1f} MiB", soft_wrap=True)


@app.command("info")
@user_errors
def info(
    family: Annotated[Optional[str], typer.Option(help="Model family (see the list with no option).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="A trained checkpoint: show its family, spec and metrics.")] = None,
    spec_file: Annotated[Optional[Path], typer.Option("--spec", help="A spec JSON file: account for that one subnet.")] = None,
    as_json: AsJson = False,
) -> None:
    """Show a family's search space and a widths × depths table of params, MACs and memory.

    Example: edgekws info --family dscnn   (or --checkpoint ck.pt, or --spec subnet.json)
    """
    from edgekws.info import family_report, load_spec_file

    tested: dict[str, float] = {}
    if checkpoint is not None:
        from edgekws.checkpoint import load_checkpoint

        ck = load_checkpoint(checkpoint)
        family = ck.family
        tested = {r["name"]: r["accuracy"] for r in ck.metrics.get("test", {}).values()}
    if spec_file is not None:
        spec = load_spec_file(spec_file)
        family = spec.family
    rows, space, budget = family_report(family, only=[spec] if spec_file is not None else None,
                                        checkpoint=ck if checkpoint is not None else None)
    if as_json:
        print(json.dumps({"family": family, "space": space.to_dict(), "budget": budget, "subnets": rows}, indent=2))
        return
    if family is None:
        return
    out.print(f"[bold]{family}[/]: {space.describe()}  ({space.size():,} subnets)", soft_wrap=True)
    cols = ["subnet", "width", "depth", "params", "BN-folded", "MACs", "act KB int8", "int8 KB", f"≤{budget // 1000}k"]
    t = Table(*cols, *(["test acc"] if tested else []), box=box.SIMPLE_HEAD)
    for r in rows:
        acc = [f"{100 * tested[r['name']]:.2f}%" if r["name"] in tested else ""] if tested else []
        t.add_row(r["name"], r["label_width"], r["label_depth"], f"{r['params']:,}", f"{r['params_deployed']:,}",
                  f"{r['macs'] / 1e6:.2f}M", f"{r['peak_activation_bytes_int8'] / 1024:.1f}",
                  f"{r['size_int8_bytes'] / 1024:.1f}", "[green]✓[/]" if r["within_budget"] else "[red]✗[/]", *acc)
    out.print(t)
    if checkpoint is not None:
        cfg = ck.train_config
        out.print(f"checkpoint {checkpoint}: {len(ck.labels)} classes, trained {cfg.get('epochs')} epochs "
                  f"(kd {cfg.get('kd')}, seed {cfg.get('seed')}) in {ck.metrics.get('train_seconds', 0):.0f} s "
                  f"on {ck.metrics.get('train_examples', '?')} examples", soft_wrap=True, markup=False, highlight=False)
        for m in ck.metrics.get("machines", []):
            first, last = m["epochs"]
            out.print(f"  epochs {first}–{last} on {m['cpu']}: {m['seconds']:.0f} s", markup=False, highlight=False)
        from edgekws.checkpoint import SAMPLING_COVERAGE

        out.print(f"trained specs: {ck.sampling} — {SAMPLING_COVERAGE[ck.sampling]}", markup=False, highlight=False)
        if ck.input_norm != "none":
            out.print(f"input normalisation: {ck.input_norm} (a layer of the model: extraction and exports carry it)",
                      markup=False, highlight=False)
        if (ck.arch or {}).get("embed", "linear") != "linear":
            out.print(f"token embedding: {ck.arch['embed']} (a convolutional stem before the tokens: extraction and "
                      "exports carry it)", markup=False, highlight=False)
        if ck.only_spec is not None:
            out.print(f"the one subnet: {ck.only_spec.name}", markup=False, highlight=False)
            for k, what in (("init", "started from"), ("teacher", "taught by")):
                if cfg.get(k):
                    sha = cfg.get(f"{k}_sha256")
                    out.print(f"{what} {cfg[k]}" + (f" (sha256 {sha[:12]}…)" if sha else ""), soft_wrap=True,
                              markup=False, highlight=False)


@app.command("train")
@user_errors
def train_cmd(
    data_dir: DataDir,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (a .state file beside it allows --resume).")],
    family: Annotated[str, typer.Option(help="Model family: dscnn or kwt.")] = "dscnn",
    protocol: Protocol = "12",
    epochs: Annotated[int, typer.Option(callback=in_range(1, 100_000), help="Passes over the training split.")] = RECIPE.epochs,
    batch_size: Annotated[int, typer.Option(callback=in_range(1, 65_536), help="Examples per step (split across ranks).")] = RECIPE.batch_size,
    lr: Annotated[float, typer.Option(callback=in_range(hi=10, positive=True), help="AdamW peak learning rate (linear warm-up, cosine decay).")] = RECIPE.lr,
    warmup_epochs: Annotated[float, typer.Option(callback=in_range(0, 100_000), help="Epochs of linear learning-rate warm-up.")] = RECIPE.warmup_epochs,
    weight_decay: Annotated[float, typer.Option(callback=in_range(0, 10), help="AdamW weight decay.")] = RECIPE.weight_decay,
    decay_weights_only: Annotated[bool, typer.Option(help="No weight decay on norm parameters and biases.")] = RECIPE.decay_weights_only,
    num_random: Annotated[Optional[int], typer.Option(callback=in_range(0, 16), help="Random subnets per step besides largest and smallest." + _family_default("num_random"))] = None,
    sampling: Annotated[str, typer.Option(help="Random subnets: per_stage (every spec of the space) or uniform (one width for all stages).")] = RECIPE.sampling,
    sampler: Annotated[str, typer.Option(help="Subnets per step: sandwich (largest teaches smallest + random) or students (random subnets taught by --teacher).")] = RECIPE.sampler,
    small_width_bias: Annotated[float, typer.Option(callback=in_range(0, 8), help="Favour narrow widths when sampling: the i-th narrowest drawn ∝ (i+1)^-bias (0 = uniform).")] = RECIPE.small_width_bias,
    width_anchors: Annotated[Optional[int], typer.Option(callback=in_range(0, 16), help="How many of the random subnets are a narrow width multiplier for every stage (at full depth: what --width exports)." + _family_default("width_anchors"))] = None,
    anchor_depth: Annotated[str, typer.Option(help="Width anchors' depth: full (the exported specs) or per_stage (each stage's depth drawn).")] = RECIPE.anchor_depth,
    draw_fraction: Annotated[float, typer.Option(callback=in_range(0, 1, positive=True), help="Share of the batch each per-stage random draw trains on (anchors, largest and smallest see all of it).")] = RECIPE.draw_fraction,
    narrowest_anchor_weight: Annotated[float, typer.Option(callback=in_range(hi=100, positive=True), help="Loss weight of the width anchor at the narrowest width (1 = like every other subnet).")] = RECIPE.narrowest_anchor_weight,
    small_label_weight: Annotated[float, typer.Option(callback=in_range(0, 1), help="Hard-label share of the distilled subnets' loss (0 = KD only).")] = RECIPE.small_label_weight,
    spec_augment_scope: Annotated[str, typer.Option(help="SpecAugment for all subnets, or only the largest.")] = RECIPE.spec_augment_scope,
    channel_augment: Annotated[Optional[bool], typer.Option("--channel-augment/--no-channel-augment", help="Speed perturbation, VTLP, band limits and spectral tilt." + _family_default("channel_augment"))] = None,
    input_norm: Annotated[Optional[str], typer.Option(help="Per-clip normalisation of the log-mel input, part of the model: none, band_mean (each band minus its mean over the clip) or spectral_shape (the same, the clip's level kept)." + _family_default("input_norm"))] = None,
    embed: Annotated[Optional[str], typer.Option(help="kwt: how a frame becomes a token, part of the model: linear (one map over the mel bands) or conv (two 3x3 convolutions, stride 2 along frequency, first)." + _family_default("embed"))] = None,
    engine_balance: Annotated[float, typer.Option(callback=in_range(0, 1), help="How often an epoch draws each TTS engine's clips (needs the corpus's meta.csv): 0 = as the corpus has them, 1 = an equal share per engine, 0.5 between.")] = RECIPE.engine_balance,
    kd: Annotated[str, typer.Option(help="In-place distillation loss: kl or alpha (TODM alpha-divergence).")] = RECIPE.kd,
    kd_ladder: Annotated[bool, typer.Option(help="Each width anchor learns from the next wider uniform subnet of its step (0.25 from 0.5, …), not from the largest.")] = RECIPE.kd_ladder,
    adaptive_dropout: Annotated[bool, typer.Option(help="Scale dropout with subnet size (TODM).")] = RECIPE.adaptive_dropout,
    teacher: Annotated[Optional[Path], typer.Option(help="Teacher checkpoint for teacher-student KD of the largest subnet.")] = None,
    teacher_temperature: Annotated[float, typer.Option(callback=in_range(hi=100, positive=True), help="KD temperature.")] = RECIPE.teacher_temperature,
    teacher_weight: Annotated[float, typer.Option(callback=in_range(0, 1), help="Weight of the teacher's KD loss vs the labels.")] = RECIPE.teacher_weight,
    spec_file: Annotated[Optional[Path], typer.Option("--spec", help="Train only this spec (no sandwich): a baseline twin.")] = None,
    init: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Start from this checkpoint's weights (fine-tuning; same family, space and labels).")] = None,
    seed: Seed = 0,
    resume: Resume = False,
    cache_dir: CacheDir = None,
    threads: Threads = None,
    procs: Procs = 1,
    val_every: ValEvery = 5,
    as_json: AsJson = False,
) -> None:
    """Train a supernet once (sandwich rule, in-place distillation, elastic width and depth).

    Example: edgekws train --data-dir data/synth --out runs/dscnn.pt --epochs 150 --resume
    """
    from edgekws.info import load_spec_file

    family_set = _given(num_random=num_random, width_anchors=width_anchors, channel_augment=channel_augment,
                        input_norm=input_norm, embed=embed)
    cfg = TrainConfig.for_family(family, protocol=protocol, epochs=epochs, batch_size=batch_size, lr=lr,
                      warmup_epochs=warmup_epochs, weight_decay=weight_decay, decay_weights_only=decay_weights_only,
                      sampling=sampling, sampler=sampler, small_width_bias=small_width_bias,
                      anchor_depth=anchor_depth, draw_fraction=draw_fraction, **family_set,
                      narrowest_anchor_weight=narrowest_anchor_weight, small_label_weight=small_label_weight, spec_augment_scope=spec_augment_scope,
                      engine_balance=engine_balance, kd=kd, kd_ladder=kd_ladder,
                      adaptive_dropout=adaptive_dropout,
                      teacher=str(teacher) if teacher else "", teacher_temperature=teacher_temperature,
                      teacher_weight=teacher_weight, seed=seed, init=str(init) if init else "",
                      fixed_spec=load_spec_file(spec_file).to_dict() if spec_file else None)
    _train_and_report(cfg, data_dir, out_path, cache_dir, resume, threads, procs, val_every, as_json)


def _train_and_report(cfg: TrainConfig, data_dir: Path, out_path: Path, cache_dir: Optional[Path], resume: bool,
                      threads: Optional[int], procs: int, val_every: int, as_json: bool,
                      before: Optional[dict] = None):
    """Run `train_local` with a progress bar, then print the test accuracies (`before`: a row
    label → accuracy the run started from, shown beside them)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgekws.train import train_local

    # The bar draws only on a terminal: in a pipe or a log it left a blank line (before a failed
    # run's one-line error too).
    console = err if as_json else out
    with Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f}"), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("train", total=1, epoch=0, loss=0.0, acc=0.0)
        res = train_local(procs, data_dir, out_path, cfg, cache_dir=cache_dir, resume=resume,
                          log=lambda m: bar.console.print(m, markup=False, highlight=False),
                          on_step=lambda i, n, info: bar.update(task, completed=i, total=n, **info),
                          threads_per_proc=threads or (1 if procs > 1 else None), val_every=val_every)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    if as_json:
        print(json.dumps({"checkpoint": str(res.checkpoint), "test": res.metrics.get("test", {}),
                          "train_seconds": res.metrics["train_seconds"], "machines": res.metrics.get("machines", []),
                          "history": res.metrics.get("history", []),
                          **({"before": before} if before is not None else {})}, indent=2))
        return
    t = Table("subnet", "name", *(["before"] if before is not None else []), "test accuracy", box=box.SIMPLE_HEAD)
    for key, r in res.metrics.get("test", {}).items():
        was = [] if before is None else ["n/a" if before.get(key) is None else f"{100 * before[key]:.2f}%"]
        t.add_row(key, escape(r["name"]), *was, f"{100 * r['accuracy']:.2f}%")
    out.print(t)
    out.print(f"[green]✓[/] wrote {escape(str(res.checkpoint))} ({res.metrics['train_seconds']:.0f} s of training)",
              soft_wrap=True)


@app.command("finetune")
@user_errors
def finetune_cmd(
    data_dir: DataDir,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="One-spec checkpoint to write (a .state file beside it allows --resume).")],
    width: Annotated[Optional[float], typer.Option(help="Width multiplier of the subnet (0.25, 0.5, 0.75, 1.0; others snap).")] = None,
    depth: Annotated[Optional[int], typer.Option(callback=in_range(1, 64), help="Depth per stage (default: the largest).")] = None,
    spec_file: Annotated[Optional[Path], typer.Option("--spec", help="Fine-tune exactly this spec (JSON).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="The supernet to start from (default: the shipped dscnn one).")] = None,
    supernet: Supernet = None,
    teacher: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Teacher checkpoint (default: the supernet itself; its largest subnet teaches).")] = None,
    epochs: Annotated[int, typer.Option(callback=in_range(1, 100_000), help="Passes over the training split.")] = FINETUNE.epochs,
    lr: Annotated[float, typer.Option(callback=in_range(hi=10, positive=True), help="AdamW peak learning rate (linear warm-up, cosine decay).")] = FINETUNE.lr,
    warmup_epochs: Annotated[float, typer.Option(callback=in_range(0, 100_000), help="Epochs of linear learning-rate warm-up.")] = FINETUNE.warmup_epochs,
    teacher_weight: Annotated[float, typer.Option(callback=in_range(0, 1), help="Weight of the teacher's KD loss vs the labels.")] = FINETUNE.teacher_weight,
    seed: Annotated[Optional[int], typer.Option(help="Seed (default: the supernet's).")] = None,
    resume: Resume = False,
    cache_dir: CacheDir = None,
    threads: Threads = None,
    procs: Procs = 1,
    val_every: ValEvery = 5,
    as_json: AsJson = False,
) -> None:
    """Polish one subnet for deployment: extracted from a supernet, trained alone a few epochs, taught by the supernet.

    The supernet is untouched; the result is a one-spec checkpoint for eval and export
    (`edgekws export --checkpoint OUT`).

    Example: edgekws finetune --data-dir data/synth --width 0.25 --out runs/w025.pt
    """
    from edgekws.assets import resolve_checkpoint
    from edgekws.checkpoint import load_checkpoint
    from edgekws.finetune import finetune_config, source_accuracy
    from edgekws.info import load_spec_file

    if width is not None and spec_file is not None:
        raise EdgeKWSError("give --width or --spec, not both")
    source_path = resolve_checkpoint(checkpoint, supernet)
    for what, path in (("supernet", source_path), ("teacher", teacher)):
        if path is not None and Path(out_path).resolve() == Path(path).resolve():
            raise EdgeKWSError(f"--out {out_path} is the {what} this run reads; give another path")
    source = load_checkpoint(source_path)
    spec = source.pick(load_spec_file(spec_file) if spec_file else None, width, depth)
    cfg = finetune_config(source, source_path, spec, epochs=epochs, lr=lr, warmup_epochs=warmup_epochs,
                          teacher=teacher, teacher_weight=teacher_weight, seed=seed)
    _train_and_report(cfg, data_dir, out_path, cache_dir, resume, threads, procs, val_every, as_json,
                      before={"fixed": source_accuracy(source, spec)})


@app.command("calibrate")
@user_errors
def calibrate_cmd(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint written by `edgekws train`.")],
    data_dir: DataDir,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the recalibrated checkpoint.")] = None,
    in_place: Annotated[bool, typer.Option(help="Replace the checkpoint itself (by rename) instead of --out.")] = False,
    allow_smaller: Annotated[bool, typer.Option(help="Accept a folder that gives fewer calibration examples than the checkpoint has.")] = False,
    cache_dir: CacheDir = None,
    as_json: AsJson = False,
) -> None:
    """Re-derive a checkpoint's calibration set, BN statistics and test metrics from a data folder.

    Example: edgekws calibrate --checkpoint runs/dscnn.pt --data-dir data/synth --out runs/dscnn_recal.pt
    """
    from edgekws.train import recalibrate_checkpoint

    if (out_path is None) == (not in_place):
        raise EdgeKWSError("give --out PATH, or --in-place to replace the checkpoint itself (not both)")
    dest = out_path or checkpoint
    metrics = recalibrate_checkpoint(checkpoint, data_dir, dest, cache_dir, allow_smaller=allow_smaller)
    if as_json:
        print(json.dumps({"checkpoint": str(dest), "test": metrics.get("test", {}),
                          "recalibrated": metrics["recalibrated"]}, indent=2))
        return
    t = Table("subnet", "name", "test accuracy", box=box.SIMPLE_HEAD)
    for key, r in metrics.get("test", {}).items():
        t.add_row(key, r["name"], f"{100 * r['accuracy']:.2f}%")
    out.print(t)
    rec = metrics["recalibrated"]
    out.print(f"[green]✓[/] wrote {escape(str(dest))} ({rec['examples']} calibration examples, "
              f"was {rec['previous_examples']})", soft_wrap=True)


@app.command("eval")
@user_errors
def eval_cmd(
    data_dir: DataDir,
    checkpoint: Annotated[Optional[Path], typer.Option(help="A checkpoint written by `edgekws train` (default: the shipped dscnn supernet).")] = None,
    supernet: Supernet = None,
    width: Annotated[Optional[list[float]], typer.Option(help="Width multiplier(s) to evaluate (default: all trained).")] = None,
    depth: Annotated[Optional[list[int]], typer.Option(callback=in_range(1, 64), help="Depth(s) per stage to evaluate (default: the largest).")] = None,
    spec_file: Annotated[Optional[Path], typer.Option("--spec", help="Evaluate exactly this spec.")] = None,
    split: Annotated[str, typer.Option(help="Which split of the folder.")] = "testing",
    png: Annotated[Optional[Path], typer.Option(help="Where to write the confusion-matrix PNG (default: beside the checkpoint).")] = None,
    cache_dir: CacheDir = None,
    as_json: AsJson = False,
) -> None:
    """Accuracy per width (and depth) on any Speech Commands folder, plus a confusion-matrix PNG.

    Example: edgekws eval --data-dir data/synth --width 0.25 --width 1.0 --png confusion.png
    """
    from edgekws.assets import resolve_checkpoint
    from edgekws.evaluate import evaluate_checkpoint, plot_confusions
    from edgekws.info import load_spec_file

    # a shipped checkpoint lives in the package, which is not the user's folder: its PNG goes to
    # the working directory, a user checkpoint's beside it
    shipped = checkpoint is None
    checkpoint = resolve_checkpoint(checkpoint, supernet)
    png = png or (Path(f"{checkpoint.stem}_confusion_{split}.png") if shipped
                  else checkpoint.with_name(f"{checkpoint.stem}_confusion_{split}.png"))
    rep = evaluate_checkpoint(checkpoint, data_dir, width, depth, load_spec_file(spec_file) if spec_file else None,
                              split, cache_dir)
    plot_confusions(rep, png)
    rep["confusion_png"] = str(png)
    if as_json:
        print(json.dumps(rep, indent=2))
        return
    t = Table("width", "depth", "subnet", "accuracy", box=box.SIMPLE_HEAD,
              title=f"{rep['examples']} {split} examples from {data_dir}")
    for r in rep["results"]:
        t.add_row(r["width"], r["depth"], r["name"], f"{100 * r['accuracy']:.2f}%")
    out.print(t)
    out.print(f"confusion matrices: {png}")


@app.command("loeo")
@user_errors
def loeo_cmd(
    data_dir: DataDir,
    engine: Annotated[str, typer.Option(help="The TTS engine to hold out (espeak, flite or festival).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the views, the checkpoint and loeo.json.")],
    family: Annotated[str, typer.Option(help="Model family: dscnn or kwt.")] = "dscnn",
    epochs: Annotated[int, typer.Option(callback=in_range(1, 100_000), help="Passes over the training split.")] = RECIPE.epochs,
    channel_augment: Annotated[Optional[bool], typer.Option("--channel-augment/--no-channel-augment", help="Train with speed perturbation, VTLP, band limits and spectral tilt (what an unheard engine should need)." + _family_default("channel_augment"))] = None,
    input_norm: Annotated[Optional[str], typer.Option(help="Per-clip normalisation of the log-mel input, part of the model: none, band_mean (each band minus its mean over the clip) or spectral_shape (the same, the clip's level kept)." + _family_default("input_norm"))] = None,
    embed: Annotated[Optional[str], typer.Option(help="kwt: how a frame becomes a token, part of the model: linear (one map over the mel bands) or conv (two 3x3 convolutions, stride 2 along frequency, first)." + _family_default("embed"))] = None,
    engine_balance: Annotated[float, typer.Option(callback=in_range(0, 1), help="How often an epoch draws each TTS engine's clips (needs the corpus's meta.csv): 0 = as the corpus has them, 1 = an equal share per engine, 0.5 between.")] = RECIPE.engine_balance,
    seed: Seed = 0,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted training run (views that hold out the same engine are always reused).")] = False,
    force: Annotated[bool, typer.Option(help="Rebuild the views if they exist (replaced by rename).")] = False,
    cache_dir: CacheDir = None,
    threads: Annotated[Optional[int], typer.Option(callback=in_range(1, 1024), help="torch intra-op threads.")] = None,
    as_json: AsJson = False,
) -> None:
    """Leave one TTS engine out: train the default recipe without it, test on it and on unseen voices.

    Example: edgekws loeo --data-dir data/synth --engine flite --out runs/loeo-flite --epochs 20
    """
    from rich.text import Text

    from edgekws.holdout import leave_one_engine_out

    cfg = TrainConfig.for_family(family, seed=seed, epochs=epochs, engine_balance=engine_balance,
                                 **_given(channel_augment=channel_augment, input_norm=input_norm, embed=embed))
    rep = leave_one_engine_out(data_dir, engine, out_dir, cfg, cache_dir=cache_dir, threads=threads, resume=resume,
                               force=force, log=lambda m: err.print(m, markup=False, highlight=False))
    if as_json:
        print(json.dumps(rep, indent=2))
        return
    t = Table("width", "subnet", f"held-out {engine}", "in-distribution", "gap (pt)", box=box.SIMPLE_HEAD,
              title=f"leave {engine} out: {rep['heldout_examples']} held-out examples")
    for r in rep["rows"]:
        ind = r["in_distribution_accuracy"]
        t.add_row(r["width"], r["name"], f"{100 * r['heldout_accuracy']:.2f}%",
                  "n/a" if ind is None else f"{100 * ind:.2f}%", "n/a" if r["gap_pt"] is None else f"{r['gap_pt']:+.2f}")
    out.print(t)
    if rep["heldout_per_voice"]:  # empty when the corpus's meta.csv names no voices
        widths = [r["width"] for r in rep["rows"]]
        v = Table("voice", "examples", *(f"width {w}" for w in widths), box=box.SIMPLE_HEAD,
                  title=f"held-out {engine} per voice")
        for g in rep["heldout_per_voice"]:
            v.add_row(Text(g["voice"]), str(g["examples"]), *(f"{100 * g['accuracy'][w]:.2f}%" for w in widths))
        out.print(v)
    out.print(f"report: {out_dir / 'loeo.json'}", markup=False, highlight=False)


@app.command("export")
@user_errors
def export_cmd(
    width: Annotated[Optional[float], typer.Option(help="Width multiplier (0.25, 0.5, 0.75, 1.0; others snap).")] = None,
    spec_file: Annotated[Optional[Path], typer.Option("--spec", help="Export exactly this spec (JSON).")] = None,
    depth: Annotated[Optional[int], typer.Option(callback=in_range(1, 64), help="Blocks per stage (default: the largest).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Supernet checkpoint (default: the shipped one).")] = None,
    supernet: Supernet = None,
    family: Annotated[Optional[str], typer.Option(help="Export an untrained reference of this family instead (seeded "
                                                       "weights, synthetic inputs; e.g. dscnn_mlperf for latency).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder that receives <subnet-name>/.")] = Path("export"),
    formats: Annotated[str, typer.Option(help="Comma-separated: onnx,tflite.")] = "onnx,tflite",
    precision: Annotated[str, typer.Option(help="Comma-separated: int8,float.")] = "int8,float",
    calibration: Annotated[Optional[int], typer.Option(callback=in_range(1, 1_000_000), help="Calibration examples for int8 (default: 200, or all the checkpoint has).")] = None,
    pack: Annotated[Optional[Path], typer.Option(help="Evaluation/calibration pack (default: the shipped one).")] = None,
    min_agreement: Annotated[float, typer.Option(callback=in_range(0, 1), help="int8 gate: top-1 agreement with float PyTorch.")] = 0.98,
    max_drop: Annotated[float, typer.Option(callback=in_range(0, 100), help="int8 gate: accuracy drop vs float PyTorch, points.")] = 1.0,
    atol: Annotated[float, typer.Option(callback=in_range(0, 1e6), help="float gate: max abs logit difference vs PyTorch.")] = 1e-4,
    force: Annotated[bool, typer.Option(help="Replace an existing export.")] = False,
    as_json: AsJson = False,
) -> None:
    """Export one subnet to ONNX and TFLite (float and int8), validated by gates, with a manifest.

    A failed gate writes nothing, shows the whole gate table and says what to try.

    Example: edgekws export --width 0.5 --out export/ --force
    """
    import time
    from dataclasses import asdict

    from edgekws.assets import resolve_checkpoint
    from edgekws.export import PRECISIONS, GateError, Thresholds, export_subnet, parse_list
    from edgekws.export.formats import EXPORT_FORMATS
    from edgekws.info import load_spec_file

    if width is not None and spec_file is not None:
        raise EdgeKWSError("give --width or --spec, not both")
    if supernet is not None:
        if family is not None:
            raise EdgeKWSError("give --supernet (a shipped trained supernet) or --family (an untrained reference), not both")
        checkpoint = resolve_checkpoint(checkpoint, supernet)
    t0 = time.perf_counter()
    try:
        with err.status("exporting", spinner="dots") if not as_json and err.is_terminal else contextlib.nullcontext() as status:
            res = export_subnet(spec=load_spec_file(spec_file) if spec_file else None, width=width, depth=depth,
                                checkpoint=checkpoint, out=out_dir, formats=parse_list(formats, tuple(EXPORT_FORMATS), "format"),
                                precisions=parse_list(precision, PRECISIONS, "precision"), calibration=calibration,
                                pack_path=pack, force=force, thresholds=Thresholds(atol, min_agreement, max_drop),
                                family=family,
                                progress=(lambda stage: status.update(f"exporting: {stage}")) if status else None)
    except GateError as exc:
        hint = ("try --precision float (no int8), a larger --calibration N (up to the checkpoint's set), "
                "or a lower --min-agreement / higher --max-drop if the drop is acceptable")
        if as_json:
            print(json.dumps({"error": str(exc), "checks": [asdict(c) for c in exc.checks], "int8_attempts": exc.attempts,
                              "pytorch_float_accuracy": exc.pytorch_accuracy, "hint": hint}, indent=2))
        else:
            err.print(_gate_table(exc.checks, "gates (nothing was written)", exc.pytorch_accuracy))
            if exc.attempts:
                err.print("onnx int8 schemes tried: " + ", ".join(
                    f"{a['choice']} (agreement {a['agreement']:g}, drop {a['drop_pt']:g} pt)" for a in exc.attempts),
                          soft_wrap=True, markup=False)
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            err.print(f"hint: {hint}", soft_wrap=True, markup=False)
        raise typer.Exit(1) from None
    seconds = time.perf_counter() - t0
    if as_json:
        print(json.dumps({"out_dir": str(res.out_dir), "seconds": round(seconds, 2), "manifest": res.manifest}, indent=2))
        return
    v = res.manifest["validation"]
    out.print(_gate_table(res.checks, f"{res.spec.name}: gates on {v['pack_examples']} pinned examples",
                          v["pytorch_float_accuracy"]))
    sizes = ", ".join(f"{k} {b / 1024:.1f} KB" for k, b in res.manifest["sizes_bytes"].items())
    out.print(f"[green]✓[/] {escape(str(res.out_dir))}  ({sizes}; {seconds:.1f} s)", soft_wrap=True)


def _gate_table(checks, title: str, pytorch_accuracy: float | None) -> Table:
    acc = f" (PyTorch float accuracy {100 * pytorch_accuracy:.2f}%)" if pytorch_accuracy is not None else ""
    t = Table("artefact", "check", "value", "threshold", "", box=box.SIMPLE_HEAD, title=escape(title) + acc)
    for c in checks:
        value = f"{c.value:.2e}" if c.metric == "max abs diff" else f"{c.value:g}"
        t.add_row(c.artefact, c.metric + (escape(f" [{c.note}]") if c.note else ""), value, f"{c.threshold:g}",
                  "[green]✓[/]" if c.passed else "[red]✗[/]")
    return t


@app.command("profile")
@user_errors
def profile_cmd(
    artefact_dir: Annotated[Optional[Path], typer.Argument(help="An export folder (from `edgekws export`).")] = None,
    width: Annotated[Optional[float], typer.Option(help="Export this width of a supernet first (the shipped dscnn, "
                                                     "or --supernet / --checkpoint).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="With --width: the supernet checkpoint to export from.")] = None,
    supernet: Supernet = None,
    target: Annotated[str, typer.Option(help="Device tier: a targets/*.toml name or path.")] = "host_x86",
    runs: Annotated[int, typer.Option(callback=in_range(1, 100_000), help="Timed runs per model (1-100000).")] = 200,
    warmup: Annotated[int, typer.Option(callback=in_range(0, 100_000), help="Untimed runs first (0-100000).")] = 20,
    as_json: AsJson = False,
) -> None:
    """Latency (median/p90/p99), memory and size of float and int8 artefacts against a tier's budgets.

    Exits 1 when a model failed to load or run.

    Example: edgekws profile demo-out/dscnn-w32.48.80.112-d2.3.3 --target pi4
    Example: edgekws profile --width 0.25 --supernet kwt --target pi4
    """
    import tempfile

    from edgekws.assets import resolve_checkpoint
    from edgekws.profile import profile_export
    from edgekws.targets import get_target

    tgt = get_target(target)
    if (artefact_dir is None) == (width is None):
        raise EdgeKWSError("give an export folder or --width, not both")
    if width is None and (checkpoint is not None or supernet is not None):
        raise EdgeKWSError("--checkpoint and --supernet choose what --width exports; an export folder already has its model")
    source = resolve_checkpoint(checkpoint, supernet)
    with tempfile.TemporaryDirectory(prefix="edgekws-profile-") as tmp:
        if width is not None:
            from edgekws.export import export_subnet

            artefact_dir = export_subnet(width=width, checkpoint=source, out=Path(tmp)).out_dir
        rep = profile_export(artefact_dir, tgt, runs, warmup)
    failed = [r for r in rep["results"] if not r.get("ok")]
    if as_json:
        print(json.dumps(rep, indent=2))
        if failed:
            raise typer.Exit(1)
        return
    b = tgt.budgets
    t = Table("artefact", "median ms", "p90", "p99", "p95", "RAM KB", "size KB", "accuracy", "budgets", box=box.SIMPLE_HEAD,
              title=f"{escape(rep['name'])} on {escape(tgt.name)} ({tgt.runtime}, {tgt.threads} thread(s)); budgets: p95 ≤ {b.max_p95_latency_ms} ms, "
                    f"RAM ≤ {b.max_ram_kb:g} KB, size ≤ {b.max_model_kb:g} KB, params ≤ {b.max_params:,}")
    for r in rep["results"]:
        if not r.get("ok"):
            t.add_row(escape(r["model"]), "[red]failed[/]", "", "", "", "", "", "", escape(str(r.get("error", ""))))
            continue
        lat = r["latency_ms"]
        key = ("onnx " if r["model"].endswith(".onnx") else "tflite ") + r["precision"]
        fails = [c["what"] for c in r["budgets"] if not c["passed"]]
        t.add_row(r["model"], f"{lat['median']:.3f}", f"{lat['p90']:.3f}", f"{lat['p99']:.3f}", f"{lat['p95']:.3f}",
                  f"{r['rss_kb']['model_total']:,}", f"{r['model_bytes'] / 1024:.1f}",
                  f"{100 * rep['accuracy'].get(key, float('nan')):.1f}%",
                  "[green]✓[/]" if not fails else "[red]✗ " + ", ".join(fails) + "[/]")
    out.print(t)
    out.print(f"{rep['params']:,} params, {rep['macs'] / 1e6:.2f}M MACs; fastest here: [bold]{rep['fastest_precision']}[/]",
              soft_wrap=True)
    for r in rep["results"]:
        ops = r.get("op_profile_ms")
        if ops:
            out.print(f"{escape(r['model'])} per operator (ms/inference): " + ", ".join(f"{k} {v:.3f}" for k, v in list(ops.items())[:6]),
                      soft_wrap=True)
    if rep["note"]:
        out.print(f"[yellow]note:[/] {escape(rep['note'])}", soft_wrap=True)
    for r in failed:
        err.print(f"[bold red]error:[/] {escape(r['model'])} failed: {escape(str(r.get('error') or 'no reason given'))}",
                  soft_wrap=True)
    if failed:
        raise typer.Exit(1)


bench_app = typer.Typer(help="Benchmark suites on devices (local, ssh://, qemu-aarch64) and their reports.\n\n"
                             "Example: edgekws bench --suite benchmarks/suites/smoke.toml --device local --device "
                             "qemu-aarch64:cortex-a53 --resume; then edgekws bench report benchmarks/results/bench.jsonl")
app.add_typer(bench_app, name="bench")


@bench_app.callback(invoke_without_command=True)
@user_errors
def bench_cmd(
    ctx: typer.Context,
    suite: Annotated[Optional[Path], typer.Option(help="A suite TOML (benchmarks/suites/*.toml).")] = None,
    device: Annotated[Optional[list[str]], typer.Option(
        help="local, ssh://[user@]host[:port] or qemu-aarch64[:CPU][@bullseye] (emulated Arm; `make arm` first); "
             "repeat to run in parallel.")] = None,
    results: Annotated[Path, typer.Option(help="JSONL file the rows are appended to.")] = Path("benchmarks/results/bench.jsonl"),
    resume: Annotated[bool, typer.Option(help="Skip rows already recorded as successful.")] = False,
    identity: Annotated[Optional[Path], typer.Option(help="SSH private key.")] = None,
    known_hosts: Annotated[Optional[Path], typer.Option(help="SSH known_hosts file to use.")] = None,
    remote_python: Annotated[str, typer.Option(help="Python on the board (needs numpy and LiteRT or onnxruntime).")] = "python3",
    retries: Annotated[int, typer.Option(callback=in_range(1, 100), help="Tries per row before a failure row is recorded (1-100).")] = 3,
    backoff: Annotated[float, typer.Option(callback=in_range(0, 600), help="First retry delay in seconds, 0-600 (doubles each time).")] = 1.0,
    cache: Annotated[Path, typer.Option("--cache-dir", "--cache", help="Where suite models are exported (--cache is the old name).")] = Path(".edgekws-bench"),
    sysroot: Annotated[Optional[Path], typer.Option(help="Base folder of the arm64 sysroots for qemu-aarch64 "
                                                         "(default $EDGEKWS_ARM_SYSROOT or ~/.cache/edgekws/qemu-aarch64).")] = None,
    as_json: AsJson = False,
) -> None:
    """Run a benchmark suite on one or more devices; `edgekws bench report FILE` renders the results.

    Exits 1 when any row failed (each failure's reason is printed and recorded).

    Example: edgekws bench --suite benchmarks/suites/widths.toml --device local --device ssh://pi@pi4.lan --resume
    """
    if ctx.invoked_subcommand is not None:
        return
    if suite is None or not device:
        raise EdgeKWSError("give --suite and at least one --device (or use `edgekws bench report RESULTS.jsonl`)")
    from edgekws.bench import ResultsFile, load_suite, prepare_models, run_suite
    from edgekws.devices import make_device
    from edgekws.fileio import ensure_writable_dir

    s = load_suite(suite)
    devices = [make_device(d, str(identity) if identity else None, str(known_hosts) if known_hosts else None, remote_python,
                           str(sysroot) if sysroot else None) for d in device]
    ensure_writable_dir(results.parent)
    say = (lambda m: err.print(m, soft_wrap=True, highlight=False, markup=False)) if as_json else \
        (lambda m: out.print(m, soft_wrap=True, highlight=False, markup=False))
    rf = ResultsFile(results, log=say)
    rf.repair()  # before anything runs: a torn tail from an earlier crash is set aside, and said so
    models = prepare_models(s, suite, ensure_writable_dir(cache))
    counts = run_suite(s, models, devices, rf, resume=resume, retries=retries, backoff=backoff, log=say)
    if as_json:
        print(json.dumps({"results": str(results), **counts}))
    elif counts["failed"]:
        err.print(f"[bold red]✗[/] {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} already done → "
                  f"{escape(str(results))} (reasons above; `edgekws bench report` shows them)", soft_wrap=True)
    else:
        out.print(f"[green]✓[/] {counts['ok']} ok, 0 failed, {counts['skipped']} already done → {escape(str(results))}",
                  soft_wrap=True)
    if counts["failed"]:
        raise typer.Exit(1)


@bench_app.command("report")
@user_errors
def bench_report(
    results: Annotated[Path, typer.Argument(help="A JSONL file written by `edgekws bench`.")],
    png: Annotated[Optional[Path], typer.Option(help="Latency-vs-MACs plot (default: beside the results).")] = None,
    as_json: AsJson = False,
) -> None:
    """A table of a results file (latest row per key) and a latency-vs-MACs plot.

    Lines that are not usable rows (torn by a crash, edited by hand) are named and skipped.

    Example: edgekws bench report benchmarks/results/bench.jsonl --png latency.png
    """
    from edgekws.bench import plot_latency_vs_macs, read_results

    rows, bad = read_results(results)
    for b in bad[:10]:
        err.print(f"[yellow]warning:[/] {escape(str(results))} {escape(b)} (skipped)", soft_wrap=True)
    if len(bad) > 10:
        err.print(f"[yellow]warning:[/] … and {len(bad) - 10} more unusable lines (skipped)")
    latest = {}
    for r in rows:
        latest[r["key"]] = r
    if as_json:
        print(json.dumps({"results": str(results), "rows": list(latest.values()), "skipped_lines": bad}, indent=2))
        return
    from rich.table import Column
    from rich.text import Text

    num = {"no_wrap": True, "justify": "right"}
    t = Table(Column("device", overflow="fold"), Column("model", no_wrap=True), Column("runtime", no_wrap=True),
              Column("thr", **num), Column("MACs", **num), Column("median ms", **num), Column("p95 ms", **num),
              Column("RAM KB", **num), Column("=x86", **num), Column("tries", **num), box=box.SIMPLE_HEAD,
              title=f"{escape(str(results))}: {len(latest)} rows")
    for r in sorted(latest.values(), key=lambda r: (r["device"], r["macs"], r["runtime"], r["precision"], r["threads"])):
        cells = [Text(r["device"]), Text(r["model"]), Text(f"{r['runtime']} {r['precision']}"), str(r["threads"]),
                 f"{r['macs'] / 1e6:.2f}M"]
        if r.get("ok"):
            lat, ram = r["latency_ms"], (r.get("rss_kb") or {}).get("model_total", "")
            g = r.get("golden")
            agree = (f"{'[green]' if g.get('top1_identical') else '[red]'}{g['top1_agree']}/{g['n']}[/]" if g else "")
            if r.get("latency_meaningful", True):
                cells += [f"{lat['median']:.3f}", f"{lat['p95']:.3f}", str(ram), agree]
            else:  # emulated: shown for completeness, dimmed, never plotted
                cells += [f"[dim]({lat['median']:.1f})[/]", f"[dim]({lat['p95']:.1f})[/]", f"[dim]({ram})[/]", agree]
        else:
            cells += ["[red]failed[/]", "", "", ""]
        t.add_row(*cells, str(r.get("attempts", "")))
    notes = sorted({str(r["note"]) for r in latest.values() if r.get("note")})
    failures = [r for r in latest.values() if not r["ok"]]
    out.print(t)
    for n in notes:
        out.print(f"[yellow]note:[/] {escape(n)} (in parentheses above, left out of the plot)", soft_wrap=True)
    for r in failures:
        what = f"{r['device']} {r['model']} {r['runtime']} {r['precision']} t{r['threads']}"
        out.print(f"[red]failed:[/] {escape(what)}: {escape(str(r.get('error') or 'no reason recorded'))}", soft_wrap=True)
    png = png or results.with_suffix(".png")
    if plot_latency_vs_macs(list(latest.values()), png):
        out.print(f"plot: {escape(str(png))}", soft_wrap=True)
    else:
        out.print("no plot: no row has a measured (non-emulated, successful) latency")


qemu_app = typer.Typer(help="Emulated 64-bit Arm (qemu-user + an arm64 Debian sysroot) for `bench --device qemu-aarch64`.")
app.add_typer(qemu_app, name="qemu")


@qemu_app.command("setup")
@user_errors
def qemu_setup(
    release: Annotated[str, typer.Option(help="bookworm (Python 3.11, this host's runtimes), bullseye (Python 3.9, numpy 1.x, "
                                              "tflite-runtime) or all.")] = "all",
    sysroot: Annotated[Optional[Path], typer.Option(help="Base folder, one sysroot per release "
                                                         "(default $EDGEKWS_ARM_SYSROOT or ~/.cache/edgekws/qemu-aarch64).")] = None,
    mirror: Annotated[str, typer.Option(help="Debian mirror for debootstrap.")] = "http://deb.debian.org/debian",
    force: Annotated[bool, typer.Option(help="Rebuild even if it exists.")] = False,
) -> None:
    """Build the arm64 sysroots once (~40 s each): debootstrap + aarch64 wheels from PyPI.

    Example: edgekws qemu setup --release bookworm
    """
    from edgekws.emulation import DEFAULT_RELEASE, RELEASES, build_sysroot, get_release, sysroot_base

    names = list(RELEASES) if release == "all" else [get_release(release).name]
    for name in names:
        dest = (sysroot or sysroot_base()) / name
        unavailable = dest.with_name(f"{name}.unavailable")
        try:
            info = build_sysroot(dest, name, mirror=mirror, force=force, log=lambda m: out.print(f"  {m}", highlight=False))
        except EdgeKWSError as exc:
            if release != "all" or name == DEFAULT_RELEASE:
                raise
            # An older release can vanish from the mirror: say so, record why, keep the main one usable.
            unavailable.write_text(str(exc) + "\n")
            err.print(f"[yellow]warning:[/] {name} sysroot not built: {exc}", soft_wrap=True)
            continue
        unavailable.unlink(missing_ok=True)
        pk = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
        out.print(f"[green]✓[/] {dest}: Debian {info['release']} arm64, Python {info['python']}, {pk} "
                  f"(built {info['built']} in {info['seconds']} s)", soft_wrap=True, highlight=False)
    from edgekws.estimate import build_plugin

    plugin = build_plugin(force=force, log=lambda m: out.print(f"  {m}", highlight=False))
    out.print(f"[green]✓[/] {plugin}: instruction-count plugin for estimated latency", soft_wrap=True, highlight=False)


@qemu_app.command("check")
@user_errors
def qemu_check(
    release: Annotated[str, typer.Option(help="bookworm or bullseye.")] = "bookworm",
    cpu: Annotated[str, typer.Option(help="qemu CPU model: cortex-a53 (Pi 3, Zero 2 W), cortex-a72 (Pi 4), cortex-a76 (Pi 5).")] = "cortex-a72",
    sysroot: Annotated[Optional[Path], typer.Option(help="Base folder of the sysroots.")] = None,
    as_json: AsJson = False,
) -> None:
    """Start the emulated Python and report what it loads.

    Example: edgekws qemu check --cpu cortex-a53 --release bookworm
    """
    from edgekws.devices import DeviceError, make_device

    dev = make_device(f"qemu-aarch64:{cpu}@{release}", sysroot=str(sysroot) if sysroot else None)
    try:
        found = dev.probe()
    except DeviceError as exc:
        raise EdgeKWSError(str(exc)) from None
    loaded = {k: v for k, v in found.items() if k not in ("machine", "python") and v}
    if "numpy" not in loaded or "onnxruntime" not in loaded or not {"ai_edge_litert", "tflite_runtime"} & set(loaded):
        raise EdgeKWSError(f"emulated Python on {dev.name} lacks a runtime: {found}")
    if as_json:
        print(json.dumps({"device": dev.name, "cpu": cpu, "release": release, **found}, indent=2))
        return
    out.print(f"[green]✓[/] {found['machine']} ({cpu}, Debian {release}) Python {found['python']}: "
              + ", ".join(f"{k} {v}" for k, v in loaded.items()), highlight=False)


costmodel_app = typer.Typer(help="Latency and memory models fitted on measured rows (for `search` and `release`).",
                            no_args_is_help=True)
app.add_typer(costmodel_app, name="costmodel")


@costmodel_app.command("fit")
@user_errors
def costmodel_fit(
    results: Annotated[Path, typer.Option(help="Bench results JSONL (from `edgekws bench`; a suite with `sample = 24` "
                                               "gives enough subnets).")],
    target: Annotated[str, typer.Option(help="Device tier: its runtime and threads select the rows.")] = "host_x86",
    device: Annotated[Optional[str], typer.Option(help="Rows of this device (default: the target's device, or the only one).")] = None,
    family: Annotated[Optional[str], typer.Option(help="Rows of this model family (default: the only one in the file).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Price subnets with this checkpoint's architecture (and fit "
                                                             "only rows that measured it; default: the one the rows "
                                                             "record, or the registered family's).")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Write the models here (JSON).")] = None,
    as_json: AsJson = False,
) -> None:
    """Fit latency (median, p95) and model RAM per precision from bench rows; report the error on
    held-out subnets. A cost model prices one architecture: rows whose exports record another
    (`arch` in the manifest, e.g. kwt's stem) are skipped with a note.

    Example: edgekws costmodel fit --results lab/pi4.jsonl --target pi4 --out pi4-costmodel.json
    """
    from edgekws.bench import read_jsonl
    from edgekws.costmodel import save_models
    from edgekws.costmodel import fit_bench_rows
    from edgekws.targets import get_target

    tgt = get_target(target)
    rows, bad = read_jsonl(results)
    for b in bad:
        err.print(f"[yellow]note:[/] {escape(str(results))}: {escape(b)} (skipped)", soft_wrap=True)
    if not rows:
        raise EdgeKWSError(f"{results}: no usable rows")
    definition = None
    if checkpoint is not None:
        from edgekws.checkpoint import load_checkpoint

        ck = load_checkpoint(checkpoint)
        if family is not None and family != ck.family:
            raise EdgeKWSError(f"--family {family} but the checkpoint is a {ck.family} supernet")
        family, definition = ck.family, ck.family_def()
    models = fit_bench_rows(rows, tgt.runtime, tgt.threads, device or tgt.device,
                            log=lambda m: err.print(escape(m), soft_wrap=True), family=family, definition=definition)
    if out_path:
        save_models(models, out_path, {"target": tgt.key, "results": str(results)})
    if as_json:
        print(json.dumps({k: m.to_dict() for k, m in models.items()}, indent=2))
        return
    t = Table("model", "rows", "subnets", "MAPE % (held out)", "p90 APE %", "within ±10 %", box=box.SIMPLE_HEAD,
              title=f"cost models for {escape(tgt.name)} ({tgt.runtime}, {tgt.threads} thread(s))")
    for k, m in models.items():
        h = m.holdout
        t.add_row(k, str(m.rows), str(m.specs), f"{h['mape_pct']:.1f}", f"{h['p90_ape_pct']:.1f}", f"{100 * h['within_10pct']:.0f} %")
    out.print(t)
    if out_path:
        out.print(f"[green]✓[/] wrote {escape(str(out_path))}", soft_wrap=True)


Trials = Annotated[int, typer.Option(callback=in_range(1, 100_000), help="Search trials per tier (1-100000).")]
Samples = Annotated[int, typer.Option(callback=in_range(5, 4096), help="Subnets measured for the latency models "
                                                                        "besides the uniform widths (5-4096).")]
Precisions = Annotated[str, typer.Option(help="Precisions to choose from: float,int8, float or int8.")]


def _precisions(value: str) -> tuple[str, ...]:
    got = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if not got or set(got) - {"float", "int8"}:
        raise EdgeKWSError(f"--precisions must list float and/or int8 (got {value!r})")
    return got
BoardResults = Annotated[Optional[list[Path]], typer.Option("--results", help="Bench JSONL from the tiers' boards "
                                                                                  "(a target's `device` picks its rows).")]


def _runtimes(value: Optional[str]) -> tuple[str, ...] | None:
    from edgekws.targets import RUNTIMES

    if value is None:
        return None
    got = tuple(v.strip() for v in value.split(",") if v.strip())
    if not got or set(got) - set(RUNTIMES):
        raise EdgeKWSError(f"--runtimes must list {' and/or '.join(RUNTIMES)} (got {value!r})")
    return got


@app.command("search")
@user_errors
def search_cmd(
    target: Annotated[str, typer.Option(help="Device tier: a targets/*.toml name or path.")],
    trials: Trials = 200,
    seed: Seed = 0,
    samples: Samples = 12,
    runtimes: Annotated[Optional[str], typer.Option(help="Runtimes to choose from, e.g. litert,onnxruntime "
                                                         "(default: the target's).")] = None,
    precisions: Precisions = "float,int8",
    results: BoardResults = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Supernet checkpoint (default: the shipped one).")] = None,
    supernet: Supernet = None,
    work: Annotated[Path, typer.Option(help="Measurements and exports, kept for the next run.")] = Path("release"),
    as_json: AsJson = False,
) -> None:
    """The Pareto front (validation accuracy, latency, size) of the trained space under a tier's
    budgets, and the pick. Seeded: the same inputs give the same front.

    Example: edgekws search --target pi4 --trials 200
    """
    from edgekws.assets import resolve_checkpoint
    from edgekws.release import prepare
    from edgekws.search import search
    from edgekws.targets import get_target

    tgt = get_target(target)
    say = (lambda m: err.print(escape(m), soft_wrap=True, highlight=False))
    precs = _precisions(precisions)
    ctx = prepare([tgt], work, resolve_checkpoint(checkpoint, supernet), results or [], samples, seed, _runtimes(runtimes), precs, log=say)
    pred = ctx.predictor(tgt)
    res = search(ctx.oracle.ck.space, tgt, ctx.oracle.accuracy, pred, ctx.tier_runtimes[tgt.key], pred.precisions, trials=trials,
                 seed=seed, family=pred.family, trained=ctx.oracle.ck.trained, log=say)
    ctx.oracle.flush()
    doc = {**res.to_dict(), "latency_source": ctx.sources[tgt.key],
           "latency_model": {f"{r}/{p}": m.to_dict() for (r, p), m in pred.latency.items()}}
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        b = tgt.budgets
        t = Table("subnet", "precision", "runtime", "val. acc.", "latency ms", "p95 ms", "model KB", "RAM KB", box=box.SIMPLE_HEAD,
                  title=f"Pareto front for {escape(tgt.name)} ({ctx.sources[tgt.key]} latency); budgets: p95 ≤ "
                        f"{b.max_p95_latency_ms:g} ms, model ≤ {b.max_model_kb:g} KB, RAM ≤ {b.max_ram_kb:g} KB")
        for e in res.front:
            mark = "[bold]" if res.pick and e.key == res.pick.key else ""
            t.add_row(f"{mark}{e.spec.name}", e.precision, e.runtime, f"{100 * e.accuracy:.2f}%", f"{e.latency_ms:.3f}",
                      f"{e.latency_p95_ms:.3f}", f"{e.model_kb:.1f}", f"{e.ram_kb:,.0f}")
        out.print(t)
        out.print(f"{len({e.key for e in res.evaluations})} distinct subnets × precision evaluated in {res.seconds:.0f} s "
                  f"({ctx.oracle.evaluated} scored by the supernet, the rest cached)", soft_wrap=True)
        if res.pick:
            p = res.pick
            out.print(f"[green]pick:[/] {p.spec.name} {p.precision} on {p.runtime}: {100 * p.accuracy:.2f}% validation, "
                      f"{p.latency_ms:.3f} ms ({escape(p.latency_source)})", soft_wrap=True)
    if res.pick is None:
        raise EdgeKWSError(f"no subnet of the space fits {tgt.key}'s budgets (see the front above for the closest)")


@app.command("release")
@user_errors
def release_cmd(
    targets: Annotated[list[str], typer.Option("--targets", "-t", help="Device tiers (names or .toml paths; repeatable).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Release folder (resumable: a finished tier is kept).")] = Path("release"),
    trials: Trials = 200,
    seed: Seed = 0,
    samples: Samples = 12,
    runtimes: Annotated[Optional[str], typer.Option(help="Runtimes to choose from (default: each target's).")] = None,
    precisions: Precisions = "float,int8",
    results: BoardResults = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Supernet checkpoint (default: the shipped one).")] = None,
    supernet: Supernet = None,
    force: Annotated[bool, typer.Option(help="Redo tiers released before.")] = False,
) -> None:
    """One verified model per device tier: search, export through the gates, verify on the board
    or emulated CPU, and write index.json, REPORT.md and a Pareto plot per tier. Exits 1 when a
    tier has no subnet that fits.

    Example: edgekws release --targets pi3 --targets pi4 --targets pi5 --out release/
    """
    from edgekws.assets import resolve_checkpoint
    from edgekws.release import release
    from edgekws.targets import get_target

    tgts = [get_target(t) for t in targets]
    if len({t.key for t in tgts}) != len(tgts):
        raise EdgeKWSError("a target is listed twice")
    index = release(tgts, out_dir, resolve_checkpoint(checkpoint, supernet), results or [], trials, seed, samples, _runtimes(runtimes),
                    _precisions(precisions), force=force, log=lambda m: err.print(escape(m), soft_wrap=True, highlight=False))
    t = Table("tier", "pick", "precision", "val. acc.", "test acc.", "p95 ms", "latency", "model KB", "RAM KB", "status",
              box=box.SIMPLE_HEAD, title=f"release in {escape(str(out_dir))}")
    for key, tier in index["tiers"].items():
        p, v = tier.get("pick"), tier.get("verified") or {}
        if not p:
            t.add_row(escape(key), "—", "", "", "", "", "", "", "", f"[red]{escape(tier['status'])}[/]")
            continue
        test = tier.get("test_accuracy")
        t.add_row(escape(key), p["name"], p["precision"], f"{100 * p['accuracy']:.2f}%", "" if test is None else f"{100 * test:.2f}%",
                  f"{v.get('latency_p95_ms')}", "estimated" if str(v.get("latency_source", "")).startswith("estimated") else "measured",
                  f"{v.get('model_kb')}", f"{v.get('ram_kb')}", "[green]released[/]")
    out.print(t)
    out.print(f"report: {escape(str(out_dir / 'REPORT.md'))}", soft_wrap=True)
    if index["failed"]:
        raise EdgeKWSError(f"{len(index['failed'])} tier(s) without a release: {', '.join(index['failed'])}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
