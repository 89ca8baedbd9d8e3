"""The package's layering, read from the source: no import cycle inside `edgekws/`, counting
every import (module level and inside functions), and devices never import what uses them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "edgekws"


def import_graph() -> dict[str, set[str]]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in mods:  # a symbol or a submodule: the module that defines it
                    name = name.rsplit(".", 1)[0] if "." in name else ""
                if name and name != m and not m.startswith(name + "."):  # a package's own parent is not a cycle
                    graph[m].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_inside_the_package():
    graph = import_graph()
    assert "edgekws.bench" in graph and "edgekws.devices.ssh" in graph
    assert cycles(graph) == []


def test_cycle_detector_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_devices_do_not_import_their_users():
    graph = import_graph()
    users = {"edgekws.bench", "edgekws.profile", "edgekws.cli"}
    for m, deps in graph.items():
        if m.startswith("edgekws.devices"):
            assert not deps & users, (m, deps & users)


def test_checkpoints_carry_their_architecture_and_class_count(tmp_path):
    """A checkpoint rebuilds the model it was trained as (its own architecture arguments, not the
    registry's), and `info --checkpoint` sizes it with its own class count."""
    import json

    import torch
    from typer.testing import CliRunner

    from edgekws.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
    from edgekws.cli import app
    from edgekws.features import FeatureConfig
    from edgekws.models import get_family

    fam = get_family("dscnn")
    labels = tuple(f"w{i}" for i in range(35))
    torch.manual_seed(0)
    arch = {"stem_kernel": [10, 4], "stem_stride": [2, 2], "stage_strides": [2, 2, 2], "bias": False, "dropout": 0.3}
    from dataclasses import replace

    net = replace(fam, arch=replace(fam.arch, dropout=0.3)).supernet(35, (49, 40))
    ck = Checkpoint("dscnn", fam.space, FeatureConfig(), labels, net.state_dict(), calibration=torch.zeros(4, 49, 40),
                    arch=arch)
    path = tmp_path / "ck35.pt"
    save_checkpoint(path, ck)
    loaded = load_checkpoint(path)
    assert loaded.arch == arch and loaded.family_def().arch.dropout == 0.3
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "edgekws.supernet/4"

    res = CliRunner().invoke(app, ["info", "--checkpoint", str(path), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["subnets"]
    largest = [r for r in rows if r["label_width"] == "1" and r["label_depth"] == "3"][0]
    head = 224 * 35 + 35  # the classifier of the largest subnet at 35 classes
    twelve = [r for r in json.loads(CliRunner().invoke(app, ["info", "--family", "dscnn", "--json"]).stdout)["subnets"]
              if r["label_width"] == "1" and r["label_depth"] == "3"][0]
    assert largest["params"] - twelve["params"] == head - (224 * 12 + 12)

    payload["arch"] = {**arch, "kernel_of_doom": 3}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="kernel_of_doom"):
        load_checkpoint(path).supernet()
