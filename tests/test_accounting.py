"""Accounting against a published figure and against hand counts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgekws.accounting import account
from edgekws.cli import app
from edgekws.models import get_family
from edgekws.spec import SubnetSpec


def test_mlperf_tiny_dscnn_has_23756_parameters():
    """MLPerf Tiny's KWS reference DS-CNN: 49×10 input, 10×4 stride-2 conv of 64, four DS blocks of
    64, average pool, dense 12, biases and BN — 23,756 trainable parameters (published)."""
    acc = account(get_family("dscnn_mlperf").space.largest())
    assert acc.params == 23_756
    # folding removes each BN's scale and shift: 9 BNs of 64 channels (convs already have biases)
    assert acc.params_deployed == 23_756 - 9 * 64 * 2
    # stem: 24×5 outputs × 64 × (10·4) MACs (edgekws pads the 10×4 kernel symmetrically, 4 rows
    # each side, where TF's 'same' pads 4 and 5 and yields 25 rows; parameters are unaffected);
    # each block: dw 24·5·64·9 + pw 24·5·64·64; dense 64·12
    stem = 24 * 5 * 64 * 40
    block = 24 * 5 * 64 * 9 + 24 * 5 * 64 * 64
    assert acc.macs == stem + 4 * block + 64 * 12


def test_kwt_macs_by_hand():
    spec = SubnetSpec("kwt", (32, 64), (2,))
    acc = account(spec)
    t, d, m, f = 50, 32, 64, 40
    per_layer = 4 * t * d * d + 2 * t * t * d + 2 * t * d * m
    assert acc.macs == 49 * f * d + 2 * per_layer + d * 12
    assert acc.params == acc.params_deployed  # no BatchNorm to fold


@pytest.mark.parametrize("family", ["dscnn", "kwt"])
def test_costs_grow_with_width(family):
    space = get_family(family).space
    costs = [account(space.uniform(m)) for m in (0.25, 0.5, 0.75, 1.0)]
    for small, big in zip(costs, costs[1:]):
        assert small.params < big.params and small.macs < big.macs
        assert small.peak_activation_elems <= big.peak_activation_elems
        assert small.size_int8_bytes < big.size_float_bytes
    assert all(c.within_budget for c in costs)


def test_info_cli_table_and_json():
    runner = CliRunner()
    res = runner.invoke(app, ["info", "--family", "dscnn"])
    assert res.exit_code == 0, res.output
    assert "dscnn-w64.96.160.224-d2.3.3" in res.output and "239,212" in res.output and "✓" in res.output
    res = runner.invoke(app, ["info", "--family", "kwt", "--json"])
    data = json.loads(res.stdout)
    assert data["space"]["channel_names"] == ["embed", "mlp"]
    assert all(r["within_budget"] for r in data["subnets"])
    assert len(data["subnets"]) == 20  # 4 widths × 5 depths
    from edgekws.assets import SHIPPED_SUPERNETS

    # without a checkpoint, info prices what `train --family kwt` builds: the recipe's stem included
    from edgekws.checkpoint import load_checkpoint

    shipped = load_checkpoint(SHIPPED_SUPERNETS["kwt"])
    largest = next(r for r in data["subnets"] if r["name"] == "kwt-w64.128-d6")
    assert largest["params"] == account(shipped.space.largest(), family=shipped.family_def()).params
    assert largest["params"] > account(shipped.space.largest()).params  # the registered (linear) kwt


def test_info_cli_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["info", "--family", "lstm"])
    assert res.exit_code == 1 and "valid: dscnn, dscnn_mlperf, kwt" in res.stderr
    bad = tmp_path / "s.json"
    bad.write_text('{"family": "dscnn", "widths": [64, 96, 100, 224], "depths": [2, 3, 3]}')
    res = runner.invoke(app, ["info", "--spec", str(bad)])
    assert res.exit_code == 1 and "valid: 40, 80, 120, 160" in res.stderr
    bad.write_text("{oops")
    res = runner.invoke(app, ["info", "--spec", str(bad)])
    assert res.exit_code == 1 and "malformed spec JSON" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize("family, arch", [("dscnn", {}), ("kwt", {}), ("dscnn_mlperf", {}), ("kwt", {"embed": "conv"})])
def test_cost_table_equals_the_traced_torch_model(family, arch):
    """The torch-free cost table (`edgekws.costs`, each family's `ops`) gives exactly what building
    the real model, folding BN and tracing one forward gives — for the extremes and random specs,
    at 12 and 35 classes, and for an architecture choice (kwt's convolutional stem)."""
    from dataclasses import replace

    import numpy as np

    from edgekws.accounting import traced_account

    fam = get_family(family)
    fam = replace(fam, arch=replace(fam.arch, **arch))
    rng = np.random.default_rng(7)
    for spec in [fam.space.largest(), fam.space.smallest(), *(fam.space.sample(rng) for _ in range(6))]:
        for classes in (12, 35):
            assert account(spec, classes, family=fam) == traced_account(spec, classes, family=fam), (spec.name, classes)


def test_info_does_not_import_torch():
    """`edgekws info --family` reads sizes from the cost table: no torch import, no model built."""
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from edgekws.cli import app; "
            "r = CliRunner().invoke(app, ['info', '--family', 'dscnn', '--json']); "
            "assert r.exit_code == 0, r.output; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
