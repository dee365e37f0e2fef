"""The benchmark's peers compute the model they claim to (tools/bench_peers.py,
tools/bench_tflite.py): each is streamed against torch's own cell with the
same weights, so a ratio in tools/bench.py compares the same work."""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import bench_peers  # noqa: E402

STEPS = 1000


def _torch_run(kind, cell, X):
    """h after each step of torch's cell, float32."""
    H = cell.hidden_size
    h, c = torch.zeros(1, H), torch.zeros(1, H)
    out = []
    with torch.no_grad():
        for x in X:
            if kind == "gru":
                h = cell(torch.from_numpy(x)[None], h)
            else:
                h, c = cell(torch.from_numpy(x)[None], (h, c))
            out.append(h[0].numpy().copy())
    return np.array(out)


def _ctx(kind, I, H, tmp):
    layer, cell = bench_peers.torch_models(kind, I, H)
    path = tmp / "m.onnx"
    bench_peers.export_onnx(kind, layer, I, H, path)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((STEPS, I)).astype(np.float32)
    return bench_peers.Ctx(kind, I, H, layer, cell, path, tmp, X[0], X, X[:4]), X


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_litert_cell_matches_torch(kind, tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    from bench_tflite import LiteRTCell, cell_tflite

    c, X = _ctx(kind, 5, 12, tmp_path)
    ref = _torch_run(kind, c.cell, X)
    for weights, tol in (("float32", 1e-5), ("int8", 0.05)):
        lite = LiteRTCell(cell_tflite(kind, *c.arrays(), weights=weights), c.nstate)
        got = []
        for x in X:
            lite.set_input(x)
            lite.step()
            got.append(lite.state()[0][0])
        assert np.abs(np.array(got) - ref).max() < tol, weights


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_openvino_stateful_request_carries_the_state(kind, tmp_path):
    pytest.importorskip("openvino")
    c, X = _ctx(kind, 5, 12, tmp_path)
    ref = _torch_run(kind, c.cell, X[:200])
    x = np.zeros(c.I, np.float32)
    req = bench_peers._ov_request(c, 1, x)
    bound = req.get_input_tensor(0).data  # the bound input: write it, infer() with no arguments
    got = []
    for xt in X[:200]:
        bound[...] = xt.reshape(bound.shape)
        req.infer()
        got.append(req.get_output_tensor(0).data.reshape(-1).copy())  # y at t == h_t
    assert np.abs(np.array(got) - ref).max() < 1e-5


def test_ort_gru_cell_export_matches_torch_and_quantizes(tmp_path):
    pytest.importorskip("onnxruntime.quantization")
    import onnx

    c, X = _ctx("gru", 5, 12, tmp_path)
    ref = _torch_run("gru", c.cell, X)
    cell = tmp_path / "cell.onnx"
    bench_peers.export_gru_cell_onnx(*c.arrays(), cell)
    q = tmp_path / "cell_q.onnx"
    bench_peers.ort_quantize(cell, q)
    assert "MatMul" not in {n.op_type for n in onnx.load(str(q)).graph.node}  # every product int8
    for path, tol in ((cell, 1e-5), (q, 0.05)):
        sess = bench_peers.ort_session(path)
        h = np.zeros((1, c.H), np.float32)
        got = []
        for x in X:
            h = sess.run(None, {"x": x[None], "h": h})[0]
            got.append(h[0])
        assert np.abs(np.array(got) - ref).max() < tol, path.name
