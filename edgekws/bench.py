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


def load_suite(path: Path) -> Suite:
    path = Path(path)
    doc = load_toml(path, "suite")
    models = doc.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise EdgeKWSError(f"{path}: needs one or more [[models]] tables (width = 0.5, spec = 'x.json' or export = 'dir')")
    for i, m in enumerate(models):
        if len({"width", "spec", "export"} & set(m)) != 1:
            raise EdgeKWSError(f"{path}: models[{i}] needs exactly one of width, spec, export")
    def lst(key, typ, default, valid=None):
        v = doc.get(key, default)
        if not isinstance(v, list) or not all(isinstance(x, typ) for x in v) or not v:
            raise EdgeKWSError(f"{path}: key '{key}' must be a non-empty list of {typ.__name__}")
        if valid and set(v) - set(valid):
            raise EdgeKWSError(f"{path}: key '{key}' has {sorted(set(v) - set(valid))} (valid: {', '.join(valid)})")
        return v
    return Suite(
        name=str(doc.get("name", path.stem)), models=models,
        runtimes=lst("runtimes", str, ["litert"], ARTEFACTS), precisions=lst("precisions", str, ["float", "int8"], ("float", "int8")),
        threads=lst("threads", int, [1]), runs=int(doc.get("runs", 100)), warmup=int(doc.get("warmup", 10)),
        check_outputs=bool(doc.get("check_outputs", True)),
    )


# --------------------------------------------------------------------------------------------
# Devices


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
        self.host, self.port, self.user = u.hostname, u.port or 22, u.username

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


@dataclass
class ResultsFile:
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)

    def done_keys(self) -> set[str]:
        keys = set()
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line from a crash
                if row.get("ok"):
                    keys.add(row["key"])
        return keys

    def append(self, row: dict) -> None:
        with self.lock:
            with open(self.path, "a") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())


def prepare_models(suite: Suite, suite_path: Path, cache: Path) -> list[tuple[str, Path, dict]]:
    """Export every suite model once (cached by subnet name) → (name, folder, manifest)."""
    from edgekws.export import export_subnet
    from edgekws.info import load_spec_file

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
        manifest = json.loads((folder / "manifest.json").read_text())
        out.append((manifest["name"], folder, manifest))
    return out


def run_suite(suite: Suite, models: list[tuple[str, Path, dict]], devices: list[Device], results: ResultsFile,
              resume: bool = False, retries: int = 3, backoff: float = 1.0, timeout: float = 300.0,
              log: Callable[[str], None] = print) -> dict:
    """Run every job on every device (devices in parallel). Returns counts per outcome."""
    jobs = [Job(name, folder, rt, prec, th, man["accounting"]["macs"], man["accounting"]["params"], int8_step(man, rt, prec))
            for name, folder, man in models for rt in suite.runtimes for prec in suite.precisions for th in suite.threads
            if (folder / PRECISION_FILE[(rt, prec)]).exists()]
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

    def on_device(dev: Device) -> None:
        mine = [j for j in jobs if j.key(dev.name) not in done]
        for j in jobs:
            if j.key(dev.name) in done:
                bump("skipped")
        if not mine:
            return
        files = {}
        for j in mine:
            files[j.rel(PRECISION_FILE[(j.runtime, j.precision)])] = j.folder / PRECISION_FILE[(j.runtime, j.precision)]
            if suite.check_outputs and (j.folder / GOLDEN_INPUT).exists():
                files[j.rel(GOLDEN_INPUT)] = j.folder / GOLDEN_INPUT
        prepared = False
        for j in mine:
            base = {"key": j.key(dev.name), "device": dev.name, "model": j.model, "runtime": j.runtime,
                    "precision": j.precision, "threads": j.threads, "macs": j.macs, "params": j.params,
                    "suite": suite.name, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            if dev.emulated:
                base.update(emulated=True, latency_meaningful=False, note=dev.note)
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
    return 1.0 if fmt == "tflite" else manifest["quantization"][fmt]["output"]["scale"]


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


def read_results(path: Path) -> list[dict]:
    if not Path(path).exists():
        raise EdgeKWSError(f"results file '{path}' does not exist")
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise EdgeKWSError(f"{path}:{n}: not a JSON line") from None
    return rows


def plot_latency_vs_macs(rows: list[dict], dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgekws.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r.get("ok") and r.get("latency_meaningful", True):  # emulated latency is not a latency
            label = f"{r['device']} {r['runtime']} {r['precision']} t{r['threads']}"
            series.setdefault(label, []).append((r["macs"] / 1e6, r["latency_ms"]["median"]))
    for label, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xlabel("MACs per inference (millions)")
    ax.set_ylabel("median latency (ms)")
    ax.set_title("latency vs MACs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(Path(dest)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
