"""`systolic compile` and `systolic run` on the golden device."""

import numpy as np
import pytest

import systolic.commands  # noqa: F401  (registers the subcommands)
from systolic.cli import EXIT_BAD_INPUT, main
from systolic.compiler.package import load
from systolic.zoo import build_models, digits_split


@pytest.fixture(scope="module")
def onnx_path():
    return build_models("build/models")["mlp"].quantized["qdq_int8_perchannel"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "x.npy"
    np.save(path, digits_split()[2][:21])
    return path


def test_compile_then_run(onnx_path, images, tmp_path, capsys):
    sysm = tmp_path / "mlp.sysm"
    assert main(["compile", str(onnx_path), "-o", str(sysm), "--preset", "tiny",
                 "--batch", "8"]) == 0
    out = capsys.readouterr().out
    assert "tiny, batch 8, 2 ops on the accelerator, 0 on the host" in out
    result = tmp_path / "logits.npy"
    assert main(["run", str(sysm), "--device", "golden", "--input", str(images),
                 "--output", str(result)]) == 0
    out = capsys.readouterr().out
    assert "21 samples on golden in 3 program runs" in out
    got = np.load(result)
    want = load(sysm).run({"input": np.load(images)})[0]["logits"]
    assert got.dtype == np.float32 and got.shape == (21, 10)
    np.testing.assert_array_equal(got, want)


def _one_error_line(capsys, status):
    err = capsys.readouterr().err
    assert status == EXIT_BAD_INPUT
    assert err.count("\n") == 1 and err.startswith("systolic: error: "), err
    return err


def test_bad_inputs_exit_2_with_one_line(onnx_path, images, tmp_path, capsys):
    sysm = tmp_path / "m.sysm"
    assert main(["compile", str(onnx_path), "-o", str(sysm)]) == 0
    capsys.readouterr()
    err = _one_error_line(capsys, main(["compile", str(images), "-o", str(tmp_path / "x")]))
    assert "not an ONNX model" in err
    err = _one_error_line(capsys, main(["run", str(images), "--input", str(images)]))
    assert "not a compiled model" in err
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 5), np.float32))
    err = _one_error_line(capsys, main(["run", str(sysm), "--input", str(wrong)]))
    assert "must have shape (N, 64)" in err
    err = _one_error_line(capsys, main(["run", str(sysm), "--input", str(tmp_path / "no.npy")]))
    assert "No such file" in err
    err = _one_error_line(capsys, main(["run", str(sysm), "--input", f"other={images}"]))
    assert "no input 'other'" in err
    err = _one_error_line(capsys, main(["run", str(sysm), "--device", "fpga",
                                        "--input", str(images)]))
    assert "unknown device 'fpga'" in err
    err = _one_error_line(capsys, main(["compile", str(onnx_path), "-o", str(sysm),
                                        "--batch", "0"]))
    assert "--batch must be at least 1" in err
