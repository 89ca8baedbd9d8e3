"""`edgekws release`: one verified model per device tier, in one run.

For each tier (a target TOML): fit its latency model, search the trained space under its budgets
(search.py), export the pick through the accuracy gates, verify it where the tier runs — its
board over SSH (the target's `device`), or emulated aarch64 with the tier's CPU (answers compared
with the x86 golden outputs, latency re-estimated from the pick's own instruction count), or this
host — and write:

    release/<tier>/<subnet>/      the export folder (model files, manifest, labels, golden vectors)
    release/<tier>/release.json   the search, the pick, the verification, the figures' sources
    release/<tier>/pareto.png     accuracy vs latency: every trial, the front, the budget, the pick
    release/index.json            every tier, machine-readable
    release/REPORT.md             a table per tier, for people

Where each latency figure comes from is part of the result: `measured` (board rows, or this
host for a tier that is this host) or `estimated` (instruction counts under qemu × a per-CPU
factor). Model RAM is measured on this host (the same runtime and precision) for every tier.

Resumable: measurement rows are appended as they are made (`release/_rows.jsonl`), the accuracy
oracle caches every subnet it scores, and a tier whose `release.json` exists is not redone.
A tier that no subnet fits is reported and makes the run fail — never a silent pick.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgekws.costmodel import CostModel, fit
from edgekws.errors import EdgeKWSError
from edgekws.search import Evaluation, SearchResult, best_uniform, search
from edgekws.spec import SubnetSpec
from edgekws.targets import DeviceTarget

FORMAT = "edgekws.release/1"


def latency_source(target: DeviceTarget, board_rows: list[dict]) -> str:
    """How a tier's latency is known: "board" (bench rows from its device), "host" (the tier is
    this machine) or "estimated" (instruction counts under qemu)."""
    if target.device and any(r.get("device") == target.device for r in board_rows):
        return "board"
    if target.arch == platform.machine():
        return "host"
    if target.arch == "aarch64":
        if target.clock_ghz is None:
            raise EdgeKWSError(f"target '{target.key}' has no board rows and no clock_ghz: its latency can be "
                               f"neither measured nor estimated (add clock_ghz, or bench its device)")
        return "estimated"
    raise EdgeKWSError(f"target '{target.key}' ({target.arch}) has no board rows and cannot be emulated here")


@dataclass
class TierPredictor:
    """Latency, RAM and file size of any spec for one tier, from fitted cost models."""

    target: DeviceTarget
    source: str  # board | host | estimated
    latency: dict[tuple[str, str], CostModel]  # (runtime, precision) -> ms median, or instructions when estimated
    latency_p95: dict[tuple[str, str], CostModel]
    ram: dict[tuple[str, str], CostModel]
    size: dict[tuple[str, str], tuple[float, float]]  # file bytes = a + b × accounted bytes
    num_classes: int = 12
    precisions: tuple[str, ...] = ("float", "int8")  # what the models cover: what the search may pick
    notes: list[str] = field(default_factory=list)
    # The checkpoint's own family definition (`Checkpoint.family_def()`): its architecture
    # arguments (e.g. kwt's convolutional stem) change the cost table the features come from, so
    # features from the registered default would misprice every spec of such a checkpoint.
    family: object = None

    def model_kb(self, spec: SubnetSpec, runtime: str, precision: str) -> float:
        from edgekws.accounting import account

        acc = account(spec, self.num_classes, family=self.family)
        a, b = self.size[(runtime, precision)]
        return (a + b * (acc.size_int8_bytes if precision == "int8" else acc.size_float_bytes)) / 1024

    def predict(self, spec: SubnetSpec, runtime: str, precision: str) -> dict:
        from edgekws.estimate import CALIBRATION, estimate_ms, qemu_cpu

        k = (runtime, precision)
        if self.source == "estimated":
            ms = estimate_ms(self.latency[k].predict(spec, self.num_classes, self.family), self.target.cpu,
                             self.target.clock_ghz)
            p95 = ms  # an estimate has no jitter: the budget is checked against it
            how = f"estimated ({CALIBRATION[qemu_cpu(self.target.cpu)].source}, {self.target.clock_ghz} GHz)"
        else:
            ms = self.latency[k].predict(spec, self.num_classes, self.family)
            p95 = max(ms, self.latency_p95[k].predict(spec, self.num_classes, self.family))
            how = f"measured ({'board ' + str(self.target.device) if self.source == 'board' else 'this host'}), cost model"
        return {"latency_ms": ms, "latency_p95_ms": p95, "ram_kb": self.ram[k].predict(spec, self.num_classes, self.family),
                "model_kb": self.model_kb(spec, runtime, precision), "latency_source": how}

    def describe(self) -> dict:
        return {"source": self.source,
                "latency": {f"{r}/{p}": m.to_dict() for (r, p), m in self.latency.items()},
                "ram": {f"{r}/{p}": m.to_dict() for (r, p), m in self.ram.items()},
                "size": {f"{r}/{p}": list(v) for (r, p), v in self.size.items()}}


def build_predictor(target: DeviceTarget, source: str, rows: dict[str, dict], board_rows: list[dict],
                    runtimes: tuple[str, ...], precisions: tuple[str, ...], ck_sha: str,
                    log: Callable[[str], None] = print, family=None) -> TierPredictor:
    """Fit the tier's models on the rows of the checkpoint `ck_sha`, with features from `family`
    (the checkpoint's own definition; None: the registered one)."""
    from edgekws.accounting import account
    from edgekws.costmodel import fit_bench_rows
    from edgekws.estimate import qemu_cpu

    mine = [r for r in rows.values() if r["checkpoint_sha256"] == ck_sha]
    board = {}
    if source == "board":  # one device, its newest runtime version, this family's specs (notes say what was skipped)
        for rt in runtimes:
            name = mine[0]["spec"]["family"] if mine else None
            board.update({f"{rt}/{k}": m for k, m in fit_bench_rows(board_rows, rt, target.threads, target.device,
                                                                    log, name, definition=family).items()})
    latency, p95, ram, size = {}, {}, {}, {}

    def fit_one(rt: str, prec: str) -> None:
        host = [r for r in mine if r["kind"] == "host" and r["runtime"] == rt and r["precision"] == prec]
        if not host:
            raise EdgeKWSError(f"no host rows for {rt} {prec}: nothing to fit model RAM and size on"
                               + (" (every measured subnet's int8 failed its accuracy gates: release with "
                                  "--precisions float)" if prec == "int8" else ""))
        group = {"device": "local", "runtime": rt, "precision": prec, "threads": host[0]["threads"]}
        ram[(rt, prec)] = fit([(SubnetSpec.from_dict(r["spec"]), r["ram_kb"] or float("nan")) for r in host], "ram_kb", group,
                              family=family)
        acct = np.array([[1.0, getattr(account(SubnetSpec.from_dict(r["spec"]), family=family),
                                       "size_int8_bytes" if prec == "int8" else "size_float_bytes")] for r in host])
        coef, *_ = np.linalg.lstsq(acct, np.array([r["model_bytes"] for r in host], dtype=float), rcond=None)
        size[(rt, prec)] = (float(coef[0]), float(coef[1]))
        if source == "host":
            samples = [(SubnetSpec.from_dict(r["spec"]), r) for r in host if r["threads"] == target.threads]
            latency[(rt, prec)] = fit([(s, r["latency_ms"]["median"]) for s, r in samples], "latency_ms", group,
                                      family=family)
            p95[(rt, prec)] = fit([(s, r["latency_ms"]["p95"]) for s, r in samples], "latency_p95_ms", group,
                                  family=family)
        elif source == "estimated":
            cpu = qemu_cpu(target.cpu)
            counted = [r for r in mine if r["kind"] == "insn" and r["runtime"] == rt and r["precision"] == prec
                       and r["cpu"] == cpu]
            g = {"cpu": cpu, "runtime": rt, "precision": prec, "threads": 1}
            latency[(rt, prec)] = fit([(SubnetSpec.from_dict(r["spec"]), r["instructions"]) for r in counted],
                                      "instructions", g, family=family)
        else:
            if f"{rt}/{prec}/latency_ms" not in board:
                raise EdgeKWSError(f"the board rows of {target.device} have no {rt} {prec} rows at "
                                   f"{target.threads} thread(s)")
            latency[(rt, prec)] = board[f"{rt}/{prec}/latency_ms"]
            p95[(rt, prec)] = board[f"{rt}/{prec}/latency_p95_ms"]

    usable, notes = list(precisions), []
    for prec in precisions:
        try:
            for rt in runtimes:
                fit_one(rt, prec)
        except EdgeKWSError as exc:
            # int8 refused by its gates on too many measured subnets leaves too few rows to fit:
            # the tier is released in float rather than not at all (float never is refused).
            # Any other reason to lack int8 rows (a board suite without int8) still says so.
            measured = {p_: {r["name"] for r in mine if r["kind"] == "host" and r["precision"] == p_} for p_ in ("float", "int8")}
            if prec != "int8" or len(usable) == 1 or not (measured["float"] - measured["int8"]):
                raise
            usable.remove(prec)
            for d in (latency, p95, ram, size):
                for k in [k for k in d if k[1] == prec]:
                    del d[k]
            notes.append(f"int8 left out of {target.key}'s search: {exc} (subnets whose int8 failed its accuracy "
                         f"gates are not measured; --samples N measures more)")
            log(f"{target.key}: {notes[-1]}")
    return TierPredictor(target, source, latency, p95, ram, size, precisions=tuple(usable), notes=notes, family=family)


# --------------------------------------------------------------------------------------------
# Verification of the exported pick

def verify(folder: Path, ev: Evaluation, target: DeviceTarget, source: str, work: Path,
           log: Callable[[str], None]) -> dict:
    """Run the exported pick where the tier runs; returns the verified figures and checks."""
    from edgekws.artefacts import PRECISION_FILE
    from edgekws.bench import ResultsFile, Suite, run_suite
    from edgekws.devices import make_device
    from edgekws.estimate import count_instructions, estimate_ms, qemu_cpu
    from edgekws.manifest import load_manifest
    from edgekws.profile import run_runner

    model = folder / PRECISION_FILE[(ev.runtime, ev.precision)]
    out = {"model_kb": round(model.stat().st_size / 1024, 1)}
    local = run_runner([model], ev.runtime, target.threads, 200, 20, op_profile=False)["results"][0]
    out["ram_kb"] = (local.get("rss_kb") or {}).get("model_total")
    out["ram_source"] = "measured on this host (same runtime and precision)"
    if source == "host":
        out.update(latency_ms=local["latency_ms"]["median"], latency_p95_ms=local["latency_ms"]["p95"],
                   latency_source="measured (this host)")
        return out
    device = target.device if source == "board" else f"qemu-aarch64:{qemu_cpu(target.cpu)}"
    dev = make_device(device)
    suite = Suite(name=f"release-{target.key}", models=[], runtimes=[ev.runtime], precisions=[ev.precision],
                  threads=[target.threads if source == "board" else 1], runs=200 if source == "board" else 5,
                  warmup=20 if source == "board" else 1, check_outputs=True)
    manifest = load_manifest(folder)
    results = ResultsFile(work / f"verify-{target.key}.jsonl", log=log)  # the tier's own folder
    run_suite(suite, [(manifest["name"], folder, manifest)], [dev], results, log=lambda m: log(f"  {m}"))
    from edgekws.bench import read_jsonl

    rows, _ = read_jsonl(results.path)
    row = rows[-1] if rows else {}
    out["device"] = device
    out["device_ok"] = bool(row.get("ok"))
    out["device_error"] = row.get("error")
    out["golden"] = row.get("golden")
    if source == "board":
        if row.get("ok"):
            out.update(latency_ms=row["latency_ms"]["median"], latency_p95_ms=row["latency_ms"]["p95"],
                       latency_source=f"measured ({device})")
        return out
    c = count_instructions(model, ev.runtime, target.cpu)
    ms = estimate_ms(c["instructions"], target.cpu, target.clock_ghz)
    out.update(instructions=c["instructions"], latency_ms=round(ms, 4), latency_p95_ms=round(ms, 4),
               latency_source=f"estimated from the pick's own instruction count ({qemu_cpu(target.cpu)}, "
                              f"{target.clock_ghz} GHz)")
    return out


def budget_problems(v: dict, ev: Evaluation, target: DeviceTarget) -> list[str]:
    b = target.budgets
    probs = []
    for what, value, limit in (("params", ev.params, b.max_params), ("model KB", v.get("model_kb"), b.max_model_kb),
                               ("RAM KB", v.get("ram_kb"), b.max_ram_kb),
                               ("p95 latency ms", v.get("latency_p95_ms"), b.max_p95_latency_ms)):
        if value is None:
            probs.append(f"{what} could not be verified")
        elif value > limit:
            probs.append(f"{what} {value:g} > {limit:g}")
    g = v.get("golden")
    if "device_ok" in v and not v["device_ok"]:
        probs.append(f"the model did not run on {v.get('device')}: {v.get('device_error')}")
    elif g and g.get("top1_agree") != g.get("n"):
        probs.append(f"top-1 differs from the x86 golden outputs on {g['n'] - g['top1_agree']}/{g['n']} clips")
    return probs


# --------------------------------------------------------------------------------------------
# Plots and report

def plot_pareto(result: SearchResult, target: DeviceTarget, chosen: Evaluation | None, dest: Path,
                uniform: list[Evaluation]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgekws.fileio import atomic_path

    evs = [e for e in {e.key: e for e in result.evaluations}.values() if "untrained" not in e.violations]
    fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
    bad = [e for e in evs if not e.feasible]
    good = [e for e in evs if e.feasible]
    if bad:
        ax.scatter([e.latency_ms for e in bad], [100 * e.accuracy for e in bad], s=12, c="0.75", label="over a budget")
    for prec, marker in (("float", "o"), ("int8", "s")):
        pts = [e for e in good if e.precision == prec]
        if pts:
            ax.scatter([e.latency_ms for e in pts], [100 * e.accuracy for e in pts], s=16, marker=marker, alpha=0.6,
                       label=f"within budgets, {prec}")
    # the line: the accuracy-latency staircase of feasible points (the 3-objective front, size
    # included, zig-zags when drawn in two dimensions); its points are labelled
    stair, best = [], -1.0
    for e in sorted(good, key=lambda e: (e.latency_ms, -e.accuracy)):
        if e.accuracy > best:
            stair.append(e)
            best = e.accuracy
    if stair:
        ax.step([e.latency_ms for e in stair], [100 * e.accuracy for e in stair], where="post", c="tab:green", lw=1.2,
                label="best accuracy at each latency (within budgets)")
        for e in stair[:: max(1, len(stair) // 8)]:
            ax.annotate(f"{e.spec.name.split('-', 1)[1]} {e.precision}", (e.latency_ms, 100 * e.accuracy), fontsize=6,
                        xytext=(3, -9), textcoords="offset points")
    for ok, colour, what in ((True, "k", "uniform widths, within budgets"), (False, "0.6", "uniform widths, over a budget")):
        pts = [e for e in uniform if e.feasible == ok]
        if pts:
            ax.scatter([e.latency_ms for e in pts], [100 * e.accuracy for e in pts], marker="x", c=colour, s=34, label=what)
    ax.axvline(target.budgets.max_p95_latency_ms, c="tab:red", ls="--", lw=1,
               label=f"p95 budget {target.budgets.max_p95_latency_ms:g} ms")
    if chosen:
        ax.scatter([chosen.latency_ms], [100 * chosen.accuracy], marker="*", s=260, c="gold", edgecolors="k", zorder=5,
                   label=f"pick: {chosen.spec.name} {chosen.precision}")
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (" + ("estimated" if evs and evs[0].latency_source.startswith("estimated") else "measured")
                  + ", log scale)")
    ax.set_ylabel("validation accuracy, %")
    ax.set_title(f"{target.name} ({target.key}): {len(evs)} subnets × precision evaluated")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def render_report(index: dict) -> str:
    lines = ["# Release report", "",
             f"Checkpoint `{index['checkpoint']}` (sha256 {index['checkpoint_sha256'][:12]}); accuracy oracle: "
             f"{index['oracle']}; {index['trials']} search trials per tier (optuna NSGA-II, seed {index['seed']}).", ""]
    lines += ["| tier | pick | precision | runtime | val. accuracy | test accuracy | latency p95 ms | source | model KB | RAM KB | status |",
              "|---|---|---|---|---:|---:|---:|---|---:|---:|---|"]
    for key, t in index["tiers"].items():
        p, v = t.get("pick"), t.get("verified") or {}
        if not p:
            lines.append(f"| {key} | — | | | | | | | | | **{t['status']}** |")
            continue
        test = t.get("test_accuracy")
        lines.append(f"| {key} | `{p['name']}` | {p['precision']} | {p['runtime']} | {100 * p['accuracy']:.2f} % | "
                     f"{'' if test is None else f'{100 * test:.2f} %'} | {v.get('latency_p95_ms', '')} | "
                     f"{'estimated' if str(v.get('latency_source', '')).startswith('estimated') else 'measured'} | "
                     f"{v.get('model_kb', '')} | {v.get('ram_kb', '')} | {t['status']} |")
    for key, t in index["tiers"].items():
        tg = t["target"]
        lines += ["", f"## {tg['name']} (`{key}`)", "",
                  f"CPU {tg['cpu']}, {tg['threads']} thread(s), {tg['runtime']}; budgets: params ≤ {tg['budgets']['max_params']:,}, "
                  f"model ≤ {tg['budgets']['max_model_kb']:g} KB, RAM ≤ {tg['budgets']['max_ram_kb']:g} KB, "
                  f"p95 ≤ {tg['budgets']['max_p95_latency_ms']:g} ms.", ""]
        lm = t.get("latency_model") or {}
        if lm:
            errs = "; ".join(f"{k}: {m['holdout'].get('mape_pct')} % MAPE on held-out subnets ({m['specs']} subnets)"
                             for k, m in lm.items())
            lines.append(f"Latency model ({t['latency_source']}): {errs}.")
        if t.get("pick"):
            p, v, u = t["pick"], t["verified"], t.get("uniform_best")
            lines += ["", "| | predicted | verified |", "|---|---:|---:|",
                      f"| latency median ms | {p['latency_ms']} | {v.get('latency_ms')} |",
                      f"| latency p95 ms | {p['latency_p95_ms']} | {v.get('latency_p95_ms')} |",
                      f"| model KB | {p['model_kb']} | {v.get('model_kb')} |", f"| RAM KB | {p['ram_kb']} | {v.get('ram_kb')} |",
                      "", f"Verified latency: {v.get('latency_source')}. RAM: {v.get('ram_source')}."]
            g = v.get("golden")
            if g:
                lines.append(f"Answers on {v.get('device')}: top-1 identical to the x86 golden outputs on "
                             f"{g['top1_agree']}/{g['n']} clips.")
            if u:
                lines.append(f"Best uniform-width subnet within the same budgets: `{u['name']}` {u['precision']}, "
                             f"{100 * u['accuracy']:.2f} % at {u['latency_ms']} ms (pick: {100 * p['accuracy']:.2f} % at "
                             f"{p['latency_ms']} ms).")
            else:
                lines.append("No uniform-width subnet fits these budgets.")
        for note in t.get("notes", []):
            lines.append(f"- {note}")
        lines += ["", f"![Pareto front]({key}/pareto.png)"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The run

@dataclass
class Context:
    """What every tier of a run shares: the oracle, the measurement rows, board rows, and how
    each tier's latency is known."""

    checkpoint: Path
    oracle: object
    rows: dict[str, dict]
    board_rows: list[dict]
    sources: dict[str, str]
    tier_runtimes: dict[str, tuple[str, ...]]
    precisions: tuple[str, ...]
    work: Path
    log: Callable[[str], None] = print

    def predictor(self, t: DeviceTarget) -> TierPredictor:
        return build_predictor(t, self.sources[t.key], self.rows, self.board_rows, self.tier_runtimes[t.key],
                               self.precisions, self.oracle.checkpoint_sha256, self.log, self.oracle.ck.family_def())


def prepare(targets: list[DeviceTarget], work: Path, checkpoint: Path | None = None, board_results=(), samples: int = 12,
            seed: int = 0, runtimes: tuple[str, ...] | None = None, precisions: tuple[str, ...] = ("float", "int8"),
            pack: Path | None = None, log: Callable[[str], None] = print) -> Context:
    """Load the oracle and measure what the tiers' latency models need (resumable, under `work`)."""
    from edgekws.assets import DEFAULT_CHECKPOINT
    from edgekws.bench import read_jsonl
    from edgekws.estimate import qemu_cpu
    from edgekws.fileio import ensure_writable_dir
    from edgekws.measure import RowLog, collect, sample_specs
    from edgekws.oracle import AccuracyOracle

    if not targets:
        raise EdgeKWSError("no targets to release for")
    checkpoint = Path(checkpoint or DEFAULT_CHECKPOINT)
    work = ensure_writable_dir(Path(work))
    oracle = AccuracyOracle(checkpoint, pack)
    board_rows = []
    for path in board_results:
        rows, bad = read_jsonl(Path(path))
        for b in bad[:3]:
            log(f"note: {path}: {b}")
        board_rows += rows
    sources = {t.key: latency_source(t, board_rows) for t in targets}
    tier_runtimes = {t.key: tuple(runtimes or (t.runtime,)) for t in targets}
    all_rt = sorted({rt for v in tier_runtimes.values() for rt in v})
    threads = sorted({t.threads for t in targets if sources[t.key] == "host"} | {1})
    cpus = sorted({(qemu_cpu(t.cpu), rt) for t in targets if sources[t.key] == "estimated" for rt in tier_runtimes[t.key]})
    specs = sample_specs(oracle.ck.space, samples, seed)
    log(f"measuring {len(specs)} subnets: this host ({', '.join(all_rt)}), "
        + (f"instruction counts on {', '.join(sorted({c for c, _ in cpus}))}" if cpus else "no emulated CPUs"))
    rows = collect(specs, checkpoint, work / "_exports", RowLog(work / "_rows.jsonl"),
                   [(rt, th) for rt in all_rt for th in threads], cpus, precisions, log=log)
    return Context(checkpoint, oracle, rows, board_rows, sources, tier_runtimes, tuple(precisions), work, log)


def release(targets: list[DeviceTarget], out: Path, checkpoint: Path | None = None, board_results=(),
            trials: int = 200, seed: int = 0, samples: int = 12, runtimes: tuple[str, ...] | None = None,
            precisions: tuple[str, ...] = ("float", "int8"), pack: Path | None = None, force: bool = False,
            log: Callable[[str], None] = print) -> dict:
    """Release every tier; returns the index. A tier that nothing fits does not raise: its
    status says so, it is listed in `failed`, and the caller exits non-zero."""
    from edgekws.artefacts import PRECISION_FILE
    from edgekws.fileio import ensure_writable_dir, replace_dir, write_bytes_atomic
    from edgekws.manifest import load_manifest
    from edgekws.measure import export_cached

    ctx = prepare(targets, out, checkpoint, board_results, samples, seed, runtimes, precisions, pack, log)
    out, checkpoint, oracle = ctx.work, ctx.checkpoint, ctx.oracle
    ck_sha, space, sources, tier_runtimes = oracle.checkpoint_sha256, oracle.ck.space, ctx.sources, ctx.tier_runtimes
    index = {"format": FORMAT, "checkpoint": str(checkpoint), "checkpoint_sha256": ck_sha, "oracle": oracle.source,
             "trials": trials, "seed": seed, "tiers": {}}
    failed = []
    for t in targets:
        tier_dir = ensure_writable_dir(out / t.key)
        done = tier_dir / "release.json"
        if done.exists() and not force:
            try:
                prev = json.loads(done.read_text())
            except (OSError, json.JSONDecodeError):
                prev = None
            if isinstance(prev, dict) and prev.get("checkpoint_sha256") == ck_sha:
                log(f"{t.key}: done before ({prev['status']}); kept (--force redoes it)")
                index["tiers"][t.key] = prev
                if prev["status"] != "released":
                    failed.append(t.key)
                continue
        t0 = time.perf_counter()
        pred = ctx.predictor(t)
        log(f"{t.key}: searching ({sources[t.key]} latency, runtimes {', '.join(tier_runtimes[t.key])})")
        result = search(space, t, oracle.accuracy, pred, tier_runtimes[t.key], pred.precisions, trials, seed,
                        family=pred.family, trained=oracle.ck.trained, log=log)
        oracle.flush()
        ubest, uall = best_uniform(space, t, oracle.accuracy, pred, tier_runtimes[t.key], pred.precisions,
                                   family=pred.family)
        tier = {"format": FORMAT, "checkpoint_sha256": ck_sha, "target": asdict(t), "latency_source": sources[t.key],
                "latency_model": {f"{r}/{p}": m.to_dict() for (r, p), m in pred.latency.items()},
                "ram_model": {f"{r}/{p}": m.to_dict() for (r, p), m in pred.ram.items()},
                "search": result.to_dict(), "uniform_best": ubest.to_dict() if ubest else None, "notes": list(pred.notes)}
        candidates = sorted((e for e in result.front), key=lambda e: (-e.accuracy, e.latency_ms))
        chosen, verified, tried = None, None, 0
        for ev in candidates:
            if tried == 3:  # three picks that failed on the device: the models are off, say so
                break
            folder = export_cached(ev.spec, checkpoint, out / "_exports", ck_sha)
            file = PRECISION_FILE[(ev.runtime, ev.precision)]
            if file in load_manifest(folder).get("refused", {}):  # not a device failure: not counted
                tier["notes"].append(f"{ev.spec.name} {ev.precision} skipped: its {file} failed the accuracy gates")
                log(f"{t.key}: {tier['notes'][-1]}")
                continue
            tried += 1
            v = verify(folder, ev, t, sources[t.key], tier_dir, log)
            problems = budget_problems(v, ev, t)
            if not problems:
                chosen, verified, src = ev, v, folder
                break
            tier["notes"].append(f"{ev.spec.name} {ev.precision} predicted inside the budgets but failed verification: "
                                 f"{'; '.join(problems)}")
            log(f"{t.key}: {tier['notes'][-1]}")
        if chosen is None:
            tier["status"] = "no subnet fits" if not candidates else "no candidate passed verification"
            tier["pick"] = None
            failed.append(t.key)
        else:
            tmp = Path(tempfile.mkdtemp(prefix=".release-", dir=tier_dir))
            shutil.copytree(src, tmp / src.name)
            replace_dir(tmp / src.name, tier_dir / src.name)
            shutil.rmtree(tmp, ignore_errors=True)
            tier.update(status="released", pick=chosen.to_dict(), verified=verified, folder=f"{t.key}/{src.name}",
                        test_accuracy=_test_accuracy(src, chosen.runtime, chosen.precision))
        plot_pareto(result, t, chosen, tier_dir / "pareto.png", uall)
        tier["seconds"] = round(time.perf_counter() - t0, 1)
        write_bytes_atomic(done, (json.dumps(tier, indent=1) + "\n").encode())
        index["tiers"][t.key] = tier
        log(f"{t.key}: {tier['status']}" + (f": {chosen.spec.name} {chosen.precision} ({100 * chosen.accuracy:.2f} % val.)"
                                            if chosen else ""))
    index["failed"] = failed
    write_bytes_atomic(out / "index.json", (json.dumps(index, indent=1) + "\n").encode())
    write_bytes_atomic(out / "REPORT.md", render_report(index).encode())
    return index


def _test_accuracy(folder: Path, runtime: str, precision: str) -> float | None:
    """The exported artefact's accuracy on the pinned *test* pack, from its manifest (the pick was
    chosen on the validation pack, so this figure is not biased by the choice)."""
    from edgekws.artefacts import RUNTIME_FORMAT
    from edgekws.manifest import load_manifest

    acc = (load_manifest(folder).get("validation") or {}).get("accuracy") or {}
    value = acc.get(f"{RUNTIME_FORMAT[runtime]} {precision}")
    return float(value) if isinstance(value, (int, float)) else None
