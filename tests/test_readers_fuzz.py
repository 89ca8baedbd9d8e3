"""Property-based tests over every reader of user-supplied files.

For each reader: arbitrary bytes, and structurally mutated valid files (a value replaced by
another type or an out-of-range number, a key removed, the document nested or truncated), must
give either a valid result or the project's own error type (`EdgeKWSError`) — never another
exception. Runs in CI: the example counts keep the whole module to about a minute.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekws.errors import EdgeKWSError

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

# Values a mutation may put in place of a valid one: wrong types, out-of-range and non-finite
# numbers, markup-like text, deep nesting.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["[/]", "[bold]x", "", "\x00"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
TOML_LITERALS = st.sampled_from(['"abc"', '"[/]"', "-1", "0", "nan", "inf", "-inf", "1e400", "[]", "[-1]", '["x"]',
                                 "{}", "true", "3.5", "9999999999999999999", '"\\u00ff"', "[[1]]", "{ a = 1 }"])


def _check(fn, name: str, content: bytes) -> None:
    """Write `content` as `name` in a fresh folder, run the reader on it, remove the folder: the
    reader must return or raise EdgeKWSError with a one-line message."""
    folder = Path(tempfile.mkdtemp(prefix="edgekws-fuzz-"))
    try:
        path = folder / name
        path.write_bytes(content)
        try:
            fn(path)
        except EdgeKWSError as exc:
            assert "\n" not in str(exc).strip(), str(exc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _mutate_json(doc, data) -> object:
    """Replace, delete or wrap one node of a JSON document (chosen by hypothesis)."""
    if not isinstance(doc, (dict, list)) or not doc or data.draw(st.integers(0, 4)) == 0:
        return data.draw(st.sampled_from([data.draw(JSON_VALUES), [doc], {"x": doc}]))
    keys = list(doc) if isinstance(doc, dict) else list(range(len(doc)))
    k = data.draw(st.sampled_from(keys))
    out = dict(doc) if isinstance(doc, dict) else list(doc)
    action = data.draw(st.integers(0, 2))
    if action == 0 and isinstance(out, dict):
        del out[k]
    elif action == 1:
        out[k] = data.draw(JSON_VALUES)
    else:
        out[k] = _mutate_json(doc[k], data)
    return out


def _mutate_toml(text: str, data) -> str:
    lines = text.splitlines()
    assigns = [i for i, ln in enumerate(lines) if "=" in ln and not ln.lstrip().startswith("#")]
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.integers(0, 3))
        i = data.draw(st.sampled_from(assigns))
        if action == 0:
            key = lines[i].split("=")[0]
            lines[i] = f"{key}= {data.draw(TOML_LITERALS)}"
        elif action == 1:
            lines[i] = ""
        elif action == 2:
            lines.insert(i, f"{data.draw(st.sampled_from(['runtime', 'extra', 'threads', 'runs']))} = {data.draw(TOML_LITERALS)}")
        else:
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))]
    return "\n".join(lines) + "\n"


# -- text readers ---------------------------------------------------------------------------------

def _load_target(p):
    from edgekws.targets import load_target

    t = load_target(p)
    assert t.threads >= 1 and all(math.isfinite(v) and v > 0 for v in vars(t.budgets).values())


def _load_suite(p):
    from edgekws.bench import load_suite

    s = load_suite(p)
    assert s.runs >= 1 and all(t >= 1 for t in s.threads)


def _load_spec(p):
    from edgekws.info import load_spec_file

    load_spec_file(p)


def _load_manifest(p):
    from edgekws.manifest import load_manifest

    load_manifest(p.parent)


TARGET_TEXT = (ROOT / "edgekws/assets/targets/pi4.toml").read_text()
SUITE_TEXT = (ROOT / "benchmarks/suites/smoke.toml").read_text()
SPEC_DOC = {"family": "dscnn", "widths": [16, 24, 40, 56], "depths": [2, 3, 3]}
MANIFEST_DOC = {"name": "m", "accounting": {"params": 10, "macs": 20}, "validation": {"accuracy": {"onnx float": 0.9}},
                "quantization": {"onnx": {"output": {"scale": 0.1, "zero_point": 0}}}}


@pytest.mark.parametrize("reader,name", [(_load_target, "t.toml"), (_load_suite, "s.toml"), (_load_spec, "s.json"),
                                         (_load_manifest, "manifest.json")])
@SETTINGS
@given(blob=st.binary(max_size=300))
def test_text_readers_on_arbitrary_bytes(reader, name, blob):
    _check(reader, name, blob)


@pytest.mark.parametrize("reader,text", [(_load_target, TARGET_TEXT), (_load_suite, SUITE_TEXT)])
@SETTINGS
@given(data=st.data())
def test_toml_readers_on_mutated_files(reader, text, data):
    _check(reader, "f.toml", _mutate_toml(text, data).encode())


@pytest.mark.parametrize("reader,doc,name", [(_load_spec, SPEC_DOC, "s.json"), (_load_manifest, MANIFEST_DOC, "manifest.json")])
@SETTINGS
@given(data=st.data())
def test_json_readers_on_mutated_files(reader, doc, name, data):
    _check(reader, name, json.dumps(_mutate_json(doc, data)).encode())


def test_json_nested_too_deeply_is_one_line(tmp_path):
    from edgekws.manifest import load_manifest

    (tmp_path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(EdgeKWSError, match="nested too deeply|expected a JSON object"):
        load_manifest(tmp_path)


# -- results JSONL --------------------------------------------------------------------------------

ROW = {"key": "local|m|litert|float|t1", "device": "local", "model": "m", "runtime": "litert", "precision": "float",
       "threads": 1, "macs": 100, "ok": True, "latency_ms": {"median": 1.0, "p95": 1.5}}


@SETTINGS
@given(data=st.data(), blob=st.binary(max_size=200))
def test_results_reader_keeps_every_valid_row(data, blob):
    """Valid rows interleaved with garbage and mutated rows: every valid row is read, and each
    other non-empty line is named."""
    from edgekws.bench import read_jsonl, row_problem

    lines, valid = [], 0
    for i in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.integers(0, 2))
        if kind == 0:
            lines.append(json.dumps({**ROW, "key": f"k{i}"}).encode())
            valid += 1
        elif kind == 1:
            row = _mutate_json(ROW, data)
            lines.append(json.dumps(row).encode())
            valid += row_problem(row) is None
        else:
            lines.append(blob.replace(b"\n", b" "))
            try:
                valid += row_problem(json.loads(blob.replace(b"\n", b" ").decode())) is None
            except (ValueError, RecursionError):
                pass
    content = b"\n".join(lines) + data.draw(st.sampled_from([b"\n", b""]))

    def check(path):
        rows, bad = read_jsonl(path)
        assert len(rows) == valid
        assert len(bad) == sum(1 for ln in lines if ln.strip()) - valid

    _check(check, "r.jsonl", content)


# -- binary readers -------------------------------------------------------------------------------

def _mutate_bytes(raw: bytes, data) -> bytes:
    action = data.draw(st.integers(0, 2))
    if action == 0:
        return raw[: data.draw(st.integers(0, len(raw)))]
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] = data.draw(st.integers(0, 255))
    if action == 2:
        b += data.draw(st.binary(max_size=64))
    return bytes(b)


def _wav_bytes() -> bytes:
    from edgekws.audio import wav_bytes

    return wav_bytes((np.sin(np.arange(1600) / 5) * 8000).astype(np.int16))


@SETTINGS
@given(data=st.data())
def test_wav_reader_on_mutated_files(data):
    from edgekws.audio import read_wav

    _check(read_wav, "x.wav", _mutate_bytes(_wav_bytes(), data))


@SETTINGS
@given(sr=st.integers(0, 2**32 - 1))
def test_wav_reader_on_any_sample_rate(sr):
    import struct

    from edgekws.audio import read_wav

    b = bytearray(_wav_bytes())
    b[24:28] = struct.pack("<I", sr)
    _check(read_wav, "x.wav", bytes(b))


def _small_pack_bytes(**override) -> bytes:
    arrays = {"features": np.zeros((4, 49, 40), np.float16), "targets": np.array([0, 1, 2, 3], np.int16),
              "keys": np.array(["a", "b", "c", "d"]), "labels": np.array(["x", "y", "z", "w"]),
              "waves": np.zeros((2, 16000), np.int16)}
    arrays.update(override)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@SETTINGS
@given(data=st.data())
def test_pack_reader_on_mutated_files(data):
    from edgekws.assets import load_pack

    _check(load_pack, "p.npz", _mutate_bytes(_small_pack_bytes(), data))


@SETTINGS
@given(key=st.sampled_from(["features", "targets", "keys", "labels", "waves"]),
       value=st.sampled_from([np.zeros(0), np.zeros((4, 49)), np.full((4, 49, 40), np.nan), np.array([9, 9, 9, 9]),
                              np.array(["a"]), np.zeros((5, 3, 2, 1)), np.array([-1, 0, 0, 0])]))
def test_pack_reader_on_wrong_arrays(key, value):
    from edgekws.assets import load_pack

    _check(load_pack, "p.npz", _small_pack_bytes(**{key: value}))


@pytest.fixture(scope="module")
def shipped_payload():
    import torch

    from edgekws.assets import DEFAULT_CHECKPOINT

    return torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)


CKPT_VALUES = st.sampled_from(["nan-weight", "shape", "none", "string", "empty-dict", "list", "nan-calib",
                               "calib-shape", "int-tensor"])


def _bad_value(kind: str, original):
    import torch

    if kind == "nan-weight" and isinstance(original, torch.Tensor) and original.is_floating_point():
        return torch.full_like(original, float("nan"))
    if kind == "shape" and isinstance(original, torch.Tensor):
        return torch.zeros(3, 1)
    if kind == "int-tensor":
        return torch.zeros(2, dtype=torch.int64)
    return {"none": None, "string": "[/]", "empty-dict": {}, "list": [1, 2]}.get(kind, original)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_checkpoint_reader_on_mutated_payloads(shipped_payload, data):
    """A well-formed file with wrong types, shapes or NaN weights: refused when loaded (or when
    the weights are put in the supernet), never deep inside an export."""
    import torch

    payload = dict(shipped_payload)
    kind = data.draw(CKPT_VALUES)
    where = data.draw(st.sampled_from(["top", "state_dict", "calibration", "space", "features"]))
    if where == "top":
        k = data.draw(st.sampled_from(sorted(payload)))
        payload[k] = _bad_value(kind, payload[k])
    elif where == "state_dict":
        sd = dict(payload["state_dict"])
        k = data.draw(st.sampled_from(sorted(sd)))
        sd[k] = _bad_value(kind, sd[k])
        payload["state_dict"] = sd
    elif where == "calibration":
        c = payload["calibration"]
        payload["calibration"] = (torch.full_like(c, float("nan")) if kind == "nan-calib"
                                  else c[:, :3] if kind == "calib-shape" else _bad_value(kind, c))
    else:
        d = dict(payload[where])
        k = data.draw(st.sampled_from(sorted(d)))
        d[k] = _bad_value(kind, d[k])
        payload[where] = d
    _check_payload(payload)


def _check_payload(payload) -> None:
    import torch

    from edgekws.checkpoint import load_checkpoint

    buf = io.BytesIO()
    torch.save(payload, buf)

    def load(path):
        ck = load_checkpoint(path)
        ck.supernet()

    _check(load, "ck.pt", buf.getvalue())


@pytest.mark.parametrize("kind", ["shape", "none", "string", "empty-dict", "list", "int-tensor"])
def test_checkpoint_reader_on_every_top_level_field(shipped_payload, kind):
    """Every top-level field replaced by every wrong type, exhaustively: the sampled test above
    once missed `sampling` holding a tensor (an IndexError escaped the reader)."""
    for key in sorted(shipped_payload):
        payload = dict(shipped_payload)
        payload[key] = _bad_value(kind, payload[key])
        _check_payload(payload)


@SETTINGS
@given(data=st.data())
def test_checkpoint_reader_on_damaged_bytes(data):
    from edgekws.assets import DEFAULT_CHECKPOINT
    from edgekws.checkpoint import load_checkpoint

    _check(load_checkpoint, "ck.pt", _mutate_bytes(DEFAULT_CHECKPOINT.read_bytes(), data))


# -- corpus files ---------------------------------------------------------------------------------

@SETTINGS
@given(blob=st.binary(max_size=200), which=st.sampled_from(["validation_list.txt", "testing_list.txt", "corpus.json"]))
def test_corpus_text_files_on_arbitrary_bytes(blob, which):
    """A Speech Commands folder whose list files or corpus.json hold arbitrary bytes."""
    from edgekws.audio import write_wav
    from edgekws.data import SpeechCommands, dataset_stats

    root = Path(tempfile.mkdtemp(prefix="edgekws-fuzz-"))
    try:
        (root / "yes").mkdir()
        write_wav(root / "yes" / "a_nohash_0.wav", np.zeros(16000, np.float32))
        (root / "testing_list.txt").write_text("yes/a_nohash_0.wav\n")
        (root / which).write_bytes(blob)
        try:
            dataset_stats(SpeechCommands.open(root))
        except EdgeKWSError:
            pass
    finally:
        shutil.rmtree(root, ignore_errors=True)


@SETTINGS
@given(blob=st.binary(max_size=400))
def test_synth_partial_meta_on_arbitrary_bytes(blob):
    """An interrupted synth's progress file, damaged: rows that are not valid are dropped (their
    clips are made again); reading never fails."""
    from edgekws.synth import _read_partial_meta

    def check(path):
        rows = _read_partial_meta(path)
        assert all(len(r["sha256"]) == 64 for r in rows.values())

    _check(check, "meta.partial.csv", blob)


def test_checkpoint_with_one_zeroed_byte_is_one_error():
    """A case the sampled test above drew on the v4 checkpoint: byte 6166 set to 0 makes torch's
    weights-only unpickler raise TypeError ("unhashable type: 'dict'"), which escaped the reader."""
    from edgekws.assets import DEFAULT_CHECKPOINT
    from edgekws.checkpoint import load_checkpoint

    raw = bytearray(DEFAULT_CHECKPOINT.read_bytes())
    raw[6166] = 0
    _check(load_checkpoint, "ck.pt", bytes(raw))  # the project's own error or a valid result, nothing else


@pytest.mark.parametrize("doc", [
    {**MANIFEST_DOC, "quantization": {"\n": None}},  # found by the mutation test above
    {**MANIFEST_DOC, "validation": {"accuracy": {"onnx\nfloat": "high"}}},
    {**MANIFEST_DOC, "validation": {"accuracy": {"tab\there\r": 2.0}}},  # out of range
])
def test_a_key_with_control_characters_is_shown_escaped_on_one_line(tmp_path, doc):
    """A document's own keys go into the error message; a newline in one must not split it."""
    from edgekws.manifest import load_manifest

    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(EdgeKWSError) as exc:
        load_manifest(tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and "\r" not in msg and "\t" not in msg, msg
    assert "\\n" in msg or "'validation.accuracy.tab\\there\\r'" in msg, msg


def test_a_toml_key_with_a_newline_is_shown_escaped_on_one_line(tmp_path):
    """TOML's quoted keys may hold escapes: `"runs\\nx" = 1` is a key with a newline in it; a
    suite's and a target's unknown keys are named escaped."""
    from edgekws.bench import load_suite
    from edgekws.targets import load_target

    for load, text in ((load_suite, '"runs\\nx" = 1\n' + SUITE_TEXT),
                       (load_suite, SUITE_TEXT.replace("[[models]]\n", '[[models]]\n"a\\nb" = 1\n', 1)),
                       (load_target, '"cpu\\nx" = 1\n' + TARGET_TEXT),
                       (load_target, TARGET_TEXT.replace("[budgets]\n", '[budgets]\n"a\\nb" = 1\n', 1))):
        (tmp_path / "f.toml").write_text(text)
        with pytest.raises(EdgeKWSError) as exc:
            load(tmp_path / "f.toml")
        assert "\n" not in str(exc.value) and "\\n" in str(exc.value), str(exc.value)


def test_a_spec_naming_a_family_with_a_newline_is_one_line(tmp_path):
    """The family a spec file names reaches the registry's error as written: escaped there too."""
    from typer.testing import CliRunner

    from edgekws.cli import app

    (tmp_path / "s.json").write_text(json.dumps({"family": "x\ny", "channels": [16, 24, 40, 56], "depths": [2, 3, 3]}))
    res = CliRunner().invoke(app, ["info", "--spec", str(tmp_path / "s.json")])
    assert res.exit_code == 1 and res.stderr == "error: unknown family 'x\\ny' (valid: dscnn, dscnn_mlperf, kwt)\n", res.output
