"""A GRU or LSTM cell step as a TFLite flatbuffer, written without TensorFlow.

LiteRT (``ai-edge-litert``) runs ``.tflite`` files, which are normally made by
TensorFlow's converter (or by ``litert-torch``, which pulls jax, transformers
and a converter binary). The cell step needs only six builtin operators
(FULLY_CONNECTED, SPLIT, ADD, SUB, MUL, LOGISTIC, TANH), so this module
writes the flatbuffer itself with the schema bindings that ``ai-edge-litert``
ships (``ai_edge_litert.schema_py_generated``, the flatbuffers object API).

The graph takes the state as input and returns it (like the ONNX Runtime
peer): the caller copies the new state back into the input tensor. Weights
are in PyTorch's layout (``weight_ih`` (G*H, I), gates r, z, n or i, f, g,
o), which is also FULLY_CONNECTED's (out, in). ``weights="int8"`` stores
them as int8 with one scale per output row (TFLite's dynamic-range
"hybrid" FULLY_CONNECTED: float inputs, int8 weights).

Used by tools/bench.py (LiteRT rows) and checked there against torch's cell.
"""

from __future__ import annotations

import numpy as np


def _schema():
    from ai_edge_litert import schema_py_generated as s

    return s


class _Graph:
    """Tensors, buffers and operators of one subgraph, built in order."""

    def __init__(self) -> None:
        self.s = _schema()
        self.tensors: list = []
        self.buffers = [self.s.BufferT()]  # buffer 0: the empty buffer, by convention
        self.ops: list = []
        self.codes: dict[int, int] = {}

    def tensor(self, name: str, shape, data=None, dtype=None, quant=None) -> int:
        s = self.s
        buf = 0
        if data is not None:
            self.buffers.append(s.BufferT(data=np.ascontiguousarray(data).view(np.uint8).ravel()))
            buf = len(self.buffers) - 1
            dtype = data.dtype if dtype is None else dtype
        ttype = {np.dtype(np.float32): s.TensorType.FLOAT32, np.dtype(np.int8): s.TensorType.INT8,
                 np.dtype(np.int32): s.TensorType.INT32}[np.dtype(dtype or np.float32)]
        self.tensors.append(s.TensorT(shape=list(shape), type=ttype, buffer=buf, name=name,
                                      quantization=quant))
        return len(self.tensors) - 1

    def op(self, code: int, inputs, outputs, opt_type: int = 0, opt=None) -> None:
        if code not in self.codes:
            self.codes[code] = len(self.codes)
        self.ops.append(self.s.OperatorT(opcodeIndex=self.codes[code], inputs=list(inputs),
                                         outputs=list(outputs), builtinOptionsType=opt_type,
                                         builtinOptions=opt))

    def tmp(self, shape) -> int:
        return self.tensor(f"t{len(self.tensors)}", shape)

    # -- the operators a cell needs ------------------------------------------------
    def fc(self, x: int, w: np.ndarray, b: np.ndarray, rows: int, weights: str) -> int:
        s = self.s
        if weights == "int8":
            scale = np.maximum(np.abs(w).max(axis=1), 1e-30) / 127.0
            q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
            qp = s.QuantizationParametersT(scale=[float(v) for v in scale],
                                           zeroPoint=[0] * len(scale), quantizedDimension=0)
            wt = self.tensor(f"w{len(self.tensors)}", w.shape, q, quant=qp)
        else:
            wt = self.tensor(f"w{len(self.tensors)}", w.shape, np.asarray(w, np.float32))
        bt = self.tensor(f"b{len(self.tensors)}", b.shape, np.asarray(b, np.float32))
        out = self.tmp((rows, w.shape[0]))
        self.op(s.BuiltinOperator.FULLY_CONNECTED, [x, wt, bt], [out],
                s.BuiltinOptions.FullyConnectedOptions, s.FullyConnectedOptionsT())
        return out

    def split(self, x: int, parts: int, rows: int, width: int) -> list[int]:
        s = self.s
        axis = self.tensor(f"axis{len(self.tensors)}", (), np.array(1, np.int32))
        outs = [self.tmp((rows, width)) for _ in range(parts)]
        self.op(s.BuiltinOperator.SPLIT, [axis, x], outs, s.BuiltinOptions.SplitOptions,
                s.SplitOptionsT(numSplits=parts))
        return outs

    def binary(self, name: str, a: int, b: int, shape, out: int | None = None) -> int:
        s = self.s
        code, otype, opt = {"add": (s.BuiltinOperator.ADD, s.BuiltinOptions.AddOptions, s.AddOptionsT),
                            "sub": (s.BuiltinOperator.SUB, s.BuiltinOptions.SubOptions, s.SubOptionsT),
                            "mul": (s.BuiltinOperator.MUL, s.BuiltinOptions.MulOptions, s.MulOptionsT)}[name]
        out = self.tmp(shape) if out is None else out
        self.op(code, [a, b], [out], otype, opt())
        return out

    def unary(self, name: str, a: int, shape, out: int | None = None) -> int:
        s = self.s
        out = self.tmp(shape) if out is None else out
        self.op({"sigmoid": s.BuiltinOperator.LOGISTIC, "tanh": s.BuiltinOperator.TANH}[name], [a], [out])
        return out

    def finish(self, inputs, outputs, description: str) -> bytes:
        import flatbuffers

        s = self.s
        codes = [s.OperatorCodeT(deprecatedBuiltinCode=min(c, 127), builtinCode=c, version=1)
                 for c, _ in sorted(self.codes.items(), key=lambda kv: kv[1])]
        sub = s.SubGraphT(tensors=self.tensors, inputs=list(inputs), outputs=list(outputs),
                          operators=self.ops, name="main")
        model = s.ModelT(version=3, operatorCodes=codes, subgraphs=[sub], description=description,
                         buffers=self.buffers)
        b = flatbuffers.Builder(1 << 16)
        b.Finish(model.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def cell_tflite(kind: str, weight_ih, weight_hh, bias_ih, bias_hh, batch: int = 1,
                weights: str = "float32") -> bytes:
    """The flatbuffer of one GRU (``kind="gru"``, PyTorch's reset-after form)
    or LSTM cell step over ``batch`` rows.

    Inputs: x (batch, I), h (batch, H)[, c (batch, H)]; outputs: h'[, c'].
    """
    H = weight_hh.shape[1]
    I = weight_ih.shape[1]
    g = _Graph()
    sh = (batch, H)
    x = g.tensor("x", (batch, I))
    h = g.tensor("h", sh)
    gi = g.fc(x, weight_ih, bias_ih, batch, weights)
    gh = g.fc(h, weight_hh, bias_hh, batch, weights)
    if kind == "gru":
        ir, iz, in_ = g.split(gi, 3, batch, H)
        hr, hz, hn = g.split(gh, 3, batch, H)
        r = g.unary("sigmoid", g.binary("add", ir, hr, sh), sh)
        z = g.unary("sigmoid", g.binary("add", iz, hz, sh), sh)
        n = g.unary("tanh", g.binary("add", in_, g.binary("mul", r, hn, sh), sh), sh)
        # h' = (1 - z) n + z h = n + z (h - n)
        h_out = g.tensor("h_out", sh)
        g.binary("add", n, g.binary("mul", z, g.binary("sub", h, n, sh), sh), sh, out=h_out)
        return g.finish([x, h], [h_out], f"streamgru bench: GRU cell I={I} H={H} {weights}")
    c = g.tensor("c", sh)
    gi_, gf, gg, go = g.split(g.binary("add", gi, gh, (batch, 4 * H)), 4, batch, H)
    i = g.unary("sigmoid", gi_, sh)
    f = g.unary("sigmoid", gf, sh)
    o = g.unary("sigmoid", go, sh)
    c_out = g.tensor("c_out", sh)
    g.binary("add", g.binary("mul", f, c, sh), g.binary("mul", i, g.unary("tanh", gg, sh), sh), sh,
             out=c_out)
    h_out = g.tensor("h_out", sh)
    g.binary("mul", o, g.unary("tanh", c_out, sh), sh, out=h_out)
    return g.finish([x, h, c], [h_out, c_out], f"streamgru bench: LSTM cell I={I} H={H} {weights}")


class LiteRTCell:
    """A LiteRT interpreter (XNNPACK, one thread) over ``cell_tflite``'s
    model, with the input tensors bound once as numpy views: ``step()`` runs
    one cell step from ``self.x`` and carries the state in place."""

    def __init__(self, content: bytes, nstate: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interp = it = Interpreter(model_content=content, num_threads=1)
        it.allocate_tensors()
        ins = {d["name"]: d["index"] for d in it.get_input_details()}
        outs = {d["name"]: d["index"] for d in it.get_output_details()}
        names = ["h", "c"][:nstate]
        self._in = [it.tensor(ins[n]) for n in ["x"] + names]  # callables returning live views
        self._out = [it.tensor(outs[n + "_out"]) for n in names]
        self.invoke = it.invoke
        for v in self._in:
            v()[...] = 0

    def set_input(self, x: np.ndarray) -> None:
        self._in[0]()[...] = x  # the view is dropped at once: invoke() refuses live views

    def step(self) -> None:
        self.invoke()
        for dst, src in zip(self._in[1:], self._out):
            dst()[...] = src()

    def state(self) -> list[np.ndarray]:
        return [v().copy() for v in self._in[1:]]
