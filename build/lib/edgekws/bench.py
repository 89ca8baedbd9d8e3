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
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from edgekws.errors import EdgeKWSError
from edgekws.fileio import load_toml
from edgekws.profile import ARTEFACTS, RUNNER

GOLDEN_INPUT = "golden/features.npy"

FORMAT = {"litert": "tflite", "onnxruntime": "onnx"}
PRECISION_FILE = {("litert", "float"): "model_float.tflite", ("litert", "int8"): "model_int8.tflite",
                  ("onnxruntime", "float"): "model_float.onnx", ("onnxruntime", "int8"): "model_int8.onnx"}


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


SUITE_KEYS = {"name", "models", "runtimes", "precisions", "threads", "runs", "warmup", "check_outputs"}
MODEL_KEYS = {"width", "depth", "spec", "export"}


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
        raise EdgeKWSError(f"{path}: unknown key(s) {', '.join(unknown)} (valid: {', '.join(sorted(SUITE_KEYS))})")
    models = doc.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise EdgeKWSError(f"{path}: needs one or more [[models]] tables (width = 0.5, spec = 'x.json' or export = 'dir')")
    for i, m in enumerate(models):
        pre = f"models[{i}]."
        if set(m) - MODEL_KEYS:
            raise EdgeKWSError(f"{path}: models[{i}] has unknown key(s) {', '.join(sorted(set(m) - MODEL_KEYS))} "
                               f"(valid: {', '.join(sorted(MODEL_KEYS))})")
        if len({"width", "spec", "export"} & set(m)) != 1:
            raise EdgeKWSError(f"{path}: models[{i}] needs exactly one of width, spec, export")
        if "width" in m:
            typed(m, "width", float, where, hi=1, positive=True, prefix=pre)
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

    return Suite(
        name=typed(doc, "name", str, where, default=path.stem), models=models,
        runtimes=lst("runtimes", str, ["litert"], ARTEFACTS), precisions=lst("precisions", str, ["float", "int8"], ("float", "int8")),
        threads=lst("threads", int, [1], lo=1, hi=256), runs=typed(doc, "runs", int, where, default=100, lo=1, hi=1_000_000),
        warmup=typed(doc, "warmup", int, where, default=10, lo=0, hi=1_000_000),
        check_outputs=typed(doc, "check_outputs", bool, where, default=True),
    )


# --------------------------------------------------------------------------------------------
# Devices


# Run by the device's Python before anything is copied (the pre-flight check).
PROBE_CODE = ("import json, platform, importlib\nout = {'machine': platform.machine(), 'python': platform.python_version()}\n"
              "for m in ('numpy', 'ai_edge_litert', 'tflite_runtime', 'onnxruntime'):\n"
              "    try:\n        mod = importlib.import_module(m + ('.interpreter' if 'lite' in m else ''))\n"
              "        out[m] = getattr(importlib.import_module(m), '__version__', 'present')\n"
              "    except Exception as e:\n        out[m] = None\n"
              "print(json.dumps(out))")
# Modules that provide each runtime on a device (any one is enough).
RUNTIME_MODULES = {"litert": ("ai_edge_litert", "tflite_runtime"), "onnxruntime": ("onnxruntime",)}


def missing_runtimes(found: dict, runtimes: list[str]) -> list[str]:
    """What a probed device lacks to run `runtimes` (numpy included)."""
    missing = [] if found.get("numpy") else ["numpy"]
    return missing + [rt for rt in runtimes if not any(found.get(m) for m in RUNTIME_MODULES[rt])]


class DeviceError(Exception):
    """A transport or board failure (retried), as opposed to a bad model (recorded at once)."""


@dataclass
class Device:
    """Where the runner runs. `prepare` gets the files a suite needs, keyed by a relative path that
    is unique per file (`<subnet>/<file>`: every export folder has a `model_int8.tflite`);
    `remote_path(rel)` is where the runner finds one; `run(args)` returns the runner's JSON."""

    url: str
    emulated = False

    @property
    def name(self) -> str:
        return self.url

    @property
    def note(self) -> str | None:
        return None

    def prepare(self, files: dict[str, Path]) -> None: ...

    def remote_path(self, rel: str) -> str: ...

    def python_command(self, code: str, timeout: float) -> subprocess.CompletedProcess: ...

    def probe(self, timeout: float = 300) -> dict:
        """What the device's Python reports: machine, Python version, and the version of each
        runtime module it can import (None when it cannot). Copies nothing."""
        res = self.python_command(PROBE_CODE, timeout)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        if res.returncode != 0 or not lines:
            raise DeviceError(f"{self.name}: its Python failed (exit {res.returncode}): {res.stderr.strip()[-200:]}")
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            raise DeviceError(f"{self.name}: its Python printed no JSON") from None

    def run(self, args: list[str], timeout: float) -> dict: ...


@dataclass
class LocalDevice(Device):
    python: str = sys.executable

    def __post_init__(self) -> None:
        self._files: dict[str, Path] = {}

    def prepare(self, files: dict[str, Path]) -> None:
        self._files = dict(files)

    def remote_path(self, rel: str) -> str:
        return str(self._files[rel])

    def command(self) -> list[str]:
        return [self.python]

    def environment(self) -> dict[str, str] | None:
        return None

    def python_command(self, code: str, timeout: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([*self.command(), "-c", code], capture_output=True, text=True, timeout=timeout,
                                  env=self.environment())
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.name}: Python timed out after {timeout:.0f} s") from None

    def run(self, args: list[str], timeout: float) -> dict:
        try:
            res = subprocess.run([*self.command(), str(RUNNER), *args], capture_output=True, text=True, timeout=timeout,
                                 env=self.environment())
        except subprocess.TimeoutExpired:
            raise DeviceError(f"runner timed out after {timeout:.0f} s") from None
        if res.returncode != 0:
            raise DeviceError(f"runner exit {res.returncode}: {res.stderr.strip()[-200:]}")
        try:
            return json.loads(res.stdout)
        except json.JSONDecodeError:
            raise DeviceError(f"runner printed no JSON: {res.stdout.strip()[-200:]}") from None


@dataclass
class SSHDevice(Device):
    """A board reached with the system OpenSSH client (keys from --identity, ssh-agent or ~/.ssh)."""

    identity: str | None = None
    python: str = "python3"
    workdir: str = ".edgekws-bench"
    connect_timeout: int = 5
    known_hosts: str | None = None

    def __post_init__(self) -> None:
        u = urlparse(self.url)
        if u.scheme != "ssh" or not u.hostname:
            raise EdgeKWSError(f"device '{self.url}' is not ssh://[user@]host[:port]")
        try:
            port = u.port
        except ValueError:
            raise EdgeKWSError(f"device '{self.url}': the port must be a number between 1 and 65535") from None
        if port == 0:
            raise EdgeKWSError(f"device '{self.url}': the port must be a number between 1 and 65535")
        self.host, self.port, self.user = u.hostname, port or 22, u.username

    def _opts(self) -> list[str]:
        o = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}", "-o", "ServerAliveInterval=2",
             "-o", "ServerAliveCountMax=3", "-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR"]
        if self.known_hosts:
            o += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.identity:
            o += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        return o

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _ssh(self, command: str, timeout: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["ssh", *self._opts(), "-p", str(self.port), self.target, command],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"ssh to {self.host}:{self.port} timed out after {timeout:.0f} s") from None

    def prepare(self, files: dict[str, Path]) -> None:
        """Copy the runner and models as one tar stream over ssh: needs only `tar` on the board
        (no sftp subsystem, which small boards and dropbear often lack)."""
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(RUNNER), arcname=RUNNER.name)
            for rel, f in sorted(files.items()):
                tar.add(str(f), arcname=rel)
        wd = shlex.quote(self.workdir)
        try:
            res = subprocess.run(["ssh", *self._opts(), "-p", str(self.port), self.target,
                                  f"mkdir -p {wd} && tar -C {wd} -xf -"], input=buf.getvalue(), capture_output=True,
                                 timeout=120)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"copy to {self.host}:{self.port} timed out") from None
        if res.returncode != 0:
            err = res.stderr.decode(errors="replace").strip()[-200:]
            raise DeviceError(f"copy to {self.host}:{self.port}: {err or 'exit %d' % res.returncode}")

    def remote_path(self, rel: str) -> str:
        return f"{self.workdir}/{rel}"

    def python_command(self, code: str, timeout: float) -> subprocess.CompletedProcess:
        res = self._ssh(f"{shlex.quote(self.python)} -c {shlex.quote(code)}", timeout)
        if res.returncode == 255:
            raise DeviceError(f"ssh exit 255: {res.stderr.strip()[-200:]}")
        return res

    def run(self, args: list[str], timeout: float) -> dict:
        cmd = " ".join(shlex.quote(a) for a in [self.python, f"{self.workdir}/runner.py", *args])
        res = self._ssh(cmd, timeout)
        if res.returncode != 0:  # 255 = ssh itself failed: connection refused, dropped, reset
            raise DeviceError(f"ssh exit {res.returncode}: {res.stderr.strip()[-200:]}")
        try:
            return json.loads(res.stdout)
        except json.JSONDecodeError:
            raise DeviceError(f"runner printed no JSON: {res.stdout.strip()[-200:]}") from None


def make_device(url: str, identity: str | None = None, known_hosts: str | None = None,
                remote_python: str = "python3", sysroot: str | None = None) -> Device:
    if url == "local":
        return LocalDevice(url)
    if url.startswith("ssh://"):
        return SSHDevice(url, identity=identity, known_hosts=known_hosts, python=remote_python)
    if url.split(":")[0].split("@")[0] == "qemu-aarch64":
        from edgekws.emulation import QemuDevice

        dev = QemuDevice(url)
        if sysroot:  # a base folder holding one sysroot per release
            dev.sysroot = Path(sysroot) / dev.release
        dev.check()
        return dev
    raise EdgeKWSError(f"unknown device '{url}' (valid: local, ssh://[user@]host[:port], qemu-aarch64[:CPU][@RELEASE])")


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


def read_jsonl(path: Path) -> tuple[list[dict], list[str], bool]:
    """Every complete, well-formed row of a results file, a note per line that is not one
    ("line N: why"), and whether the file ends in a torn line (a crash mid-write)."""
    from edgekws.fileio import first_line

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EdgeKWSError(f"results file '{path}' does not exist") from None
    except IsADirectoryError:
        raise EdgeKWSError(f"results file '{path}' is a folder, not a file") from None
    lines = data.split(b"\n")
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
    return rows, bad, torn


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
        rows, _, _ = read_jsonl(self.path)
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


def prepare_models(suite: Suite, suite_path: Path, cache: Path) -> list[tuple[str, Path, dict]]:
    """Export every suite model once (cached by subnet name) → (name, folder, manifest)."""
    from edgekws.export import export_subnet
    from edgekws.info import load_spec_file
    from edgekws.manifest import load_manifest

    out = []
    for m in suite.models:
        if "export" in m:
            folder = (suite_path.parent / m["export"]).resolve() if not Path(m["export"]).is_absolute() else Path(m["export"])
            if not (folder / "manifest.json").exists():
                raise EdgeKWSError(f"{suite_path}: export '{m['export']}' has no manifest.json")
        else:
            spec = load_spec_file(suite_path.parent / m["spec"]) if "spec" in m else None
            from edgekws.assets import DEFAULT_CHECKPOINT
            from edgekws.checkpoint import load_checkpoint

            if spec is None:
                spec = load_checkpoint(DEFAULT_CHECKPOINT).space.uniform(float(m["width"]), m.get("depth"))
            folder = cache / spec.name
            if not (folder / "manifest.json").exists():
                folder = export_subnet(spec=spec, out=cache, force=True).out_dir
        manifest = load_manifest(folder)
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
                    (jobs if have else absent).append(Job(name, folder, rt, prec, th, man["accounting"]["macs"],
                                                          man["accounting"]["params"], step))
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
                "suite": suite.name, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
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
    fmt = FORMAT[runtime]
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

    return compare_outputs(outputs, np.load(folder / "golden" / f"expected_{FORMAT[runtime]}_{precision}.npy"), step)


def read_results(path: Path) -> tuple[list[dict], list[str]]:
    """The usable rows of a results file and a note per line skipped; an error only when no
    row is usable."""
    rows, bad, _ = read_jsonl(path)
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
