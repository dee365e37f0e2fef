"""Reading .pt files without torch: tensors, state-dict mapping, unsafe and corrupt files.

Real files are written with torch.save into tmp_path; malicious and corrupt
ones are crafted in torch_fixtures.py. Every failure must be a WeightsError
(UnsafeWeightsError for code) naming the file, never a bare KeyError,
IndexError or UnpicklingError.
"""

import collections
import os
import pickle
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamgru as sg
from streamgru.formats.torch import read_pt

from torch_fixtures import (
    H, I, O, Case, _Call, _Global, _Storage, build, dumps, float_storage, legacy_bytes,
    tensor, write_archive, write_safetensors,
)

FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def save(obj, tmp_path, name="model.pt"):
    path = str(tmp_path / name)
    torch.save(obj, path)
    return path


def np_of(t):
    return t.detach().float().numpy()


# ----------------------------------------------------------------------------
# tensors


def test_state_dict_values_are_read_exactly(tmp_path):
    net = build(Case("GRU", 2, True, head=True))
    sd = net.state_dict()
    got = read_pt(save(sd, tmp_path))
    assert list(got) == list(sd)
    for key, t in sd.items():
        assert got[key].dtype == np.float32
        np.testing.assert_array_equal(got[key], t.numpy())


@pytest.mark.parametrize("kwargs", [{"pickle_protocol": 0}, {"pickle_protocol": 1},
                                    {"pickle_protocol": 3}, {"pickle_protocol": 4}, {"pickle_protocol": 5},
                                    {"_disable_byteorder_record": True}])
def test_torch_save_options(tmp_path, kwargs):
    sd = build(Case("RNN", 2, False)).state_dict()
    path = str(tmp_path / "m.pt")
    torch.save(sd, path, **kwargs)
    got = read_pt(path)
    assert list(got) == list(sd)
    for key, t in sd.items():
        np.testing.assert_array_equal(got[key], t.numpy())


@pytest.mark.parametrize("tdtype", [torch.float16, torch.bfloat16, torch.float64])
def test_float_dtypes(tmp_path, tdtype):
    torch.manual_seed(1)
    t = torch.randn(4, 6).to(tdtype)
    got = read_pt(save({"w": t}, tmp_path))["w"]
    expect = t.double().numpy()  # every value of these types is exact in float64
    assert got.dtype == (np.float64 if tdtype == torch.float64 else np.float32)
    np.testing.assert_array_equal(got.astype(np.float64), expect)


@FAST
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    transpose=st.booleans(),
    start=st.integers(0, 2),
    step=st.integers(1, 2),
    tdtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
)
def test_views_share_storage_offsets_and_strides(tmp_path, shape, transpose, start, step, tdtype):
    # torch.save writes a view's whole storage plus its offset and strides
    base = torch.arange(int(np.prod(shape)) * 4, dtype=torch.float64).reshape(-1, *shape).to(tdtype)
    view = base[start::step]
    if transpose and view.dim() > 1:
        view = view.transpose(0, -1)
    other = base[-1]
    got = read_pt(save({"view": view, "other": other}, tmp_path))
    np.testing.assert_array_equal(got["view"].astype(np.float64), view.double().numpy())
    np.testing.assert_array_equal(got["other"].astype(np.float64), other.double().numpy())


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_parameters_and_nested_containers(tmp_path, protocol):
    net = build(Case("LSTM", 1, True))
    obj = {"params": dict(net.named_parameters()), "meta": [1, (2.5, "x"), {3}, b"raw"], "n": None}
    path = str(tmp_path / "m.pt")
    torch.save(obj, path, pickle_protocol=protocol)
    got = read_pt(path)
    for key, p in net.named_parameters():
        np.testing.assert_array_equal(got["params"][key], np_of(p))
    assert got["meta"] == [1, (2.5, "x"), {3}, b"raw"] and got["n"] is None


def test_integer_tensors_keep_their_type(tmp_path):
    got = read_pt(save({"i": torch.arange(5), "b": torch.tensor([True, False])}, tmp_path))
    assert got["i"].dtype == np.int64 and list(got["i"]) == [0, 1, 2, 3, 4]
    assert got["b"].dtype == np.bool_ and list(got["b"]) == [True, False]


# ----------------------------------------------------------------------------
# state dict -> Model


def test_load_maps_every_layer_and_sets_metadata(tmp_path):
    net = build(Case("GRU", 3, True, head=True))
    path = save(net.state_dict(), tmp_path, "m.pth")
    m = sg.load(path)
    assert [type(l).__name__ for l in m.layers] == ["GRU", "GRU", "GRU", "Dense"]
    for k in range(3):
        np.testing.assert_array_equal(m.layers[k].weight_hh, np_of(getattr(net.rnn, f"weight_hh_l{k}")))
        np.testing.assert_array_equal(m.layers[k].bias_ih, np_of(getattr(net.rnn, f"bias_ih_l{k}")))
    np.testing.assert_array_equal(m.layers[3].weight, np_of(net.head.weight))
    assert m.layers[3].activation.name == "identity"  # a lone head gives logits
    assert (m.input_size, m.output_size, m.state_size) == (I, O, 3 * H)
    assert m.metadata["format"] == "pytorch" and m.metadata["source"] == path
    assert "rnn: GRU x3" in m.metadata["modules"] and "head: Linear" in m.metadata["modules"]


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_checkpoint_dicts(tmp_path, key):
    net = build(Case("LSTM", 2, True, proj=True))
    opt = torch.optim.Adam(net.parameters())
    ckpt = {"epoch": 7, key: net.state_dict(), "optimizer": opt.state_dict(), "note": "run 3"}
    m = sg.load(save(ckpt, tmp_path), dtype=np.float64)
    assert m.dtype == np.float64
    assert [l.proj_size for l in m.layers] == [7, 7]
    np.testing.assert_array_equal(m.layers[1].weight_hr, net.rnn.weight_hr_l1.detach().double().numpy())


def test_nested_and_numbered_module_names(tmp_path):
    torch.manual_seed(0)
    # Lightning-style "model." prefix, nested submodules, Sequential indices
    sd = {**{f"model.encoder.0.{k}": v for k, v in torch.nn.RNN(I, H).state_dict().items()},
          **{f"model.encoder.1.{k}": v for k, v in torch.nn.GRU(H, 6, num_layers=2).state_dict().items()},
          **{f"model.head.{k}": v for k, v in torch.nn.Linear(6, O, bias=False).state_dict().items()}}
    m = sg.load(save({"state_dict": sd, "hyper_parameters": {"lr": 1e-3}}, tmp_path))
    assert [type(l).__name__ for l in m.layers] == ["RNN", "GRU", "GRU", "Dense"]
    assert not m.layers[-1].bias.any()
    np.testing.assert_array_equal(m.layers[2].weight_ih, sd["model.encoder.1.weight_ih_l1"].numpy())
    # the wrapper prefix every layer shares is shown stripped and recorded
    assert m.metadata["modules"].startswith("encoder.0: RNN (5->12), encoder.1: GRU x2")
    assert m.metadata["prefix"] == "model." and m.metadata["checkpoint_key"] == "state_dict"


def test_only_the_state_dict_is_read(tmp_path):
    # a checkpoint whose optimizer storage is missing still loads its weights
    w, data = float_storage(np.arange(3 * 4 * 2, dtype=np.float32) / 100, key="w")
    sd = {"gru.weight_ih_l0": tensor(w, 0, (12, 2), (2, 1)),
          "gru.weight_hh_l0": tensor(w, 0, (12, 4), (1, 0))}  # stride 0: a broadcast view
    lost = _Storage("FloatStorage", "lost", 100)
    obj = {"model": sd, "optimizer": {"exp_avg": tensor(lost, 0, (100,), (1,))}}
    path = str(tmp_path / "ckpt.pt")
    write_archive(path, dumps(obj), data)
    m = sg.load(path)
    np.testing.assert_array_equal(m.layers[0].weight_hh, np.repeat(data_values(data["w"])[:12, None], 4, 1))
    with pytest.raises(sg.WeightsError, match="storage lost of tensor optimizer.exp_avg is missing"):
        read_pt(path)


def data_values(raw):
    return np.frombuffer(raw, "<f4")


module_specs = st.lists(
    st.tuples(st.sampled_from(["GRU", "LSTM", "RNN", "Linear", "GRUCell", "LSTMCell"]),
              st.integers(1, 6), st.integers(1, 3), st.booleans(), st.booleans()),
    min_size=1, max_size=4,
)


@FAST
@given(specs=module_specs, start=st.integers(1, 4))
def test_any_stack_maps_layer_by_layer(tmp_path, specs, start):
    # (kind, size, num_layers, bias, proj) -> torch modules chained by size
    container = torch.nn.Module()
    size, expected = start, []
    for i, (kind, out, layers, bias, proj) in enumerate(specs):
        if kind == "Linear":
            mod = torch.nn.Linear(size, out, bias=bias)
            expected.append(("Dense", mod.weight, mod.bias))
        elif kind.endswith("Cell"):
            mod = getattr(torch.nn, kind)(size, out, bias=bias)
            expected.append((kind[:-4], mod.weight_ih, mod.bias_ih))
        else:
            kw = {"proj_size": max(out - 1, 1)} if kind == "LSTM" and proj and out > 1 else {}
            mod = getattr(torch.nn, kind)(size, out, num_layers=layers, bias=bias, **kw)
            for k in range(layers):
                expected.append((kind, getattr(mod, f"weight_ih_l{k}"), getattr(mod, f"bias_ih_l{k}", None)))
            out = kw.get("proj_size", out)
        container.add_module(f"m{i}", mod)
        size = out
    n_linear = sum(k == "Linear" for k, *_ in specs)
    m = sg.load(save(container.state_dict(), tmp_path), activations=[None] * n_linear)
    assert [type(l).__name__ for l in m.layers] == [e[0] for e in expected]
    assert (m.input_size, m.output_size) == (start, size)
    for layer, (_, weight, bias) in zip(m.layers, expected):
        np.testing.assert_array_equal(layer.arrays()["weight" if layer.kind == "dense" else "weight_ih"],
                                      np_of(weight))
        got_bias = layer.arrays()["bias" if layer.kind == "dense" else "bias_ih"]
        np.testing.assert_array_equal(got_bias, np.zeros_like(got_bias) if bias is None else np_of(bias))


def test_kind_from_gate_multiple_and_no_bias(tmp_path):
    for kind, gates in (("GRU", 3), ("LSTM", 4), ("RNN", 1)):
        net = build(Case(kind, 1, False))
        m = sg.load(save(net.state_dict(), tmp_path))
        (layer,) = m.layers
        assert type(layer).__name__ == kind
        assert layer.weight_hh.shape == (gates * H, H)
        assert not layer.bias_ih.any() and not layer.bias_hh.any()


def test_cells(tmp_path):
    torch.manual_seed(0)
    for cell, kind in ((torch.nn.GRUCell(I, H), "GRU"), (torch.nn.LSTMCell(I, H), "LSTM"),
                       (torch.nn.RNNCell(I, H, nonlinearity="relu"), "RNN")):
        m = sg.load(save(cell.state_dict(), tmp_path), rnn_nonlinearity="relu")
        assert type(m.layers[0]).__name__ == kind
        np.testing.assert_array_equal(m.layers[0].weight_ih, np_of(cell.weight_ih))
        if kind == "RNN":
            assert m.layers[0].activation.name == "relu"
            assert m.metadata["rnn_nonlinearity"] == "relu"


def test_rnn_nonlinearity_keyword(tmp_path):
    path = save(build(Case("RNN", 2, True)).state_dict(), tmp_path)
    assert [l.activation.name for l in sg.load(path).layers] == ["tanh", "tanh"]
    assert [l.activation.name for l in sg.load(path, rnn_nonlinearity="relu").layers] == ["relu", "relu"]
    with pytest.raises(sg.WeightsError, match="rnn_nonlinearity"):
        sg.load(path, rnn_nonlinearity="gelu")


class TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(I, H)
        self.fc1 = torch.nn.Linear(H, 6)
        self.fc2 = torch.nn.Linear(6, O)


def test_two_linear_layers_need_activations(tmp_path):
    torch.manual_seed(0)
    path = save(TwoHeads().state_dict(), tmp_path)
    with pytest.raises(sg.WeightsError) as err:
        sg.load(path)
    assert path in str(err.value) and "activations=" in str(err.value)
    assert "'fc1'" in str(err.value) and "'fc2'" in str(err.value)
    m = sg.load(path, activations=["relu", "softmax"])
    assert [l.activation.name for l in m.layers[1:]] == ["relu", "softmax"]
    m = sg.load(path, activations=[("leaky_relu", 0.2), None])
    assert m.layers[1].activation.alpha == 0.2 and m.layers[2].activation.name == "identity"
    with pytest.raises(sg.WeightsError, match="2 Linear"):
        sg.load(path, activations=["relu"])
    with pytest.raises(sg.WeightsError, match="fc1.*unsupported activation"):
        sg.load(path, activations=["swish", None])


def test_linear_before_the_recurrent_layer_needs_activations(tmp_path):
    torch.manual_seed(0)
    sd = {**{f"proj.{k}": v for k, v in torch.nn.Linear(I, 4).state_dict().items()},
          **{f"gru.{k}": v for k, v in torch.nn.GRU(4, H).state_dict().items()}}
    path = save(sd, tmp_path)
    with pytest.raises(sg.WeightsError, match="activations="):
        sg.load(path)
    m = sg.load(path, activations=["tanh"])
    assert [type(l).__name__ for l in m.layers] == ["Dense", "GRU"]


def test_order_keyword(tmp_path):
    torch.manual_seed(0)
    # fc registered before gru: the key order is not the forward order
    sd = {**{f"fc.{k}": v for k, v in torch.nn.Linear(H, O).state_dict().items()},
          **{f"gru.{k}": v for k, v in torch.nn.GRU(I, H).state_dict().items()}}
    path = save(sd, tmp_path)
    with pytest.raises(sg.WeightsError, match="order="):
        sg.load(path, activations=[None])
    m = sg.load(path, order=["gru", "fc"])
    assert [type(l).__name__ for l in m.layers] == ["GRU", "Dense"]
    with pytest.raises(sg.WeightsError, match="exactly once"):
        sg.load(path, order=["gru"])


def test_bidirectional_is_refused(tmp_path):
    path = save(torch.nn.LSTM(I, H, bidirectional=True).state_dict(), tmp_path)
    with pytest.raises(sg.WeightsError) as err:
        sg.load(path)
    msg = str(err.value)
    assert path in msg and "_reverse" in msg and "bidirectional" in msg and "future" in msg


@pytest.mark.parametrize("module, key", [
    (torch.nn.BatchNorm1d(4), "running_mean"),
    (torch.nn.LayerNorm(4), "weight"),
    (torch.nn.Conv1d(2, 3, 3), "weight"),
])
def test_unknown_modules_are_named(tmp_path, module, key):
    sd = {**{f"gru.{k}": v for k, v in torch.nn.GRU(I, 4).state_dict().items()},
          **{f"other.{k}": v for k, v in module.state_dict().items()}}
    path = save(sd, tmp_path)
    with pytest.raises(sg.WeightsError) as err:
        sg.load(path)
    assert path in str(err.value) and f"other.{key}" in str(err.value)


def test_missing_and_misshaped_tensors_are_named(tmp_path):
    sd = build(Case("GRU", 3, True)).state_dict()
    gap = {k: v for k, v in sd.items() if not k.endswith("_l1")}
    with pytest.raises(sg.WeightsError, match=r"rnn\.weight_ih_l1 \(layer 1 is missing\)"):
        sg.load(save(gap, tmp_path))
    far = {"rnn.weight_ih_l999999999999": sd["rnn.weight_ih_l0"], **sd}
    with pytest.raises(sg.WeightsError, match=r"rnn\.weight_ih_l3 \(layer 3 is missing\)"):
        sg.load(save(far, tmp_path))
    no_hh = {k: v for k, v in sd.items() if k != "rnn.weight_hh_l2"}
    with pytest.raises(sg.WeightsError, match=r"rnn\.weight_hh_l2 is missing"):
        sg.load(save(no_hh, tmp_path))
    bad = dict(sd)
    bad["rnn.bias_ih_l1"] = torch.zeros(5)
    with pytest.raises(sg.WeightsError, match=r"rnn\.bias_ih_l1.*expected shape \(36,\)"):
        sg.load(save(bad, tmp_path))
    odd = dict(sd)
    odd["rnn.weight_hh_l0"] = torch.zeros(2 * H, H)
    with pytest.raises(sg.WeightsError, match=r"rnn\.weight_hh_l0.*not \(3H, H\) GRU"):
        sg.load(save(odd, tmp_path))
    ints = dict(sd)
    ints["rnn.weight_ih_l0"] = torch.zeros(3 * H, I, dtype=torch.int32)
    with pytest.raises(sg.WeightsError, match=r"rnn\.weight_ih_l0.*floating-point"):
        sg.load(save(ints, tmp_path))
    nan = dict(sd)
    nan["rnn.weight_ih_l0"] = torch.full((3 * H, I), float("nan"))
    with pytest.raises(sg.WeightsError, match=r"rnn\.weight_ih_l0.*non-finite"):
        sg.load(save(nan, tmp_path))


@pytest.mark.parametrize("obj, match", [
    (torch.zeros(3), "not a state dict"),
    ([torch.zeros(3)], "not a state dict"),
    ({"epoch": 3, "lr": 0.1}, "no state dict found.*'epoch'"),
    ({}, "no state dict found"),
])
def test_not_a_state_dict(tmp_path, obj, match):
    path = save(obj, tmp_path)
    with pytest.raises(sg.WeightsError, match=match) as err:
        sg.load(path)
    assert path in str(err.value)


def test_foreign_safetensors_is_a_state_dict(tmp_path):
    torch.manual_seed(0)
    net = TwoHeads()
    path = str(tmp_path / "weights.safetensors")
    write_safetensors(path, net.state_dict())
    with pytest.raises(sg.WeightsError, match="activations="):
        sg.load(path)
    m = sg.load(path, activations=["relu", None])
    assert m == sg.load(save(net.state_dict(), tmp_path), activations=["relu", None])
    assert m.metadata["format"] == "pytorch" and m.metadata["source"] == path
    native = str(tmp_path / "native.safetensors")
    sg.save(m, native)
    with pytest.raises(sg.WeightsError, match="only apply to PyTorch state dicts"):
        sg.load(native, activations=["relu", None])


# ----------------------------------------------------------------------------
# files that would run code


MALICIOUS = [
    ("posix", "system"),
    ("os", "system"),
    ("builtins", "exec"),
    ("builtins", "eval"),
    ("io", "open"),
    ("subprocess", "call"),
    ("torch", "load"),
]


def payload(module, name, target):
    """Arguments that make ``module.name`` create ``target``."""
    if name == "system":
        return (f"touch {target}",)
    if name in ("exec", "eval"):
        return (f"open({str(target)!r}, 'w').close()",)
    if name == "open":
        return (str(target), "w")
    if name == "call":
        return (["touch", str(target)],)
    return (str(target),)


@pytest.mark.parametrize("module, name", MALICIOUS)
def test_code_in_the_pickle_is_never_run(tmp_path, module, name):
    target = tmp_path / "pwned"
    storage, data = float_storage(np.arange(4))
    obj = {"w": tensor(storage, 0, (2, 2), (2, 1)), "x": _Call(module, name, *payload(module, name, target))}
    path = str(tmp_path / "evil.pt")
    write_archive(path, dumps(obj), data)
    with pytest.raises(sg.UnsafeWeightsError) as err:
        sg.load(path)
    assert f"{module}.{name}" in str(err.value) and path in str(err.value)
    assert not target.exists()


class Evil:
    """A real torch.save'd file whose unpickling would create a file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_torch_saved_file_with_a_payload(tmp_path):
    target = tmp_path / "pwned"
    sd = dict(build(Case("GRU", 1, True)).state_dict())
    sd["rnn.extra"] = Evil(target)
    path = save(sd, tmp_path)
    with pytest.raises(sg.UnsafeWeightsError, match=r"system.*not on streamgru's allow-list"):
        sg.load(path)
    assert not target.exists()


def test_globals_are_not_imported(tmp_path):
    # importing `this` prints text: a module with an import side effect
    was_loaded = "this" in sys.modules
    path = str(tmp_path / "evil.pt")
    write_archive(path, dumps({"x": _Global("this", "s")}))
    with pytest.raises(sg.UnsafeWeightsError, match=r"this\.s"):
        sg.load(path)
    assert ("this" in sys.modules) == was_loaded


def test_stack_global_protocol_4(tmp_path):
    target = tmp_path / "pwned"
    cmd = f"touch {target}".encode()
    # PROTO 4, SHORT_BINUNICODE 'os', 'system', STACK_GLOBAL, arg, TUPLE1, REDUCE, STOP
    pkl = (b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c" + bytes([len(cmd)]) + cmd + b"\x85R.")
    path = str(tmp_path / "evil.pt")
    write_archive(path, pkl)
    with pytest.raises(sg.UnsafeWeightsError, match=r"os\.system"):
        sg.load(path)
    assert not target.exists()


def test_whole_pickled_module_gets_a_hint(tmp_path):
    path = save(torch.nn.GRU(I, H), tmp_path)
    with pytest.raises(sg.UnsafeWeightsError) as err:
        sg.load(path)
    assert "torch.nn.modules.rnn.GRU" in str(err.value)
    assert "torch.save(model.state_dict(), path)" in str(err.value)


def test_stand_ins_refuse_pickle_state(tmp_path):
    # BUILD on an allow-listed function would set e.g. its __defaults__ for later loads
    from streamgru.formats.torch_globals import ALLOWED

    fn = ALLOWED[("torch._utils", "_rebuild_tensor_v2")].fn
    before = fn.__defaults__
    pkl = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(}X\x0c\x00\x00\x00__defaults__)stb."
    path = str(tmp_path / "state.pt")
    write_archive(path, pkl)
    with pytest.raises(sg.WeightsError, match="unexpected pickle state") as err:
        read_pt(path)
    assert path in str(err.value)
    assert fn.__defaults__ == before


def test_codecs_encode_refusal_names_the_file(tmp_path):
    path = str(tmp_path / "codec.pt")
    write_archive(path, dumps({"x": _Call("_codecs", "encode", "abc", "rot13")}))
    with pytest.raises(sg.WeightsError, match="_codecs.encode may only build bytes") as err:
        read_pt(path)
    assert path in str(err.value)


# ----------------------------------------------------------------------------
# corrupt files


def assert_weights_error(path, *needles):
    with pytest.raises(sg.WeightsError) as err:
        sg.load(path)
    msg = str(err.value)
    assert path in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_archive(tmp_path, keep):
    path = save(build(Case("GRU", 2, True)).state_dict(), tmp_path)
    raw = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(raw[: int(len(raw) * keep)])
    assert_weights_error(path)


def test_random_bytes(tmp_path):
    path = str(tmp_path / "noise.pt")
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).bytes(4096))
    assert_weights_error(path, "not a torch.save archive")


@FAST
@given(data=st.data())
def test_damaged_files_fail_cleanly(tmp_path, data):
    # flipped bytes anywhere: either the file still loads, or a WeightsError
    path = str(tmp_path / "damaged.pt")
    if not os.path.exists(path + ".orig"):
        torch.save(build(Case("LSTM", 1, True)).state_dict(), path + ".orig")
    raw = bytearray(open(path + ".orig", "rb").read())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    with open(path, "wb") as f:
        f.write(raw)
    try:
        sg.load(path)
    except sg.WeightsError as exc:
        assert path in str(exc)


def test_missing_storage(tmp_path):
    storage, _ = float_storage(np.arange(6))
    path = str(tmp_path / "m.pt")
    write_archive(path, dumps({"w": tensor(storage, 0, (2, 3), (3, 1))}), storages={})
    assert_weights_error(path, "storage 0 of tensor w is missing")


def test_storage_shorter_than_its_tensor(tmp_path):
    storage, data = float_storage(np.arange(6))
    path = str(tmp_path / "short.pt")
    # the tensor reaches past the storage's declared length
    write_archive(path, dumps({"w": tensor(storage, 2, (2, 3), (3, 1))}), data)
    assert_weights_error(path, "tensor w reaches element 7 of storage 0, which holds only 6")
    # the storage record holds fewer bytes than it declares
    write_archive(path, dumps({"w": tensor(storage, 0, (2, 3), (3, 1))}), {"0": data["0"][:10]})
    assert_weights_error(path, "storage 0 of tensor w holds 10 bytes, fewer than the 24")


def test_expanded_tensor_cannot_ask_for_terabytes(tmp_path):
    storage, data = float_storage([1.0])
    path = str(tmp_path / "bomb.pt")
    write_archive(path, dumps({"w": tensor(storage, 0, (10**6, 10**6), (0, 0))}), data)
    assert_weights_error(path, "tensor w has 1000000000000 elements over a storage of 1")


def test_corrupt_storage_bytes_fail_the_crc(tmp_path):
    path = save({"w": torch.arange(64, dtype=torch.float32)}, tmp_path)
    raw = bytearray(open(path, "rb").read())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("model/data/0")
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + 5] ^= 0xFF
    with open(path, "wb") as f:
        f.write(raw)
    assert_weights_error(path, "corrupt")


def test_big_endian_file(tmp_path):
    storage, data = float_storage(np.arange(4))
    path = str(tmp_path / "big.pt")
    write_archive(path, dumps({"w": tensor(storage, 0, (4,), (1,))}), data, byteorder=b"big")
    assert_weights_error(path, "big-endian")


def test_no_byteorder_record_means_little_endian(tmp_path):
    storage, data = float_storage([1.5, 2.5])
    path = str(tmp_path / "old.pt")
    write_archive(path, dumps({"w": tensor(storage, 0, (2,), (1,))}), data, byteorder=None)
    np.testing.assert_array_equal(read_pt(path)["w"], [1.5, 2.5])


def test_legacy_format_says_how_to_resave(tmp_path):
    path = str(tmp_path / "legacy.pt")
    with open(path, "wb") as f:
        f.write(legacy_bytes(build(Case("GRU", 1, True)).state_dict()))
    msg = assert_weights_error(path, "legacy")
    assert "torch.save(torch.load(path, weights_only=True)" in msg


def test_torchscript_archive(tmp_path):
    path = str(tmp_path / "scripted.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    assert_weights_error(path, "TorchScript", "state_dict()")


def test_zip_without_data_pkl(tmp_path):
    path = str(tmp_path / "other.pt")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("folder/readme.txt", "hello")
    assert_weights_error(path, "without data.pkl")


@pytest.mark.parametrize("pkl, needle", [
    (b"\x80\x02}q\x00(X\x01\x00\x00\x00w", "data.pkl is corrupt"),  # cut short
    (b"garbage that is not a pickle", "data.pkl is corrupt"),
    # a quantized tensor is read (torch.ao dynamic quantization), but not from one argument
    (dumps({"w": _Call("torch._utils", "_rebuild_qtensor", 1)}), "_rebuild_qtensor called with 1"),
    (dumps({"w": tensor(_Storage("FloatStorage", "0", 4), 0, ("2",), (1,))}), "tensor w: malformed layout"),
    (dumps({"w": tensor(_Storage("FloatStorage", "0", 4), 0, (2,), (-1,))}), "tensor w: malformed layout"),
    (dumps({"w": tensor(_Storage("FloatStorage", "0", 4), 0, (1,) * 70, (1,) * 70)}),
     "tensor w: malformed layout"),
    (dumps({"w": tensor(_Storage("FloatStorage", "0", 4), 0, (2,), (1, 1))}), "tensor w: malformed layout"),
    (dumps({"w": tensor(_Storage("FloatStorage", "0", 4), True, (2,), (1,))}), "tensor w: malformed layout"),
    (dumps({"w": _Call("torch._utils", "_rebuild_tensor_v2", "not a storage", 0, (2,), (1,))}),
     "tensor w: its storage is not a storage record"),
])
def test_malformed_pickles(tmp_path, pkl, needle):
    path = str(tmp_path / "bad.pt")
    write_archive(path, pkl, {"0": np.zeros(4, "<f4").tobytes()})
    assert_weights_error(path, needle)


layout_values = st.one_of(st.integers(0, 5), st.integers(-3, 2**64),
                          st.sampled_from([2**61, 2**63, 1.5, "2", None, True]))


@FAST
@given(numel=st.sampled_from([0, 1, 4, 10, 10**18]),
       offset=layout_values,
       size=st.lists(layout_values, max_size=4) | st.just([1] * 65),
       stride=st.lists(layout_values, max_size=4),
       kind=st.sampled_from(["FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage"]),
       nbytes=st.integers(0, 48))
def test_crafted_layouts_fail_cleanly(tmp_path, numel, offset, size, stride, kind, nbytes):
    path = str(tmp_path / "layout.pt")
    obj = {"w": tensor(_Storage(kind, "0", numel), offset, tuple(size), tuple(stride))}
    write_archive(path, dumps(obj), {"0": bytes(nbytes)})
    try:
        got = read_pt(path)["w"]
    except sg.WeightsError as exc:
        assert path in str(exc)
    else:
        assert got.shape == tuple(size)


def test_malformed_persistent_id(tmp_path):
    from torch_fixtures import _Pickler
    import io

    class Odd(_Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", "FloatStorage-as-a-string", "0", "cpu", 4)
            return None

    buf = io.BytesIO()
    Odd(buf, protocol=2).dump({"w": tensor(_Storage("FloatStorage", "0", 4), 0, (4,), (1,))})
    path = str(tmp_path / "pid.pt")
    write_archive(path, buf.getvalue(), {"0": np.zeros(4, "<f4").tobytes()})
    assert_weights_error(path, "storage '0' has an unknown type")


def test_empty_and_missing_files(tmp_path):
    empty = str(tmp_path / "empty.pt")
    open(empty, "wb").close()
    assert_weights_error(empty)
    with pytest.raises(sg.WeightsError, match="no such file"):
        sg.load(str(tmp_path / "absent.pt"))


# ----------------------------------------------------------------------------
# the pickle interpreter against Python's own unpickler


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False), st.text(max_size=8), st.binary(max_size=8))
keys = st.one_of(st.text(max_size=6), st.integers(-2**40, 2**40), st.booleans(), st.none(),
                 st.tuples(st.integers(0, 9), st.text(max_size=3)))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.tuples(inner, inner), st.tuples(inner),
        st.dictionaries(keys, inner, max_size=5),
        st.dictionaries(keys, inner, max_size=5).map(collections.OrderedDict),
        st.frozensets(keys, max_size=5), st.sets(keys, max_size=5)),
    max_leaves=25)


@FAST
@given(obj=values, protocol=st.integers(0, 5))
def test_interpreter_matches_pickle_loads(obj, protocol):
    from streamgru.formats.guard import Budget
    from streamgru.formats.torch_pickle import unpickle

    data = pickle.dumps(obj, protocol=protocol)
    got = unpickle(data, "x.pt", Budget("x.pt", len(data)), lambda pid: pid)
    assert got == pickle.loads(data) and type(got) is type(obj)
