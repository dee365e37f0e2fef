"""How far streamgru's import of already-quantized models is from the
frameworks' own quantized forward, and from their float forward on the same
dequantized weights (1200 steps, the models of tests/test_quant_import.py).

    python tools/quant_import_diff.py

torch's and ONNX Runtime's int8 kernels also round the activations per call;
streamgru keeps them in float, so the first column is that rounding and the
second is the import's own error (float32 rounding only).
"""
import os
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
warnings.filterwarnings("ignore")
import numpy as np, torch
import test_quant_import as T
import streamgru as sg
from torch.ao.quantization import per_channel_dynamic_qconfig
nn = torch.nn
torch.manual_seed(0)
net = T.Net().eval()
x = T._inputs()
d = tempfile.mkdtemp()
for kind, spec, dt in (("int8", {nn.GRU, nn.LSTM, nn.Linear}, torch.qint8),
                       ("int8-per-channel", dict.fromkeys((nn.GRU, nn.LSTM, nn.Linear), per_channel_dynamic_qconfig), torch.qint8),
                       ("float16", {nn.GRU, nn.LSTM, nn.Linear}, torch.float16)):
    q = torch.ao.quantization.quantize_dynamic(net, spec, dtype=dt)
    p = os.path.join(d, kind + ".pt"); torch.save(q.state_dict(), p)
    got = T._stream(sg.load(p), x)
    print(f"torch {kind:17s} vs torch q forward {np.abs(got - T._forward(q, x)).max():.2e}  "
          f"vs float on dequantized weights {np.abs(got - T._forward(T._dequantized_net(q), x)).max():.2e}  "
          f"(torch q vs original float {np.abs(T._forward(q, x) - T._forward(net, x)).max():.2e})")
from onnxruntime.quantization import quantize_dynamic, QuantType
for name, cell in (("LSTM", nn.LSTM), ("GRU", nn.GRU)):
    torch.manual_seed(1)
    n2 = T._OnnxNet(cell).eval()
    fp = os.path.join(d, name + ".onnx")
    torch.onnx.export(n2, (torch.zeros(1, 7, T.I),), fp, dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N", 1: "T"}})
    for pc in (False, True):
        qp = os.path.join(d, f"{name}{pc}_q.onnx")
        quantize_dynamic(fp, qp, weight_type=QuantType.QInt8, per_channel=pc)
        xo = T._inputs(3)
        got = T._stream(sg.load(qp), xo)
        dq = T._ort(T._dequantized_onnx(fp, qp, os.path.join(d, "dq.onnx")), xo)
        print(f"ORT {name} per_channel={pc!s:5s} vs ORT quantized {np.abs(got - T._ort(qp, xo)).max():.2e}  "
              f"vs ORT float on dequantized weights {np.abs(got - dq).max():.2e}  "
              f"(ORT quantized vs original float {np.abs(T._ort(qp, xo) - T._ort(fp, xo)).max():.2e})")
