#!/usr/bin/env python3
"""edgekws on-board runner: time TFLite/ONNX models on this machine and print JSON.

Self-contained on purpose — copy this one file to a board and run it. It needs only the Python
standard library, numpy (1.x or 2.x) and one runtime: LiteRT (`ai_edge_litert`), `tflite_runtime`
or `onnxruntime`. No torch, no TensorFlow. Python 3.9+.

    python3 runner.py --model model_int8.tflite --model model_float.onnx \
        [--runtime auto|litert|onnxruntime] [--threads 1] [--warmup 20] [--runs 200] \
        [--input features.npy [--all-inputs]] [--op-profile]

Each model is measured in a fresh child process (so peak-RSS figures belong to that model alone)
and one JSON document is printed: per model, load time, latency (median, p90, p95, p99, mean,
min), resident memory split into the runtime library, the model (weights and tensor arena) and
what inference added, the model's size, and — for onnxruntime with
--op-profile — time per operator type. LiteRT's Python API exposes no per-operator profiler; the
result says so instead of guessing.

With `--input X.npy --all-inputs` every row of X is also run once more after timing and the raw
outputs and top-1 classes are reported, so two machines (an x86 host and an Arm board, or qemu)
can be checked to give the same answers. Float rows are quantized with the model's own input
scale and zero point when the model takes integers.

Children are started with this same interpreter. Under qemu-user without binfmt_misc the kernel
cannot exec an aarch64 interpreter directly, so `EDGEKWS_RUNNER_EXEC_PREFIX` (a JSON list, e.g.
`["qemu-aarch64"]`) is put in front of the child's command line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

RUNNER_VERSION = 1


def rss_kb() -> dict:
    """Current and peak resident set size from /proc (Linux), in KiB."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return {"rss": out.get("VmRSS"), "peak": out.get("VmHWM")}


def percentiles(samples_ms: list) -> dict:
    import numpy as np

    a = np.asarray(samples_ms, dtype=np.float64)
    return {
        "median": round(float(np.median(a)), 4),
        "p90": round(float(np.percentile(a, 90)), 4),
        "p95": round(float(np.percentile(a, 95)), 4),
        "p99": round(float(np.percentile(a, 99)), 4),
        "mean": round(float(a.mean()), 4),
        "min": round(float(a.min()), 4),
        "runs": int(a.size),
    }


def pick_runtime(model: str, requested: str) -> str:
    if model.endswith(".onnx"):
        return "onnxruntime"
    if requested in ("auto", "litert", "tflite"):
        return "litert"
    raise SystemExit("runtime '%s' cannot run %s" % (requested, model))


def tflite_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    from tflite_runtime.interpreter import Interpreter  # type: ignore

    return Interpreter, "tflite_runtime"


def versions() -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine(), "runner": RUNNER_VERSION}
    try:
        import numpy

        out["numpy"] = numpy.__version__
    except ImportError:
        pass
    for mod in ("ai_edge_litert", "tflite_runtime", "onnxruntime"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "present")
        except ImportError:
            pass
    return out


def load_inputs(path, shape, dtype, quant=None):
    """Rows of `path` shaped like the model's input: float rows are quantized with the input's
    (scale, zero point) when the model takes integers — the same rule the firmware applies."""
    import numpy as np

    x = np.load(path)
    x = x.reshape((x.shape[0],) + tuple(shape[1:]))
    if np.issubdtype(dtype, np.integer) and np.issubdtype(x.dtype, np.floating):
        scale, zero = quant if quant else (0.0, 0)
        if not scale:
            raise ValueError("integer model input without a quantization scale")
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / scale) + zero, info.min, info.max)
    return x.astype(dtype)


def make_input(shape, dtype, path, quant=None):
    import numpy as np

    if path:
        return load_inputs(path, shape, dtype, quant)[:1]
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def measure_one(args) -> dict:
    """Measure one model in this process."""
    import numpy as np
    import numpy.random  # noqa: F401 — the runner's own imports, before the first snapshot: numpy
    # loads numpy.random lazily (~6.7 MB), which would otherwise be counted as the model's memory

    before = rss_kb()
    result = {"model": os.path.basename(args.model), "path": args.model, "threads": args.threads,
              "model_bytes": os.path.getsize(args.model)}
    runtime = pick_runtime(args.model, args.runtime)
    if runtime == "litert":
        cls, name = tflite_interpreter()
    else:
        import onnxruntime as ort
    with_runtime = rss_kb()  # the runtime library is loaded; what follows is the model's
    t0 = time.perf_counter()
    if runtime == "litert":
        interp = cls(model_path=args.model, num_threads=args.threads)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        shape, dtype, quant = tuple(inp["shape"]), inp["dtype"], tuple(inp.get("quantization") or (0.0, 0))
        x = make_input(shape, dtype, args.input, quant)
        result["precision"] = "int8" if np.issubdtype(inp["dtype"], np.integer) else "float"

        def run(x=x):
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            return interp.get_tensor(out["index"])
    else:
        name = "onnxruntime"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # ORT's operator profiler inflates latency 1.9-4.8x on these small models: timing always
        # runs without it, and per-operator times come from a separate pass (below)
        opts.enable_profiling = bool(args.profile_while_timing)
        sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
        i0 = sess.get_inputs()[0]
        shape, dtype, quant = tuple(d if isinstance(d, int) else 1 for d in i0.shape), np.float32, None
        x = make_input(shape, dtype, args.input)

        def run(x=x):
            return sess.run(None, {i0.name: x})[0]
    result["runtime"] = name
    result["load_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    after_load = rss_kb()
    for _ in range(args.warmup):
        run()
    samples = []
    for _ in range(args.runs):
        t = time.perf_counter()
        y = run()
        samples.append((time.perf_counter() - t) * 1000)
    peak = rss_kb()
    result["latency_ms"] = percentiles(samples)
    known = bool(peak["peak"] and before["rss"] and after_load["rss"] and with_runtime["rss"])
    result["rss_kb"] = {
        "before": before["rss"], "with_runtime": with_runtime["rss"], "after_load": after_load["rss"], "peak": peak["peak"],
        "runtime_library": (with_runtime["rss"] - before["rss"]) if known else None,
        "model_load": (after_load["rss"] - with_runtime["rss"]) if known else None,  # weights + tensor arena
        "inference_rise": max(0, peak["peak"] - after_load["rss"]) if known else None,
        "model_total": max(0, peak["peak"] - with_runtime["rss"]) if known else None,  # what the budget checks
    }
    result["output_argmax"] = int(np.asarray(y).reshape(-1).argmax())
    if runtime == "onnxruntime":  # after the memory snapshots: reading the graph may import onnx
        quantized = any(n.op_type == "QuantizeLinear" for n in _onnx_nodes(args.model))
        result["precision"] = "int8" if quantized else "float"
    if runtime == "onnxruntime" and args.profile_while_timing:
        result["op_profile_ms"] = _ort_op_profile(sess.end_profiling(), args.warmup + args.runs)
        result["timed_with_profiler"] = True
    elif runtime == "onnxruntime" and args.op_profile:
        popts = ort.SessionOptions()
        popts.intra_op_num_threads, popts.inter_op_num_threads, popts.log_severity_level = args.threads, 1, 3
        popts.enable_profiling = True
        psess = ort.InferenceSession(args.model, popts, providers=["CPUExecutionProvider"])
        calls = max(1, min(args.runs, 100))
        for _ in range(calls):
            psess.run(None, {i0.name: x})
        result["op_profile_ms"] = _ort_op_profile(psess.end_profiling(), calls)
    elif args.op_profile:
        result["op_profile_ms"] = None
        result["op_profile_note"] = "LiteRT's Python API has no per-operator profiler"
    if args.input and args.all_inputs:  # answers, for comparing machines (after timing and profiling: no effect on them)
        rows = [np.asarray(run(xi[None])).reshape(-1) for xi in load_inputs(args.input, shape, dtype, quant)]
        result["outputs"] = [r.tolist() for r in rows]
        result["top1"] = [int(r.argmax()) for r in rows]
    result["ok"] = True
    return result


def _onnx_nodes(path):
    try:
        import onnx

        return list(onnx.load(path).graph.node)
    except ImportError:  # no onnx package on the board: fall back to a byte search
        with open(path, "rb") as f:
            data = f.read()

        class N:
            op_type = "QuantizeLinear" if b"QuantizeLinear" in data else ""

        return [N()]


def _ort_op_profile(trace_path: str, calls: int) -> dict:
    with open(trace_path) as f:
        events = json.load(f)
    os.unlink(trace_path)
    per_op: dict = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + e.get("dur", 0) / 1000.0
    return {k: round(v / max(1, calls), 4) for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="edgekws on-board runner")
    ap.add_argument("--model", action="append", required=True, help="a .tflite or .onnx file (repeatable)")
    ap.add_argument("--runtime", default="auto", choices=["auto", "litert", "tflite", "onnxruntime"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--input", default=None, help=".npy of inputs (float rows are quantized for integer models); the first row is timed")
    ap.add_argument("--all-inputs", action="store_true", help="also report outputs and top-1 for every row of --input")
    ap.add_argument("--op-profile", action="store_true", help="per-operator times, from a separate pass after timing")
    ap.add_argument("--profile-while-timing", action="store_true",
                    help="time with ORT's profiler on (only to measure its overhead: benchmarks/profile_overhead.py)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        args.model = args.model[0]
        try:
            print(json.dumps(measure_one(args)))
        except Exception as exc:  # report, never crash the suite
            print(json.dumps({"model": os.path.basename(args.model), "ok": False,
                              "error": "%s: %s" % (type(exc).__name__, exc)}))
        return 0
    prefix = json.loads(os.environ.get("EDGEKWS_RUNNER_EXEC_PREFIX") or "[]")
    results = []
    for model in args.model:
        cmd = prefix + [sys.executable, os.path.abspath(__file__), "--one", "--model", model, "--runtime", args.runtime,
               "--threads", str(args.threads), "--warmup", str(args.warmup), "--runs", str(args.runs)]
        if args.input:
            cmd += ["--input", args.input] + (["--all-inputs"] if args.all_inputs else [])
        if args.op_profile:
            cmd.append("--op-profile")
        if args.profile_while_timing:
            cmd.append("--profile-while-timing")
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode == 0 and lines:
            results.append(json.loads(lines[-1]))
        else:
            results.append({"model": os.path.basename(model), "ok": False, "crashed": True,
                            "error": "exit %d: %s" % (proc.returncode, proc.stderr.strip()[-300:])})
    print(json.dumps({"device": versions(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
