"""`make sim`'s program (sim/main.py) on a few images: the report it writes."""

import json

import pytest

from systolic.sim.main import main

KEYS = {"accuracy_float", "accuracy_golden", "accuracy_rtl", "bit_exact", "images", "cycles",
        "mac_utilization", "sim_cycles_per_s"}


@pytest.mark.verilator
@pytest.mark.xdist_group("accel-default")
def test_sim_report_on_a_few_images(tmp_path):
    out = tmp_path / "sim.json"
    assert main(["--models", "mlp", "--images", "24", "--batch", "12", "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert KEYS <= set(report)
    assert report["bit_exact"] is True
    assert report["images"] == 24
    assert report["accuracy_rtl"] == report["accuracy_golden"] > 0.8
    assert 0 < report["mac_utilization"] <= 1
    assert report["cycles"] > 0 and report["sim_cycles_per_s"] > 0
    (net,) = report["networks"]
    assert net["programs"] == 2 and net["agreement_onnxruntime"] >= 0.99


def test_sim_bad_preset_is_one_line(capsys):
    assert main(["--preset", "huge"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown preset 'huge'" in err
