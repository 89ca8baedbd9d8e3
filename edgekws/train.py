"""Train once: supernet training with the sandwich rule and in-place distillation.

One optimizer step per batch (slimmable networks' sandwich rule):
1. the **largest** subnet learns from the labels (label-smoothed cross-entropy), optionally also
   from an external teacher checkpoint (teacher–student KD, as for small highway networks);
2. the **smallest** subnet and `num_random` random subnets learn from the largest's detached soft
   outputs (in-place distillation) — with KL divergence, or TODM's alpha-divergence (AlphaNet's
   adaptive form: the larger of D_α− and D_α+, importance ratios clipped);
3. gradients of all of them are summed and one AdamW step is taken.

Which subnets a step trains and what each learns from are `edgekws.step`'s samplers and loss
terms; this module runs epochs, resume, the feature bank and ranks around `train_step`. Random
subnets draw a width and a depth per stage (TODM's elastic depth; `sampling`). Switchable BNs then hold one set of statistics per width, but a width's
statistics mix every depth it was trained at (width 0.25 at full depth scored 53.8 % as stored
and 66.8 % recalibrated, measured). So BN calibration is a named, explicit step, as in
once-for-all: the checkpoint carries 512 pinned *training* examples, every evaluated or exported
subnet gets `recalibrate_bn` on them, and after training the supernet's own switchable BNs are
recalibrated for each width multiplier at full depth.

Adaptive dropout (TODM): the dropout before the classifier scales with the subnet's size,
`p = dropout_max × params(subnet) / params(largest)`, so small subnets are not over-regularised.

Distributed: under `torchrun`, each rank trains on its shard of every batch and gradients are
all-reduced (averaged) once per sandwich step with torch.distributed (gloo on CPU, nccl on GPU).
DDP's module wrapper syncs per backward and assumes a fixed set of used parameters; the sandwich
rule runs 2 + n forwards per step over different parameter subsets, so edgekws reduces the
gradients itself, once, after the last backward — the same arithmetic as DDP, without its hooks.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from edgekws.alloc import keep_freed_memory
from edgekws.augment import AugmentConfig, ChannelConfig, WaveAugment, channel_augment, spec_augment, speed_perturb
from edgekws.balance import epoch_order, epoch_shares, example_engines, read_engines
from edgekws.checkpoint import Checkpoint, arch_dict, load_checkpoint, save_checkpoint, save_torch
from edgekws.data import CachedSplit, SpeechCommands, load_split
from edgekws.errors import EdgeKWSError
from edgekws.features import FeatureConfig, LogMel
from edgekws.fileio import ensure_writable_dir, sha256_file
from edgekws.models import create_supernet
from edgekws.models.input_norm import INPUT_NORMS
from edgekws.models.kwt_arch import EMBEDS
from edgekws.recipe import TrainConfig, family_for
from edgekws.spec import SearchSpace, SubnetSpec
from edgekws.targets import host_facts
from edgekws.step import ANCHOR_DEPTHS, SAMPLERS, SAMPLING_POLICIES, make_sampler, train_step


# --------------------------------------------------------------------------------------------
# Helpers


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class LocalRanks:
    """Explicit rendezvous for `train_local`'s processes (no environment variables needed)."""

    rank: int
    world: int
    port: int


def init_distributed(local: LocalRanks | None = None) -> Dist:
    import torch.distributed as dist

    if local is not None:
        if not dist.is_initialized():
            import datetime

            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{local.port}", rank=local.rank,
                                    world_size=local.world, timeout=datetime.timedelta(minutes=10))
        return Dist(local.rank, local.world)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size())


class _SupervisorGone(Exception):
    """Rank 0 found the process that started the run gone: no one is left to take its result."""


def _peer_lost(exc: BaseException) -> bool:
    """Did a collective fail because another rank ended? (gloo raises a RuntimeError naming its
    own source file — "Connection reset by peer", "Connection closed by peer".)"""
    import torch.distributed as dist

    return isinstance(exc, dist.DistError) or "/gloo/" in str(exc)


def _local_rank_main(local: LocalRanks, data_dir, out, cfg, cache_dir, resume, threads, val_every,
                     errors=None, events=None, parent: int | None = None) -> None:
    """A spawned rank of `train_local`.

    Rank 0 sends its log lines, its progress and its result to the supervising process on
    `events`, and stops when that process is gone, so no rank trains on orphaned. A failure is a
    non-zero exit and one `(rank, kind, line)` on `errors`; `kind` says what the supervisor may
    make of it: 'user' (an EdgeKWSError — every rank meets those, so rank 0's is reported once,
    verbatim), 'peer' (a collective failed because another rank ended: a symptom, never the
    cause) or 'bug' (anything else; its traceback is printed too). An interrupt ends the rank
    quietly."""

    def on_step(i: int, n: int, info: dict) -> None:
        if parent is not None and os.getppid() != parent:
            raise _SupervisorGone()
        if events is not None:
            events.put(("step", i, n, info))

    log = (lambda m: events.put(("log", m))) if events is not None else (lambda m: None)
    try:
        res = train(data_dir, out, cfg, cache_dir=cache_dir, resume=resume, log=log, on_step=on_step,
                    threads=threads, local=local, val_every=val_every)
        if events is not None:
            events.put(("done", res))
    except KeyboardInterrupt:
        sys.exit(130)
    except _SupervisorGone:
        sys.exit(1)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        kind = "user" if isinstance(exc, EdgeKWSError) else "peer" if _peer_lost(exc) else "bug"
        if kind == "bug":
            import traceback

            traceback.print_exc()
        if errors is not None:
            errors.put((local.rank, kind, first if kind == "user" else f"{type(exc).__name__}: {first}"))
        sys.exit(1)


def _terminate(children: list) -> None:
    """End the ranks still running and reap them, so each has its exit code."""
    for c in children:
        if c.is_alive():
            c.terminate()
            c.join(timeout=10)


def _ended(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def train_local(procs: int, data_dir: Path, out: Path, cfg: "TrainConfig", cache_dir: Path | None = None,
                resume: bool = False, log: Callable[[str], None] = print,
                on_step: Callable[[int, int, dict], None] | None = None, threads_per_proc: int | None = 1,
                val_every: int = 5) -> "TrainResult":
    """Train with `procs` processes on this machine, `threads_per_proc` torch threads each.

    Why: the models are tiny, so one process with two intra-op threads leaves most of each op
    serial; two processes of one thread each, gradients all-reduced once per step over gloo,
    were 1.03–1.08× faster than one process of two threads (benchmarks/train_speed.py, within
    this machine's noise, hence not the default).

    Every rank is spawned; this process only supervises (rank 0's log lines and progress come
    here, so logs and the progress bar work as usual). Why not train rank 0 here: when a peer
    dies, gloo may throw from its own I/O thread, which no Python code can catch — the process
    aborts (SIGABRT, seen once in CI) and the run's one-line error is lost with it. A rank that
    ends early (killed, out of memory, its own error) ends the run at once with one line naming
    it, its pid (what the kernel's OOM killer logs) and what was kept (the last finished epoch's
    `.state`, for `--resume`)."""
    if procs <= 1:
        return train(data_dir, out, cfg, cache_dir, resume, log, on_step, threads_per_proc, val_every=val_every)
    import queue
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    errors, events = ctx.SimpleQueue(), ctx.Queue()
    ranks = [ctx.Process(target=_local_rank_main, daemon=True,
                         args=(LocalRanks(r, procs, port), data_dir, out, cfg, cache_dir, resume, threads_per_proc,
                               val_every, errors, events if r == 0 else None, os.getpid()))
             for r in range(procs)]
    result = None

    def handle(msg) -> None:
        nonlocal result
        if msg[0] == "log":
            log(msg[1])
        elif msg[0] == "step":
            if on_step is not None:
                on_step(*msg[1:])
        else:
            result = msg[1]

    ended: list[int] = []  # ranks in the order they were seen to end

    def see_ended() -> None:
        ended.extend(r for r, c in enumerate(ranks) if c.exitcode is not None and r not in ended)

    try:
        for c in ranks:
            c.start()
        while result is None:
            try:
                handle(events.get(timeout=0.2))
            except queue.Empty:
                pass
            see_ended()
            if ended and result is None:
                for c in ranks:
                    c.join(timeout=2)  # the others notice in a moment; let them say why
                see_ended()
                try:
                    while result is None:
                        handle(events.get(timeout=0.5))  # what rank 0 sent before it ended
                except queue.Empty:
                    pass
                break
    except BaseException:
        _terminate(ranks)
        raise
    if result is None:
        _terminate(ranks)  # the ones still waiting in a collective can never finish
        codes = {r: c.exitcode for r, c in enumerate(ranks)}
        sent = _rank_errors(errors)

        def symptom(r: int) -> bool:  # ended because another rank did
            return sent.get(r, ("",))[0] == "peer" or codes[r] == -signal.SIGABRT

        if sent.get(0, ("",))[0] == "user":  # every rank meets those: said once, as one process would
            raise EdgeKWSError(sent[0][1])
        cause = min(ended, key=lambda r: (symptom(r), ended.index(r)))
        why = sent.get(cause, (None, None))[1]
        state = out.with_name(out.name + ".state")
        kept = (f"{state} keeps the last finished epoch: rerun with --resume to continue" if state.exists()
                else "no epoch had finished")
        raise EdgeKWSError(f"training process {cause} of {procs} (pid {ranks[cause].pid}) {_ended(codes[cause])} "
                           "before the run finished" + (f" ({why})" if why else "") + f"; {kept}")
    for c in ranks:
        c.join(timeout=60)
    _terminate(ranks)
    bad = [(r, c.exitcode) for r, c in enumerate(ranks) if c.exitcode != 0]
    if bad:
        why = _rank_errors(errors).get(bad[0][0], (None, None))[1]
        raise EdgeKWSError(f"training process {bad[0][0]} of {procs} (pid {ranks[bad[0][0]].pid}) "
                           f"{_ended(bad[0][1])} after sending its result" + (f" ({why})" if why else ""))
    return result


def _rank_errors(errors) -> dict[int, tuple[str, str]]:
    """What the spawned ranks that failed sent before exiting (rank → (kind, one line))."""
    out: dict[int, tuple[str, str]] = {}
    while not errors.empty():
        r, kind, msg = errors.get()
        out.setdefault(r, (kind, msg))
    return out


def allreduce_grads(model: nn.Module, d: Dist) -> None:
    if d.world == 1:
        return
    import torch.distributed as dist

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_buffers(model: nn.Module, d: Dist) -> None:
    """Average BN running statistics across ranks (each saw its own shard)."""
    if d.world == 1:
        return
    import torch.distributed as dist

    for buf in model.buffers():
        if buf.dtype.is_floating_point:
            dist.all_reduce(buf)
            buf /= d.world


def sum_over_ranks(x: float, d: Dist) -> float:
    """Total of a per-rank figure (CPU seconds: every rank's process spends its own)."""
    if d.world == 1:
        return x
    import torch.distributed as dist

    t = torch.tensor([x], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def param_digest(model: nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_in_step(model: nn.Module, d: Dist) -> list[str]:
    """Every rank's parameter digest; raises if ranks have drifted apart."""
    digest = param_digest(model)
    if d.world == 1:
        return [digest]
    import torch.distributed as dist

    digests: list = [None] * d.world
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise EdgeKWSError(f"distributed ranks diverged (parameter digests {digests})")
    return digests


@torch.no_grad()
def evaluate_spec(model: nn.Module, spec: SubnetSpec, split: CachedSplit, calibration=None,
                  batch: int = 512) -> tuple[float, np.ndarray]:
    """(accuracy, predictions) of the subnet `spec` on a cached split's clean features.

    With `calibration` (training features) and a BatchNorm family, the subnet is extracted and
    its BN statistics recalibrated first — as it will be deployed."""
    from edgekws.extract import calibration_batches, extract, has_batchnorm, recalibrate_bn

    model.eval()
    if calibration is not None and has_batchnorm(model):
        net = extract(model, spec)
        recalibrate_bn(net, calibration_batches(calibration))
    else:
        model.set_active(spec)
        net = model
    preds = []
    feats = split.features
    for s in range(0, len(feats), batch):
        preds.append(net(torch.from_numpy(np.array(feats[s : s + batch]))).argmax(1).numpy())
    p = np.concatenate(preds)
    return float((p == split.targets).mean()), p


def calibrate_supernet(model: nn.Module, space: SearchSpace, calibration) -> None:
    """Recalibrate each width multiplier's switchable BNs at full depth, in the supernet itself."""
    from edgekws.extract import calibration_batches, has_batchnorm, recalibrate_bn

    if not has_batchnorm(model):
        return
    for spec in space.width_multiplier_specs().values():
        model.set_active(spec)
        recalibrate_bn(model, calibration_batches(calibration))


CALIBRATION_EXAMPLES = 512


def finalize(model: nn.Module, space: SearchSpace, fixed: SubnetSpec | None, calib: np.ndarray,
             test_split: CachedSplit | None) -> dict:
    """End of training: recalibrate the supernet's BNs per width, then test accuracy per width."""
    calibrate_supernet(model, space, calib)
    if test_split is None:
        return {}
    specs = {"fixed": fixed} if fixed is not None else {
        **{f"width_{m:g}": s for m, s in space.width_multiplier_specs().items()}, "smallest": space.smallest()}
    return {"test": {k: {"spec": s.to_dict(), "name": s.name, "accuracy": round(evaluate_spec(model, s, test_split, calib)[0], 4)}
                     for k, s in specs.items()}, "test_examples": len(test_split.targets)}


def recalibrate_checkpoint(path: Path, data_dir: Path, out: Path, cache_dir: Path | None = None,
                           allow_smaller: bool = False) -> dict:
    """Re-derive a checkpoint's calibration set (first examples of the training split in pinned
    order), its supernet BN statistics and its test metrics from a data folder. A folder that
    yields a smaller calibration set than the checkpoint carries is refused unless
    `allow_smaller` (int8 export calibrates on that set: shrinking it is a real change)."""
    ck = load_checkpoint(path)
    cfg = ck.train_config
    ds = SpeechCommands.open(data_dir, str(cfg.get("protocol", "12")), int(cfg.get("seed", 0)))
    train_split = load_split(ds, "train", ck.features, cache_dir)
    test_split = load_split(ds, "testing", ck.features, cache_dir) if "testing" in ds.available_splits() else None
    calib = np.array(train_split.features[:CALIBRATION_EXAMPLES], dtype=np.float32)
    had = 0 if ck.calibration is None else len(ck.calibration)
    if len(calib) < had and not allow_smaller:
        raise EdgeKWSError(f"'{data_dir}' gives {len(calib)} calibration examples, fewer than the {had} the checkpoint "
                           "carries (pass --allow-smaller to accept a smaller set)")
    model = ck.supernet()
    fixed = SubnetSpec.from_dict(cfg["fixed_spec"]) if cfg.get("fixed_spec") else None
    metrics = {**ck.metrics, **finalize(model, ck.space, fixed, calib, test_split)}
    metrics["recalibrated"] = {"data_dir": str(data_dir), "examples": len(calib), "previous_examples": had}
    save_checkpoint(out, Checkpoint(ck.family, ck.space, ck.features, ck.labels, model.state_dict(), cfg, metrics,
                                    calibration=torch.from_numpy(calib).to(torch.float16), sampling=ck.sampling,
                                    arch=ck.arch))
    return metrics


# --------------------------------------------------------------------------------------------
# The loop


class BatchMaker:
    """Turns batch indices into training inputs: waveform shift + noise (+ channel augmentation),
    log-mel, SpecAugment.

    Everything random comes from a generator seeded by (seed, step, rank) (and the bank's from
    (seed, variant)), so a batch depends only on its step and a resumed run sees the same
    batches as an uninterrupted one. (Making batches on a background thread was measured too:
    0.76–0.86× — on 2 cores it competes with the model's own threads — so it is not done.)

    With `cfg.feature_variants = K > 0` the waveform part (shift, noise, channel) and the log-mel
    are computed once per clip for K seeded variants — a *feature bank*, made when an epoch first
    needs it, epoch e reading variant e mod K — and only SpecAugment stays per step. Making a
    batch's features is ~14 % of a sandwich step on 2 cores (benchmarks/train_speed.py); over
    150 epochs the bank does that work K times instead of 150."""

    def __init__(self, waves: np.ndarray, targets: np.ndarray, frontend: LogMel, wave_aug: WaveAugment | None,
                 cfg: TrainConfig, rank: int = 0):
        self.waves, self.targets = waves, torch.from_numpy(np.array(targets))
        self.frontend, self.wave_aug, self.cfg, self.rank = frontend, wave_aug, cfg, rank
        self.channel = ChannelConfig()
        self.banks: dict[int, torch.Tensor] = {}

    def _features(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.cfg.channel_augment:
            x = speed_perturb(x, gen, self.channel.speed)
        if self.wave_aug is not None:
            x = self.wave_aug(x, gen)
        if self.cfg.channel_augment:
            return self.frontend.log_mel(channel_augment(self.frontend.power(x), gen, self.channel))
        return self.frontend(x)

    def bank(self, variant: int, chunk: int = 256) -> torch.Tensor:
        """Variant `variant` of every clip's augmented features (float16, made once)."""
        if variant not in self.banks:
            gen = torch.Generator().manual_seed(int(self.cfg.seed * 7_919 + variant * 104_729 + 17))
            parts = []
            for s in range(0, len(self.waves), chunk):
                x = torch.from_numpy(self.waves[s : s + chunk].astype(np.float32) / 32768.0)
                parts.append(self._features(x, gen).to(torch.float16))
            self.banks[variant] = torch.cat(parts)
        return self.banks[variant]

    def __call__(self, step: int, idx: np.ndarray, epoch: int = 0) -> dict:
        cfg = self.cfg
        idx = np.sort(idx)
        gen = torch.Generator().manual_seed(int(cfg.seed * 1_000_003 + step * 31 + self.rank))
        if cfg.feature_variants > 0:
            feats = self.bank(epoch % cfg.feature_variants)[torch.from_numpy(idx)].float()
        else:
            feats = self._features(torch.from_numpy(self.waves[idx].astype(np.float32) / 32768.0), gen)
        plain = feats
        if cfg.spec_augment:
            feats = spec_augment(feats, gen)
        small = plain if cfg.spec_augment_scope == "largest" else feats
        return {"feats": feats.contiguous(), "small": small.contiguous(), "y": self.targets[idx]}


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: with `decay_weights_only`, norm affine parameters and biases get no decay."""
    if not cfg.decay_weights_only:
        return [{"params": list(model.parameters()), "weight_decay": cfg.weight_decay}]
    decay, plain = [], []
    for p in model.parameters():
        (decay if p.ndim >= 2 else plain).append(p)
    return [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}]


def check_config(cfg: TrainConfig) -> None:
    if cfg.kd not in ("kl", "alpha"):
        raise EdgeKWSError(f"--kd must be 'kl' or 'alpha' (got '{cfg.kd}')")
    if cfg.input_norm not in INPUT_NORMS:
        raise EdgeKWSError(f"--input-norm must be one of {', '.join(INPUT_NORMS)} (got '{cfg.input_norm}')")
    if cfg.embed not in EMBEDS:
        raise EdgeKWSError(f"--embed must be one of {', '.join(EMBEDS)} (got '{cfg.embed}')")
    if cfg.sampler not in SAMPLERS or cfg.sampler == "fixed":
        raise EdgeKWSError(f"--sampler must be sandwich or students (got '{cfg.sampler}')")
    if cfg.sampling not in SAMPLING_POLICIES:
        raise EdgeKWSError(f"--sampling must be one of {', '.join(SAMPLING_POLICIES)} (got '{cfg.sampling}')")
    if cfg.spec_augment_scope not in ("all", "largest"):
        raise EdgeKWSError(f"--spec-augment-scope must be 'all' or 'largest' (got '{cfg.spec_augment_scope}')")
    if not 0 <= cfg.small_label_weight <= 1:
        raise EdgeKWSError(f"--small-label-weight must be in [0, 1] (got {cfg.small_label_weight})")
    if not 0 <= cfg.small_width_bias <= 8:
        raise EdgeKWSError(f"--small-width-bias must be in [0, 8] (got {cfg.small_width_bias})")
    if not 0 <= cfg.width_anchors <= cfg.num_random:
        raise EdgeKWSError(f"--width-anchors must be in [0, --num-random = {cfg.num_random}] (got {cfg.width_anchors}): "
                           "anchors are some of the random subnets (--width-anchors 0 for none)")
    if cfg.anchor_depth not in ANCHOR_DEPTHS:
        raise EdgeKWSError(f"--anchor-depth must be one of {', '.join(ANCHOR_DEPTHS)} (got '{cfg.anchor_depth}')")
    if not 0 < cfg.draw_fraction <= 1:
        raise EdgeKWSError(f"--draw-fraction must be in (0, 1] (got {cfg.draw_fraction})")
    if not 0 < cfg.narrowest_anchor_weight <= 100:
        raise EdgeKWSError(f"--narrowest-anchor-weight must be in (0, 100] (got {cfg.narrowest_anchor_weight})")
    if cfg.narrowest_anchor_weight != 1.0 and cfg.width_anchors == 0:
        raise EdgeKWSError("--narrowest-anchor-weight weights a width anchor: it needs --width-anchors 1 or more")
    if cfg.kd_ladder and (cfg.width_anchors == 0 or cfg.fixed_spec or cfg.sampler != "sandwich"):
        raise EdgeKWSError("--kd-ladder teaches the width anchors of a sandwich step: it needs --width-anchors 1 or more")
    if not 0 <= cfg.engine_balance <= 1:
        raise EdgeKWSError(f"--engine-balance must be in [0, 1] (got {cfg.engine_balance})")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.num_random < 0:
        raise EdgeKWSError("--epochs and --batch-size must be at least 1 and --num-random at least 0")


def sources_sha256(cfg: TrainConfig) -> dict:
    """sha256 of the checkpoints a run started from (`init`) and learnt from (`teacher`): their
    paths alone do not say which file it was once the file is replaced."""
    return {f"{k}_sha256": sha256_file(Path(getattr(cfg, k))) for k in ("init", "teacher") if getattr(cfg, k)}


def init_from(model: nn.Module, path: Path, family: str, space: SearchSpace, labels) -> None:
    """Start from a finished checkpoint's weights: it must be the same family, search space,
    architecture (e.g. its input normalisation) and labels, or the copied weights would mean
    something else (one line saying which differs)."""
    ck = load_checkpoint(path)
    for what, have, want in (("family", ck.family, family), ("search space", ck.space, space),
                             ("architecture", ck.family_def().arch, model.arch),
                             ("labels", tuple(ck.labels), tuple(labels))):
        if have != want:
            raise EdgeKWSError(f"--init {path}: its {what} differs from this run's; it cannot start it")
    try:
        model.load_state_dict(ck.state_dict)
    except RuntimeError as exc:
        raise EdgeKWSError(f"--init {path}: its weights do not fit this run's model ({str(exc).splitlines()[0]})") from None


def load_state(path: Path, cfg: TrainConfig, model: nn.Module, opt) -> tuple[int, list, float, float]:
    """Restore an interrupted run from its `.state` file → (epoch, history, seconds, CPU seconds).
    Anything wrong with the file — unreadable, another recipe, weights that do not fit — is one
    line that says how to go on (the file is left as it is)."""
    from edgekws.fileio import first_line

    hint = "delete it or start afresh without --resume"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged files; all mean "unreadable"
        raise EdgeKWSError(f"{path}: not a readable training state ({first_line(exc)}); {hint}") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise EdgeKWSError(f"{path}: not an edgekws training state; {hint}")
    try:  # knobs added since the state was written ran as before they existed
        recorded = TrainConfig.recorded(state["config"]).to_dict()
    except TypeError:  # a knob this edgekws does not know: not this recipe
        unknown = sorted(set(state["config"]) - set(cfg.to_dict()))
        raise EdgeKWSError(f"{path} was written with another training config (knobs this edgekws does not know: "
                           f"{', '.join(map(str, unknown))}); start afresh without --resume") from None
    wanted = cfg.to_dict()
    if recorded != wanted:
        # Name the knobs, so a run started under other defaults (a family's recipe changed) can be
        # resumed by passing them.
        diff = "; ".join(f"{k}: state {recorded[k]!r}, this run {wanted[k]!r}" for k in wanted if recorded[k] != wanted[k])
        raise EdgeKWSError(f"{path} was written with another training config ({diff}); pass the same options to "
                           "resume it, or start afresh without --resume")
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        epoch, history, elapsed = int(state["epoch"]), list(state["history"]), float(state["elapsed"])
        cpu = float(state.get("cpu_elapsed", 0.0))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise EdgeKWSError(f"{path}: damaged training state ({first_line(exc)}); {hint}") from None
    if not 0 <= epoch <= cfg.epochs:
        raise EdgeKWSError(f"{path}: epoch {epoch} is outside 0..{cfg.epochs}; {hint}")
    return epoch, history, elapsed, cpu


def machines_of(history: list[dict]) -> list[dict]:
    """Which CPUs trained which epochs, in runs of consecutive epochs, with their wall seconds.

    Wall time is only comparable on one kind of machine: the same run measured 31 s an epoch on
    an AVX-512 EPYC and 66 s on an AVX2-only one, so a figure without its machine says little."""
    runs: list[dict] = []
    previous = 0.0
    for row in history:
        host = row.get("host", "unrecorded")
        seconds = float(row.get("seconds", previous)) - previous
        previous = float(row.get("seconds", previous))
        if runs and runs[-1]["cpu"] == host and runs[-1]["epochs"][1] == row["epoch"] - 1:
            runs[-1]["epochs"][1] = row["epoch"]
            runs[-1]["seconds"] = round(runs[-1]["seconds"] + seconds, 1)
        else:
            runs.append({"cpu": host, "epochs": [row["epoch"], row["epoch"]], "seconds": round(seconds, 1)})
    return runs


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict = field(default_factory=dict)


def train(
    data_dir: Path,
    out: Path,
    cfg: TrainConfig,
    cache_dir: Path | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, int, dict], None] | None = None,
    threads: int | None = None,
    local: LocalRanks | None = None,
    channels_last: bool = True,
    val_every: int = 5,
) -> TrainResult:
    """Train a supernet (or, with `cfg.fixed_spec`, one subnet) and write its checkpoint.

    `threads`, `channels_last` and `val_every` are engine settings, not part of the config that
    `--resume` checks: NHWC convolutions (`channels_last`, 1.2× faster here) change only float
    rounding; validation every `val_every` epochs (and at the last) only thins the history."""
    d = init_distributed(local)
    keep_freed_memory()  # engine setting, like the threads: see edgekws.alloc
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    state_path = out.with_name(out.name + ".state")
    check_config(cfg)
    engine_of = read_engines(data_dir) if cfg.engine_balance else None  # before minutes of decoding, not after
    fam = family_for(cfg)
    feat_cfg = FeatureConfig()
    ds = SpeechCommands.open(data_dir, cfg.protocol, cfg.seed)
    train_split = load_split(ds, "train", feat_cfg, cache_dir)
    val_split = load_split(ds, "validation", feat_cfg, cache_dir) if "validation" in ds.available_splits() else None
    test_split = load_split(ds, "testing", feat_cfg, cache_dir) if "testing" in ds.available_splits() else None
    labels = ds.protocol.labels
    space = fam.space

    torch.manual_seed(cfg.seed)
    model = create_supernet(cfg.family, num_classes=len(labels), input_shape=feat_cfg.shape, arch=fam.arch)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.init:
        init_from(model, Path(cfg.init), cfg.family, space, labels)
    fixed = SubnetSpec.from_dict(cfg.fixed_spec) if cfg.fixed_spec else None
    if fixed is not None:
        space.validate(fixed)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)

    teacher = None
    if cfg.teacher:
        tck = load_checkpoint(Path(cfg.teacher))
        if tuple(tck.labels) != tuple(labels):
            raise EdgeKWSError(f"teacher '{cfg.teacher}' has labels {list(tck.labels)}, the data has {list(labels)}")
        teacher = tck.supernet()
        teacher.set_active(tck.space.largest())
        teacher.eval()

    per_rank = cfg.batch_size // d.world
    if per_rank < 1:
        raise EdgeKWSError(f"--batch-size {cfg.batch_size} is smaller than the {d.world} ranks")
    n = len(train_split.targets)
    steps_per_epoch = max(1, n // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    start_epoch, history, elapsed, cpu_elapsed = 0, [], 0.0, 0.0
    if resume and state_path.exists():
        start_epoch, history, elapsed, cpu_elapsed = load_state(state_path, cfg, model, opt)
        log(f"resumed from {state_path} at epoch {start_epoch}")

    host = host_facts()["cpu"]  # per epoch row: a resumed run may continue on another machine
    if d.main:
        log(f"training on {host}")
    params_of: dict[SubnetSpec, int] = {}
    largest_params = fam.params(space.largest(), len(labels), feat_cfg.shape)

    def dropout_for(spec: SubnetSpec) -> float:
        if not cfg.adaptive_dropout:
            return cfg.dropout_max
        if spec not in params_of:  # from the cost table: no model built, no RNG drawn
            params_of[spec] = fam.params(spec, len(labels), feat_cfg.shape)
        return cfg.dropout_max * params_of[spec] / largest_params

    calib = np.array(train_split.features[:CALIBRATION_EXAMPLES], dtype=np.float32)  # pinned order
    wave_aug = WaveAugment(ds.noise_span("train", feat_cfg.sample_rate), AugmentConfig()) if cfg.wave_augment else None
    make_batch = BatchMaker(np.asarray(train_split.waves), train_split.targets, LogMel(feat_cfg, dtype=torch.float32),
                            wave_aug, cfg, d.rank)

    sampler = make_sampler(cfg, space)
    engines = example_engines(engine_of, train_split.keys, data_dir) if engine_of is not None else None
    if engines is not None and d.main:
        shares = epoch_shares(engines, cfg.engine_balance)
        log("engine balance: " + ", ".join(f"{g} {k} of {int((engines == g).sum())}" for g, k in sorted(shares.items())))
    small_twin = fixed is not None and fixed != space.largest()
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout masks: reproducible per epoch
        order = epoch_order(n, engines, cfg.engine_balance, np.random.default_rng([cfg.seed, epoch]))
        spec_rng = np.random.default_rng([cfg.seed, epoch, 1])
        run_loss, run_correct, run_seen = 0.0, 0, 0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size][d.rank * per_rank : (d.rank + 1) * per_rank]
            batch = make_batch(step, idx, epoch)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, warmup, cfg.lr)
            opt.zero_grad(set_to_none=True)
            loss_sum, correct = train_step(model, batch, sampler.draw(spec_rng), cfg, dropout_for, teacher,
                                           small_first=small_twin, first_from_labels=sampler.first_from_labels,
                                           rows=sampler.rows, weights=sampler.weight)
            run_loss += loss_sum
            run_correct += correct
            run_seen += len(batch["y"])
            allreduce_grads(model, d)
            opt.step()
            step += 1
            if on_step is not None and d.main:
                on_step(b + 1, steps_per_epoch,
                        {"epoch": epoch + 1, "loss": run_loss / max(1, run_seen), "acc": run_correct / max(1, run_seen)})
        average_buffers(model, d)
        check_in_step(model, d)
        elapsed += time.perf_counter() - t0
        cpu_elapsed += time.process_time() - c0
        row = {"epoch": epoch + 1, "train_loss": round(run_loss / max(1, run_seen), 4),
               "train_acc": round(run_correct / max(1, run_seen), 4), "seconds": round(elapsed, 1), "host": host}
        if val_split is not None and ((epoch + 1) % max(1, val_every) == 0 or epoch + 1 == cfg.epochs):
            for name, spec in (("largest", fixed or space.largest()), ("smallest", fixed or space.smallest())):
                row[f"val_{name}"] = round(evaluate_spec(model, spec, val_split, calib)[0], 4)
        history.append(row)
        if d.main:
            log(" ".join(f"{k}={v}" for k, v in row.items() if k != "host"))  # the host is said once, at the start
            save_torch({"config": cfg.to_dict(), "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "epoch": epoch + 1, "history": history, "elapsed": elapsed, "cpu_elapsed": cpu_elapsed},
                       state_path, "training state")

    metrics: dict = {"history": history, "train_seconds": round(elapsed, 1),
                     "train_cpu_seconds": round(sum_over_ranks(cpu_elapsed, d), 1), "world_size": d.world,
                     "train_examples": n, "rank_param_digests": check_in_step(model, d),
                     "machines": machines_of(history)}
    metrics.update(finalize(model, space, fixed, calib, test_split))
    ck = Checkpoint(cfg.family, space, feat_cfg, tuple(labels), model.state_dict(),
                    train_config={**cfg.to_dict(), "data_dir": str(data_dir), "world_size": d.world,
                                  **sources_sha256(cfg)}, metrics=metrics,
                    calibration=torch.from_numpy(calib).to(torch.float16),
                    sampling="fixed" if fixed is not None else cfg.sampling, arch=arch_dict(fam.arch))
    if d.main:
        save_checkpoint(out, ck)
        state_path.unlink(missing_ok=True)
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(out, metrics)
