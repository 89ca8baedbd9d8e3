"""`edgekws bench` against this machine and a real OpenSSH server on 127.0.0.1 (throwaway keys),
including connections killed mid-suite and a board that disappears."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekws.bench import ResultsFile, Suite, load_suite, prepare_models, read_results, run_suite
from edgekws.devices import make_device
from edgekws.devices.ssh import SSHDevice
from edgekws.cli import app
from edgekws.errors import EdgeKWSError

pytestmark = [pytest.mark.ssh, pytest.mark.tflite]
SUITE = Path(__file__).resolve().parent.parent / "benchmarks" / "suites" / "smoke.toml"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """A private sshd on 127.0.0.1: its own host key, config, authorized key and pid file."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        for name in ("host", "client"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
        (root / "authorized_keys").write_text((root / "client.pub").read_text())
        os.chmod(root / "authorized_keys", 0o600)
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host'}\nPidFile {root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
            "MaxStartups 100\nLogLevel ERROR\n")
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([SSHD, "-D", "-f", str(self.root / "sshd_config"), "-E", str(self.root / "log")])
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start: " + (self.root / "log").read_text())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def kill_sessions(self) -> int:
        """SIGKILL every session process this sshd forked: live connections drop, the listener stays."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        for pid in out:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(out)

    def device(self) -> SSHDevice:
        user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        return SSHDevice(f"ssh://{user}@127.0.0.1:{self.port}", identity=str(self.root / "client"),
                         known_hosts=str(self.root / "known_hosts"), python=sys.executable,
                         workdir=str(self.root / "board"))


@pytest.fixture()
def sshd(tmp_path):
    if not Path(SSHD).exists():
        pytest.fail("sshd is not installed (Debian package openssh-server); `make setup` installs it")
    d = Sshd(tmp_path / "sshd")
    yield d
    d.stop()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return prepare_models(load_suite(SUITE), SUITE, tmp_path_factory.mktemp("cache"))


@pytest.fixture()
def models(exported):
    """The smoke suite (fresh per test: tests change its run counts) and its exported model."""
    return load_suite(SUITE), exported


def test_suite_exports_are_cached_per_checkpoint(exported):
    """A new checkpoint never reuses a stale export: the cache is keyed by its sha256."""
    from edgekws.assets import DEFAULT_CHECKPOINT
    from edgekws.fileio import sha256_file

    _, folder, manifest = exported[0]
    assert folder.parent.name == f"ckpt-{sha256_file(DEFAULT_CHECKPOINT)[:16]}"
    assert manifest["checkpoint"]["sha256"] == sha256_file(DEFAULT_CHECKPOINT)


def test_suite_loading_errors(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text("runtimes = ['litert']\n")
    with pytest.raises(EdgeKWSError, match="needs one or more"):
        load_suite(bad)
    bad.write_text("runtimes = ['tvm']\n[[models]]\nwidth = 0.5\n")
    with pytest.raises(EdgeKWSError, match="valid: litert, onnxruntime"):
        load_suite(bad)
    with pytest.raises(EdgeKWSError, match="not ssh://"):
        make_device("ssh://")
    with pytest.raises(EdgeKWSError, match="unknown device"):
        make_device("telnet://x")
    with pytest.raises(EdgeKWSError, match="no arm64 bookworm sysroot at .*make arm"):
        make_device("qemu-aarch64", sysroot=str(tmp_path / "none"))


def test_local_suite_appends_rows_and_resumes(models, tmp_path):
    suite, ms = models
    results = ResultsFile(tmp_path / "r.jsonl")
    counts = run_suite(suite, ms, [make_device("local")], results, log=lambda m: None)
    assert counts == {"ok": 2, "failed": 0, "skipped": 0}
    rows = read_results(results.path)[0]
    assert {r["precision"] for r in rows} == {"float", "int8"}
    assert all(r["ok"] and r["latency_ms"]["median"] > 0 and r["macs"] > 0 for r in rows)
    # each row names the architecture its export was built with (what a cost model prices it by)
    assert all(r["arch"] == ms[0][2]["arch"] and r["arch"]["stem_kernel"] for r in rows)
    counts = run_suite(suite, ms, [make_device("local")], results, resume=True, log=lambda m: None)
    assert counts == {"ok": 0, "failed": 0, "skipped": 2}
    assert len(read_results(results.path)[0]) == 2


def test_ssh_suite_on_loopback_with_parallel_devices(models, sshd, tmp_path):
    suite, ms = models
    results = ResultsFile(tmp_path / "r.jsonl")
    counts = run_suite(suite, ms, [sshd.device(), make_device("local")], results, log=lambda m: None)
    assert counts["ok"] == 4 and counts["failed"] == 0
    rows = read_results(results.path)[0]
    assert {r["device"] for r in rows} == {"local", sshd.device().url}
    assert (sshd.root / "board" / "runner.py").exists()  # copied over ssh
    # both machines ran the export's 8 golden clips and agree with what export recorded
    assert all(r["golden"]["n"] == 8 and r["golden"]["top1_identical"] for r in rows)


def test_ssh_suite_keeps_models_of_the_same_file_name_apart(models, sshd, tmp_path):
    """Every export folder has a model_int8.tflite: the board must get (and time) each one."""
    suite, ms = models
    two = prepare_models(Suite("two", [{"width": 0.5}], ["litert"], ["int8"], [1], runs=5, warmup=1),
                         SUITE, tmp_path / "cache") + ms
    suite.precisions, suite.runs = ["int8"], 5
    results = ResultsFile(tmp_path / "r.jsonl")
    counts = run_suite(suite, two, [sshd.device()], results, log=lambda m: None)
    assert counts == {"ok": 2, "failed": 0, "skipped": 0}
    rows = {r["model"]: r for r in read_results(results.path)[0]}
    for name, folder, _ in two:
        assert rows[name]["model_bytes"] == (folder / "model_int8.tflite").stat().st_size
        assert (sshd.root / "board" / name / "model_int8.tflite").exists()
    assert len({r["model_bytes"] for r in rows.values()}) == 2


def test_connection_killed_mid_suite_is_retried(models, sshd, tmp_path):
    suite, ms = models
    suite.runs = 4000  # long enough rows to be caught mid-measurement
    dev = sshd.device()
    results = ResultsFile(tmp_path / "r.jsonl")
    killed = []

    def killer():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            # this board's measuring child only (other runners may be busy on the machine)
            ps = subprocess.run(["pgrep", "-f", f"{sshd.root / 'board' / 'runner.py'} --one"], capture_output=True,
                                text=True).stdout.split()
            if ps:
                time.sleep(0.2)
                n = sshd.kill_sessions()
                if n:
                    killed.append(n)
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    logs: list[str] = []
    counts = run_suite(suite, ms, [dev], results, retries=4, backoff=0.2, log=logs.append)
    t.join()
    assert killed, "no connection was killed"
    assert any("retry" in m for m in logs), logs
    rows = read_results(results.path)[0]
    assert counts == {"ok": 2, "failed": 0, "skipped": 0}
    assert all(r["ok"] for r in rows) and max(r["attempts"] for r in rows) >= 2


def test_board_that_disappears_gives_failure_rows_then_resume_completes(models, sshd, tmp_path):
    suite, ms = models
    dev = sshd.device()
    results = ResultsFile(tmp_path / "r.jsonl")
    done_first = []

    def log(m):
        if "median" in m and not done_first:
            done_first.append(m)
            sshd.stop()  # the board dies after its first row

    counts = run_suite(suite, ms, [dev], results, retries=2, backoff=0.1, log=log)
    assert counts == {"ok": 1, "failed": 1, "skipped": 0}
    rows = read_results(results.path)[0]
    assert [r["ok"] for r in rows] == [True, False]
    assert "failed 2 times" in rows[1]["error"]
    sshd.start()
    counts = run_suite(suite, ms, [dev], results, resume=True, retries=2, backoff=0.1, log=lambda m: None)
    assert counts == {"ok": 1, "failed": 0, "skipped": 1}
    rows = read_results(results.path)[0]
    assert len(rows) == 3 and sum(r["ok"] for r in rows) == 2


def test_bench_cli_and_report(tmp_path):
    runner = CliRunner()
    results = tmp_path / "r.jsonl"
    res = runner.invoke(app, ["bench", "--suite", str(SUITE), "--device", "local", "--results", str(results),
                              "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "2 ok, 0 failed" in res.output
    res = runner.invoke(app, ["bench", "report", str(results), "--png", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert "dscnn-w16.24.40.56-d2.3.3" in res.output  # rows are named by subnet, not by file
    assert res.output.count("litert") == 2 and "float" in res.output and "int8" in res.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(app, ["bench", "report", str(tmp_path / "none.jsonl")])
    assert res.exit_code == 1 and "does not exist" in res.stderr


def test_resume_after_a_torn_last_line_keeps_every_row(models, tmp_path):
    """A crash mid-write tears the last row: resume sets the fragment aside (said, and kept in
    `<file>.torn`), keeps every complete row and measures the torn one again."""
    suite, ms = models
    results = ResultsFile(tmp_path / "r.jsonl")
    assert run_suite(suite, ms, [make_device("local")], results, log=lambda m: None)["ok"] == 2
    raw = results.path.read_bytes()
    first, second = raw.split(b"\n")[:2]
    results.path.write_bytes(first + b"\n" + second[: len(second) // 2])  # the crash
    rows, bad = read_results(results.path)
    assert len(rows) == 1 and len(bad) == 1 and "torn" in bad[0]  # the report reads the rest

    said = []
    resumed = ResultsFile(results.path, log=said.append)
    counts = run_suite(suite, ms, [make_device("local")], resumed, resume=True, log=lambda m: None)
    assert counts == {"ok": 1, "failed": 0, "skipped": 1}
    assert any("torn" in m and ".torn" in m for m in said)
    rows, bad = read_results(results.path)
    assert len(rows) == 2 and bad == []
    assert json.loads(first) in rows  # the complete row survived, byte for byte
    assert (tmp_path / "r.jsonl.torn").read_bytes() == second[: len(second) // 2] + b"\n"


def test_report_reads_valid_rows_and_names_bad_ones(tmp_path):
    good = {"key": "local|m|litert|float|t1", "device": "local", "model": "m[/]", "runtime": "litert",
            "precision": "float", "threads": 1, "macs": 1000, "ok": True, "latency_ms": {"median": 0.5, "p95": 0.7}}
    failed = {**good, "key": "local|m|litert|int8|t1", "precision": "int8", "ok": False, "latency_ms": None,
              "error": "board lacks [budgets] runtime"}
    lines = [json.dumps(good), "{not json", json.dumps({"key": 3}), "\xff\xfe".encode("latin-1").decode("latin-1"),
             json.dumps(failed), json.dumps(good)[:20]]
    path = tmp_path / "r.jsonl"
    path.write_bytes("\n".join(lines).encode("latin-1"))
    res = CliRunner().invoke(app, ["bench", "report", str(path), "--png", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    for n in (2, 3, 4, 6):
        assert f"r.jsonl line {n}" in res.stderr
    assert "m[/]" in res.output  # user text verbatim, never markup
    assert "board lacks [budgets] runtime" in res.output  # each failure's reason
    res = CliRunner().invoke(app, ["bench", "report", str(path), "--json"])
    doc = json.loads(res.stdout)
    assert len(doc["rows"]) == 2 and len(doc["skipped_lines"]) == 4


def test_all_failed_report_has_no_empty_plot(tmp_path):
    row = {"key": "k", "device": "d", "model": "m", "runtime": "litert", "precision": "float", "threads": 1,
           "macs": 10, "ok": False, "error": "x"}
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(row) + "\n")
    res = CliRunner().invoke(app, ["bench", "report", str(path), "--png", str(tmp_path / "p.png")])
    assert res.exit_code == 0 and "no plot" in res.output and not (tmp_path / "p.png").exists()


def test_preflight_refuses_a_board_without_the_runtime_before_copying(models, sshd, tmp_path):
    """The board's Python lacks numpy and LiteRT: every row fails with that reason, nothing is
    copied, and the bench command exits non-zero."""
    suite, ms = models
    dev = sshd.device()
    dev.python = "/usr/bin/python3"  # Debian's Python: no numpy, no runtime
    results = ResultsFile(tmp_path / "r.jsonl")
    counts = run_suite(suite, ms, [dev], results, retries=1, log=lambda m: None)
    assert counts == {"ok": 0, "failed": 2, "skipped": 0}
    rows, _ = read_results(results.path)
    assert all("lacks numpy, litert (pre-flight check)" in r["error"] for r in rows)
    assert not Path(dev.workdir).exists()  # nothing was copied


def test_bench_exits_nonzero_when_requested_work_failed(exported, tmp_path):
    """A suite asks for a precision the export lacks: a failed row with the reason, exit 1."""
    name, folder, _ = exported[0]
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    (partial / "model_int8.tflite").unlink()
    suite = tmp_path / "s.toml"
    suite.write_text(f'runs = 3\nwarmup = 1\nprecisions = ["float", "int8"]\n[[models]]\nexport = "{partial}"\n')
    results = tmp_path / "r.jsonl"
    res = CliRunner().invoke(app, ["bench", "--suite", str(suite), "--device", "local", "--results", str(results)])
    assert res.exit_code == 1, res.output
    assert "1 ok, 1 failed" in res.stderr
    rows, _ = read_results(results)
    assert [r["ok"] for r in sorted(rows, key=lambda r: r["precision"])] == [True, False]
    assert "has no model_int8.tflite" in [r for r in rows if not r["ok"]][0]["error"]


@pytest.mark.parametrize("text,needle", [
    ("runs = 0\n", "key 'runs' must be between 1"),
    ('runs = "abc"\n', "key 'runs' must be an integer"),
    ("threads = [-1]\n", "key 'threads' values must be between 1"),
    ('runtime = "litert"\n', "unknown key(s) runtime"),
    ("warmup = nan\n", "key 'warmup' must be an integer"),
])
def test_suite_values_are_validated(tmp_path, text, needle):
    bad = tmp_path / "s.toml"
    bad.write_text(text + "[[models]]\nwidth = 0.5\n")
    with pytest.raises(EdgeKWSError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_suite(bad)
    bad.write_text("[[models]]\nwidth = 0.5\nwidht = 1\n")
    with pytest.raises(EdgeKWSError, match="unknown key"):
        load_suite(bad)


def test_device_urls_and_bench_numbers_are_validated(tmp_path):
    with pytest.raises(EdgeKWSError, match="between 1 and 65535"):
        make_device("ssh://pi@host:99999")
    runner = CliRunner()
    for opt, val, needle in (("--retries", "0", "--retries must be between 1 and 100"),
                             ("--backoff", "-1", "--backoff must be between 0 and 600")):
        res = runner.invoke(app, ["bench", "--suite", str(SUITE), "--device", "local", opt, val])
        assert res.exit_code == 1 and needle in res.stderr and "Traceback" not in res.output


def test_suite_sample_models_are_checked(tmp_path):
    from edgekws.bench import load_suite

    ok = load_suite(Path(__file__).resolve().parent.parent / "benchmarks" / "suites" / "costmodel.toml")
    assert {"sample": 24, "seed": 0} in ok.models
    for body, needle in (("sample = 0", "between 1 and 4096"), ("width = 0.5\nseed = 3", "seed only goes with sample"),
                         ("sample = 4\nwidth = 0.5", "exactly one of width, spec, export, sample"),
                         ('sample = "many"', "must be an integer")):
        p = tmp_path / "s.toml"
        p.write_text(f"[[models]]\n{body}\n")
        with pytest.raises(EdgeKWSError, match=needle):
            load_suite(p)


def test_a_suite_benches_the_supernet_it_names(tmp_path):
    """`supernet = "kwt"` (or `checkpoint = "file"`) exports a suite's width, spec and sample models
    from that supernet, not the default dscnn: a lab can bench, and fit its board's cost model for,
    the shipped kwt, whose rows then carry its architecture (the convolutional stem)."""
    from edgekws.assets import shipped_checkpoint
    from edgekws.fileio import sha256_file

    def suite(body: str) -> Path:
        p = tmp_path / "s.toml"
        p.write_text(f'runtimes = ["litert"]\nprecisions = ["float"]\nruns = 3\nwarmup = 1\n{body}\n'
                     "[[models]]\nwidth = 0.5\n")
        return p

    for body, needle in (('supernet = "kwt"\ncheckpoint = "x.pt"', "supernet or checkpoint, not both"),
                         ('supernet = "lstm"', "no shipped supernet for family 'lstm' (shipped: dscnn, kwt")):
        with pytest.raises(EdgeKWSError, match=needle.replace("(", r"\(")):
            load_suite(suite(body))
    missing = suite('checkpoint = "nowhere.pt"')
    with pytest.raises(EdgeKWSError, match="checkpoint 'nowhere.pt' is not a file"):
        prepare_models(load_suite(missing), missing, tmp_path / "cache")
    (tmp_path / "kwt.json").write_text(json.dumps({"family": "kwt", "channels": [16, 32], "depths": [2]}))
    mixed = suite('[[models]]\nspec = "kwt.json"')  # no supernet key: the shipped dscnn
    with pytest.raises(EdgeKWSError, match='is a kwt spec but the suite.s models come from a dscnn supernet.*supernet = "kwt"'):
        prepare_models(load_suite(mixed), mixed, tmp_path / "cache")

    path = suite('supernet = "kwt"')
    s = load_suite(path)
    models = prepare_models(s, path, tmp_path / "cache")
    (name, folder, manifest), = models
    assert name == "kwt-w32.64-d6" and folder.parent.name == f"ckpt-{sha256_file(shipped_checkpoint('kwt'))[:16]}"
    results = ResultsFile(tmp_path / "r.jsonl")
    assert run_suite(s, models, [make_device("local")], results, log=lambda m: None)["ok"] == 1
    (row,), _ = read_results(results.path)
    assert row["spec"]["family"] == "kwt" and row["arch"]["embed"] == "conv"
