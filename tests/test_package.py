"""The .sysm compiled-model file: round trip and clear errors for damaged files."""

import io
import json
import zipfile

import numpy as np
import pytest

from systolic.compiler.onnx_compile import compile_onnx
from systolic.compiler.package import VERSION, PackageError, load
from systolic.config import preset
from systolic.zoo import build_models, digits_split


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = build_models("build/models")["cnn"].quantized["qoperator_uint8_perchannel"]
    model = compile_onnx(path, preset("tiny"), batch=4)
    out = tmp_path_factory.mktemp("sysm") / "cnn.sysm"
    model.save(out)
    return model, out


def _images(n):
    return digits_split()[2][:n].reshape(n, 1, 8, 8)


def test_round_trip_gives_the_same_model_and_bits(saved):
    model, path = saved
    again = load(path)
    assert again.config == model.config and again.config.name == "tiny"
    assert again.batch == 4
    assert again.inputs == model.inputs and again.outputs == model.outputs
    assert [s.kind for s in again.stages] == [s.kind for s in model.stages]
    for a, b in zip(again.stages, model.stages, strict=True):
        assert bytes(a.program.image) == bytes(b.program.image)
        assert a.layouts == b.layouts
    x = _images(6)
    np.testing.assert_array_equal(again.run({"input": x})[0]["logits"],
                                  model.run({"input": x})[0]["logits"])


def test_host_stage_round_trip(tmp_path):
    import warnings

    from test_onnx_frontend import _host_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = compile_onnx(_host_model(), preset("tiny"), batch=2)
    model.save(tmp_path / "h.sysm")
    again = load(tmp_path / "h.sysm")
    # the Sigmoid, with the DequantizeLinear and QuantizeLinear around it, on the host
    assert [s.kind for s in again.stages] == ["device", "host", "host", "host", "device"]
    assert [s.op.op_type for s in again.stages if s.kind == "host"] == [
        "DequantizeLinear", "Sigmoid", "QuantizeLinear"]
    x = np.random.default_rng(0).integers(0, 256, (3, 6)).astype(np.uint8)
    np.testing.assert_array_equal(again.run({"a": x})[0]["y"], model.run({"a": x})[0]["y"])


def _rewrite(path, out, *, manifest=None, drop=None, damage=None):
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    if manifest is not None:
        members["manifest.json"] = json.dumps(manifest(json.loads(members["manifest.json"])))
    if drop:
        del members[drop]
    if damage:
        blob = bytearray(members[damage])
        blob[len(blob) // 2] ^= 0xFF
        members[damage] = bytes(blob)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    out.write_bytes(buf.getvalue())
    return out


def test_damaged_files_give_clear_errors(saved, tmp_path):
    _, path = saved
    bad = tmp_path / "bad.sysm"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(PackageError, match="not a compiled model.*not a ZIP archive"):
        load(bad)
    bad.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(PackageError, match="bad.sysm"):
        load(bad)
    with pytest.raises(PackageError, match=r"member 'stage0.image' is corrupted"):
        load(_rewrite(path, tmp_path / "c.sysm", damage="stage0.image"))
    with pytest.raises(PackageError, match=r"member 'stage0.image' is missing"):
        load(_rewrite(path, tmp_path / "d.sysm", drop="stage0.image"))
    with pytest.raises(PackageError, match=f"format version 99 is not supported.*{VERSION}"):
        load(_rewrite(path, tmp_path / "v.sysm", manifest=lambda m: {**m, "version": 99}))
    with pytest.raises(PackageError, match="format is not 'systolic-model'"):
        load(_rewrite(path, tmp_path / "f.sysm", manifest=lambda m: {**m, "format": "x"}))
    with pytest.raises(PackageError, match="manifest field 'stages' is missing"):
        load(_rewrite(path, tmp_path / "s.sysm",
                      manifest=lambda m: {k: v for k, v in m.items() if k != "stages"}))
    with pytest.raises(PackageError, match="rows"):
        load(_rewrite(path, tmp_path / "r.sysm",
                      manifest=lambda m: {**m, "config": {**m["config"], "rows": 0}}))
    with pytest.raises(OSError):
        load(tmp_path / "missing.sysm")


def test_wrong_inputs_are_reported(saved):
    model, _ = saved
    with pytest.raises(ValueError, match=r"input 'input' must have shape \(N, 1, 8, 8\)"):
        model.run({"input": np.zeros((2, 64), np.float32)})
    with pytest.raises(ValueError, match="missing input 'input'"):
        model.run({})
