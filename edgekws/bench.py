"""`edgekws bench`: benchmark suites on devices — this machine, boards over SSH, or emulated
aarch64 (`qemu-aarch64[:CPU]`, see emulation.py) — with results that survive a flaky board.

A suite (`benchmarks/suites/*.toml`) lists models (widths or spec files of the shipped supernet,
or existing export folders), runtimes, precisions, thread counts and run counts. The models are
exported once, locally; each device then gets the on-board runner and the model files (one tar
stream over SSH with the system OpenSSH client, each file under its subnet's name) and runs every
combination. With `check_outputs` (default on) the device also runs the export's golden clips and
the row says whether its answers match the ones export recorded on x86.

Robustness:
- every finished (device, model, runtime, precision, threads) row is appended to the JSONL file at
  once (flushed and fsynced), so an interrupted suite loses nothing;
- `--resume` skips rows already recorded as successful (failed rows are tried again);
- a dropped connection or a crashed board is retried with exponential backoff; after the last try
  a failure row is recorded and the suite goes on;
- several devices run in parallel, one thread each, writing through one lock.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgekws.artefacts import GOLDEN_INPUT, PRECISION_FILE, RUNTIME_FILES, RUNTIME_FORMAT, expected_outputs
from edgekws.devices import Device, DeviceError, missing_runtimes
from edgekws.errors import EdgeKWSError
from edgekws.fileio import load_toml, shown_key



@dataclass
class Suite:
    name: str
    models: list[dict]
    runtimes: list[str]
    precisions: list[str]
    threads: list[int]
    runs: int = 100
    warmup: int = 10
    check_outputs: bool = True  # run the export's golden inputs and compare with its x86 outputs
    # what width, spec and sample models are exported from: a shipped family's supernet, or a
    # checkpoint file (relative to the suite); neither: the shipped dscnn
    supernet: str | None = None
    checkpoint: str | None = None


SUITE_KEYS = {"name", "models", "runtimes", "precisions", "threads", "runs", "warmup", "check_outputs", "supernet",
              "checkpoint"}
MODEL_KEYS = {"width", "depth", "spec", "export", "sample", "seed"}
RECORD = "edgekws.bench/2"  # rows carry spec, export and checkpoint hashes (rows without `record` are /1),
# and the export's `arch` where its manifest has one (an optional key: older /2 rows lack it)


def load_suite(path: Path) -> Suite:
    """A suite TOML (format in the README, "Suite files"): every key checked for type and range,
    unknown keys refused (a typo such as `runtime =` for `runtimes =` would otherwise be
    ignored silently)."""
    from edgekws.fileio import typed

    path = Path(path)
    where = str(path)
    doc = load_toml(path, "suite")
    unknown = sorted(set(doc) - SUITE_KEYS)
    if unknown:
        raise EdgeKWSError(f"{path}: unknown key(s) {', '.join(map(shown_key, unknown))} (valid: {', '.join(sorted(SUITE_KEYS))})")
    models = doc.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise EdgeKWSError(f"{path}: needs one or more [[models]] tables (width = 0.5, spec = 'x.json' or export = 'dir')")
    for i, m in enumerate(models):
        pre = f"models[{i}]."
        if set(m) - MODEL_KEYS:
            raise EdgeKWSError(f"{path}: models[{i}] has unknown key(s) {', '.join(map(shown_key, sorted(set(m) - MODEL_KEYS)))} "
                               f"(valid: {', '.join(sorted(MODEL_KEYS))})")
        if len({"width", "spec", "export", "sample"} & set(m)) != 1:
            raise EdgeKWSError(f"{path}: models[{i}] needs exactly one of width, spec, export, sample")
        if "width" in m:
            typed(m, "width", float, where, hi=1, positive=True, prefix=pre)
        typed(m, "sample", int, where, default=None, lo=1, hi=4096, prefix=pre)
        typed(m, "seed", int, where, default=0, lo=0, hi=2**31 - 1, prefix=pre)
        if "seed" in m and "sample" not in m:
            raise EdgeKWSError(f"{path}: models[{i}].seed only goes with sample")
        typed(m, "depth", int, where, default=None, lo=1, hi=64, prefix=pre)
        typed(m, "spec", str, where, default=None, prefix=pre)
        typed(m, "export", str, where, default=None, prefix=pre)

    def lst(key, typ, default, valid=None, lo=None, hi=None):
        v = doc.get(key, default)
        if not isinstance(v, list) or not v or not all(isinstance(x, typ) and not isinstance(x, bool) for x in v):
            raise EdgeKWSError(f"{path}: key '{key}' must be a non-empty list of {typ.__name__}")
        if valid and set(v) - set(valid):
            raise EdgeKWSError(f"{path}: key '{key}' has {sorted(set(v) - set(valid))} (valid: {', '.join(valid)})")
        for x in v:
            if lo is not None and not lo <= x <= hi:
                raise EdgeKWSError(f"{path}: key '{key}' values must be between {lo} and {hi} (got {x})")
        return v

    supernet = typed(doc, "supernet", str, where, default=None)
    checkpoint = typed(doc, "checkpoint", str, where, default=None)
    if supernet is not None and checkpoint is not None:
        raise EdgeKWSError(f"{path}: give supernet or checkpoint, not both")
    if supernet is not None:
        from edgekws.assets import shipped_checkpoint

        shipped_checkpoint(supernet)  # an unknown family is one line naming those that ship
    return Suite(
        supernet=supernet, checkpoint=checkpoint,
        name=typed(doc, "name", str, where, default=path.stem), models=models,
        runtimes=lst("runtimes", str, ["litert"], RUNTIME_FILES), precisions=lst("precisions", str, ["float", "int8"], ("float", "int8")),
        threads=lst("threads", int, [1], lo=1, hi=256), runs=typed(doc, "runs", int, where, default=100, lo=1, hi=1_000_000),
        warmup=typed(doc, "warmup", int, where, default=10, lo=0, hi=1_000_000),
        check_outputs=typed(doc, "check_outputs", bool, where, default=True),
    )


# --------------------------------------------------------------------------------------------
# Devices


# --------------------------------------------------------------------------------------------
# Running a suite


@dataclass
class Job:
    model: str  # subnet name
    folder: Path
    runtime: str
    precision: str
    threads: int
    macs: int
    params: int
    int8_step: float | None = None  # for comparing answers: see int8_step()
    spec: dict | None = None
    model_sha256: str | None = None  # of the model file measured (from the export's manifest)
    checkpoint_sha256: str | None = None
    arch: dict | None = None  # the architecture arguments it was built with (the manifest's; None before it had them)

    def key(self, device: str) -> str:
        return f"{device}|{self.model}|{self.runtime}|{self.precision}|t{self.threads}"

    def rel(self, file: str) -> str:
        """A file's path on the device, unique across models."""
        return f"{self.model}/{Path(file).name}"


# What `bench report` needs in a row; rows without it are named and skipped, not fatal.
ROW_FIELDS = {"key": str, "device": str, "model": str, "runtime": str, "precision": str, "threads": int,
              "macs": (int, float), "ok": bool}


def row_problem(row: object) -> str | None:
    """Why a parsed JSONL value is not a usable results row (None when it is)."""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    for k, typ in ROW_FIELDS.items():
        if k not in row:
            return f"missing '{k}'"
        if not isinstance(row[k], typ) or (typ is int and isinstance(row[k], bool)):
            return f"'{k}' has the wrong type ({type(row[k]).__name__})"
    if row["ok"]:
        lat = row.get("latency_ms")
        if not isinstance(lat, dict) or not all(isinstance(lat.get(q), (int, float)) and not isinstance(lat.get(q), bool)
                                                for q in ("median", "p95")):
            return "an ok row without latency_ms.median and .p95"
    g = row.get("golden")
    if g is not None and not (isinstance(g, dict) and all(isinstance(g.get(k), int) for k in ("n", "top1_agree"))):
        return "'golden' is not a comparison record"
    if not isinstance(row.get("rss_kb") or {}, dict):
        return "'rss_kb' is not a table"
    return None


def read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    """Every complete, well-formed row of a results file, and a note per line that is not one
    ("line N: why"; a torn last line — a crash mid-write — says so)."""
    from edgekws.fileio import first_line, read_bytes

    lines = read_bytes(path, "results file").split(b"\n")
    torn = lines[-1] != b""
    rows, bad = [], []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"line {n}" + (" (torn: no newline at the end of the file)" if n == len(lines) and torn else "")
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad.append(f"{where}: not UTF-8")
            continue
        except (json.JSONDecodeError, RecursionError) as exc:
            bad.append(f"{where}: not JSON ({first_line(exc, 80)})")
            continue
        problem = row_problem(row)
        if problem:
            bad.append(f"{where}: {problem}")
        else:
            rows.append(row)
    return rows, bad


@dataclass
class ResultsFile:
    """An append-only JSONL of bench rows that survives crashes: a torn last line (the process
    died mid-write) is moved to `<file>.torn` before the first append, so no new row is glued
    onto it and every complete row is kept."""

    path: Path
    log: Callable[[str], None] = print
    lock: threading.Lock = field(default_factory=threading.Lock)
    _checked: bool = False

    def done_keys(self) -> set[str]:
        if not self.path.exists():
            return set()
        rows, _ = read_jsonl(self.path)
        return {r["key"] for r in rows if r["ok"]}

    def repair(self) -> None:
        """Move a torn last line aside (to `<file>.torn`, appended) by rewriting the file's
        complete lines under a temp name and renaming it in."""
        from edgekws.fileio import write_bytes_atomic

        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        torn = self.path.with_name(self.path.name + ".torn")
        with open(torn, "ab") as f:
            f.write(data[cut:] + b"\n")
            f.flush()
            os.fsync(f.fileno())
        write_bytes_atomic(self.path, data[:cut])
        kept = data[:cut].count(b"\n")
        self.log(f"{self.path}: its last line was torn ({len(data) - cut} bytes, a crash mid-write); "
                 f"kept the {kept} complete lines, moved the fragment to {torn}")

    def append(self, row: dict) -> None:
        with self.lock:
            if not self._checked:
                self.repair()
                self._checked = True
            with open(self.path, "a") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())


def suite_checkpoint(suite: Suite, suite_path: Path) -> Path:
    """The checkpoint a suite's width, spec and sample models are exported from."""
    from edgekws.assets import resolve_checkpoint

    if suite.checkpoint is None:
        return resolve_checkpoint(None, suite.supernet)
    path = Path(suite.checkpoint)
    path = path if path.is_absolute() else suite_path.parent / path
    if not path.is_file():
        raise EdgeKWSError(f"{suite_path}: checkpoint '{suite.checkpoint}' is not a file")
    return path


def prepare_models(suite: Suite, suite_path: Path, cache: Path) -> list[tuple[str, Path, dict]]:
    """Export every suite model once → (name, folder, manifest). Exports are cached under the
    checkpoint's sha256 and the subnet's name: a new checkpoint never reuses a stale export."""
    from edgekws.export import export_subnet
    from edgekws.fileio import sha256_file
    from edgekws.info import load_spec_file
    from edgekws.manifest import load_manifest

    import numpy as np

    from edgekws.checkpoint import load_checkpoint

    out, seen = [], set()
    ck_path = suite_checkpoint(suite, suite_path)
    ck, ck_cache = None, cache / f"ckpt-{sha256_file(ck_path)[:16]}"
    for i, m in enumerate(suite.models):
        if "export" in m:
            folder = (suite_path.parent / m["export"]).resolve() if not Path(m["export"]).is_absolute() else Path(m["export"])
            if not (folder / "manifest.json").exists():
                raise EdgeKWSError(f"{suite_path}: export '{m['export']}' has no manifest.json")
            folders = [folder]
        else:
            ck = ck or load_checkpoint(ck_path)
            if "spec" in m:
                specs = [load_spec_file(suite_path.parent / m["spec"])]
                if specs[0].family != ck.family:
                    raise EdgeKWSError(f"{suite_path}: models[{i}] is a {specs[0].family} spec but the suite's models "
                                       f"come from a {ck.family} supernet ({ck_path.name}); set supernet = "
                                       f"\"{specs[0].family}\" or checkpoint = \"...\" in the suite")
            else:
                if "sample" in m:  # subnets drawn from the trained space: rows a latency model can be fitted on
                    rng = np.random.default_rng(m.get("seed", 0))
                    specs = [ck.space.sample(rng) for _ in range(m["sample"])]
                else:
                    specs = [ck.space.uniform(float(m["width"]), m.get("depth"))]
            folders = []
            for spec in specs:
                folder = ck_cache / spec.name
                if not (folder / "manifest.json").exists():
                    folder = export_subnet(spec=spec, checkpoint=ck_path, out=ck_cache, force=True).out_dir
                folders.append(folder)
        for folder in folders:
            manifest = load_manifest(folder)
            if manifest["name"] not in seen:  # a sample may draw a spec twice, or one listed elsewhere
                seen.add(manifest["name"])
                out.append((manifest["name"], folder, manifest))
    return out


def run_suite(suite: Suite, models: list[tuple[str, Path, dict]], devices: list[Device], results: ResultsFile,
              resume: bool = False, retries: int = 3, backoff: float = 1.0, timeout: float = 300.0,
              log: Callable[[str], None] = print) -> dict:
    """Run every job on every device (devices in parallel). Returns counts per outcome."""
    jobs, absent = [], []
    for name, folder, man in models:
        for rt in suite.runtimes:
            for prec in suite.precisions:
                have = (folder / PRECISION_FILE[(rt, prec)]).exists()
                step = int8_step(man, rt, prec) if have else None
                for th in suite.threads:
                    ck = man.get("checkpoint") if isinstance(man.get("checkpoint"), dict) else {}
                    (jobs if have else absent).append(Job(
                        name, folder, rt, prec, th, man["accounting"]["macs"], man["accounting"]["params"], step,
                        spec=man.get("spec"), model_sha256=(man.get("files") or {}).get(PRECISION_FILE[(rt, prec)]),
                        checkpoint_sha256=ck.get("sha256"),
                        arch=man.get("arch") if isinstance(man.get("arch"), dict) else None))
    done = results.done_keys() if resume else set()
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    counts_lock = threading.Lock()

    def bump(k):
        with counts_lock:
            counts[k] += 1

    def attempt(fn, what: str, dev: Device):
        delay = backoff
        for i in range(1, retries + 1):
            try:
                return fn(), i
            except DeviceError as exc:
                if i == retries:
                    raise DeviceError(f"{what} failed {retries} times; last: {exc}") from None
                log(f"{dev.name}: {what} failed ({exc}); retry {i}/{retries - 1} in {delay:.1f} s")
                time.sleep(delay)
                delay *= 2

    def base_row(j: Job, dev: Device) -> dict:
        base = {"key": j.key(dev.name), "device": dev.name, "model": j.model, "runtime": j.runtime,
                "precision": j.precision, "threads": j.threads, "macs": j.macs, "params": j.params,
                "suite": suite.name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "record": RECORD, "spec": j.spec,
                "model_sha256": j.model_sha256, "checkpoint_sha256": j.checkpoint_sha256,
                **({"arch": j.arch} if j.arch is not None else {})}
        if dev.emulated:
            base.update(emulated=True, latency_meaningful=False, note=dev.note)
        return base

    def fail_all(dev: Device, js: list[Job], reason: str) -> None:
        for j in js:
            results.append({**base_row(j, dev), "ok": False, "attempts": 0, "error": reason})
            bump("failed")
        log(f"{dev.name}: {len(js)} row(s) FAILED ({reason})")

    def on_device(dev: Device) -> None:
        mine = [j for j in jobs if j.key(dev.name) not in done]
        for j in jobs:
            if j.key(dev.name) in done:
                bump("skipped")
        for j in absent:  # requested, but the export has no such model: a failure, not silence
            fail_all(dev, [j], f"export '{j.model}' has no {PRECISION_FILE[(j.runtime, j.precision)]}")
        if not mine:
            return
        try:  # pre-flight: does the board have what the suite needs? (nothing copied yet)
            found, _ = attempt(lambda: dev.probe(), "pre-flight check", dev)
        except DeviceError as exc:
            fail_all(dev, mine, f"pre-flight check failed: {exc}")
            return
        lacking = missing_runtimes(found, sorted({j.runtime for j in mine}))
        if lacking:
            can_run = [j for j in mine if j.runtime not in lacking and "numpy" not in lacking]
            fail_all(dev, [j for j in mine if j not in can_run],
                     f"the device's Python {found.get('python')} lacks {', '.join(lacking)} (pre-flight check)")
            mine = can_run
            if not mine:
                return
        files = {}
        for j in mine:
            files[j.rel(PRECISION_FILE[(j.runtime, j.precision)])] = j.folder / PRECISION_FILE[(j.runtime, j.precision)]
            if suite.check_outputs and (j.folder / GOLDEN_INPUT).exists():
                files[j.rel(GOLDEN_INPUT)] = j.folder / GOLDEN_INPUT
        prepared = False
        for j in mine:
            base = base_row(j, dev)
            golden_in = j.rel(GOLDEN_INPUT) if j.rel(GOLDEN_INPUT) in files else None
            try:
                if not prepared:
                    attempt(lambda: dev.prepare(files), "copying runner and models", dev)
                    prepared = True
                args = ["--model", dev.remote_path(j.rel(PRECISION_FILE[(j.runtime, j.precision)])), "--runtime", j.runtime,
                        "--threads", str(j.threads), "--runs", str(suite.runs), "--warmup", str(suite.warmup)]
                if golden_in:
                    args += ["--input", dev.remote_path(golden_in), "--all-inputs"]

                def once(args=args):
                    out = dev.run(args, timeout)
                    r = out["results"][0]
                    if r.get("crashed"):  # the measuring process died: a board fault, worth a retry
                        raise DeviceError(r["error"])
                    return out

                out, tries = attempt(once, f"{j.model} {j.runtime} {j.precision} t{j.threads}", dev)
                r = out["results"][0]
                row = {**base, "ok": bool(r.get("ok")), "attempts": tries, "device_info": out.get("device"),
                       "latency_ms": r.get("latency_ms"), "rss_kb": r.get("rss_kb"), "model_bytes": r.get("model_bytes"),
                       "error": r.get("error")}
                if golden_in and r.get("ok"):
                    row["golden"] = compare_golden(j.folder, j.runtime, j.precision, r.get("outputs"), j.int8_step)
            except DeviceError as exc:
                row = {**base, "ok": False, "attempts": retries, "error": str(exc)}
            results.append(row)
            bump("ok" if row["ok"] else "failed")
            g = row.get("golden")
            log(f"{dev.name}: {j.model} {j.runtime} {j.precision} t{j.threads} "
                + (f"median {row['latency_ms']['median']:.3f} ms" + (" (emulated)" if dev.emulated else "")
                   + (f", top-1 {g['top1_agree']}/{g['n']} vs x86 golden" if g else "") if row["ok"]
                   else f"FAILED ({row['error']})"))

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        list(pool.map(on_device, devices))
    return counts


def int8_step(manifest: dict, runtime: str, precision: str) -> float | None:
    """One output quantization step in the units a runtime returns: raw int8 for TFLite (1), the
    dequantized logit scale for ONNX QDQ; None for float models."""
    if precision != "int8":
        return None
    fmt = RUNTIME_FORMAT[runtime]
    if fmt == "tflite":
        return 1.0
    out = manifest.get("quantization", {}).get(fmt, {}).get("output")
    if out is None:
        raise EdgeKWSError(f"export '{manifest['name']}' has an int8 {fmt} model but its manifest has no "
                           f"quantization.{fmt}.output (re-export it)")
    return out["scale"]


def compare_outputs(got, expected, step: float | None = None) -> dict:
    """Two machines' outputs on the same inputs: top-1 agreement, rows with identical outputs, the
    largest difference, and (int8) that difference in output quantization steps."""
    import numpy as np

    expected = np.asarray(expected, dtype=np.float64)
    got = np.asarray(got if got is not None else [], dtype=np.float64).reshape(expected.shape[0], -1)
    diff = np.abs(got - expected)
    agree = int((got.argmax(1) == expected.argmax(1)).sum())
    return {"n": int(expected.shape[0]), "top1_agree": agree, "top1_identical": agree == expected.shape[0],
            "outputs_identical": int((diff.max(1) == 0).sum()), "max_abs_diff": float(diff.max()),
            "max_int8_steps": round(float(diff.max()) / step, 3) if step else None}


def compare_golden(folder: Path, runtime: str, precision: str, outputs: list | None, step: float | None) -> dict:
    """A device's outputs on the export's golden inputs against the outputs export recorded on x86."""
    import numpy as np

    return compare_outputs(outputs, np.load(folder / expected_outputs(RUNTIME_FORMAT[runtime], precision)), step)


def read_results(path: Path) -> tuple[list[dict], list[str]]:
    """The usable rows of a results file and a note per line skipped; an error only when no
    row is usable."""
    rows, bad = read_jsonl(path)
    if not rows:
        detail = f" ({len(bad)} unusable line(s); first: {bad[0]})" if bad else " (it is empty)"
        raise EdgeKWSError(f"{path}: no usable results rows{detail}")
    return rows, bad


def plot_latency_vs_macs(rows: list[dict], dest: Path) -> bool:
    """Median latency against MACs, one line per (device, runtime, precision, threads), each
    point labelled with its model. Returns False (and writes nothing) when no row has a
    meaningful latency — every row failed, or all were emulated."""
    series: dict[str, list[tuple[float, float, str]]] = {}
    for r in rows:
        if r.get("ok") and r.get("latency_meaningful", True):  # emulated latency is not a latency
            label = f"{r['device']} {r['runtime']} {r['precision']} t{r['threads']}"
            series.setdefault(label, []).append((r["macs"] / 1e6, r["latency_ms"]["median"], str(r["model"])))
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgekws.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        for x, y, model in pts:
            ax.annotate(model, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=6, alpha=0.8)
    ax.set_xlabel("MACs per inference (millions)")
    ax.set_ylabel("median latency (ms)")
    ax.set_title("latency vs MACs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(Path(dest)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return True
