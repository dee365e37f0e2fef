"""Parity with PyTorch over T=300 real-valued samples, float32 within 2e-5.

GRU / LSTM / RNN x num_layers 1-3 x bias x (LSTM proj_size | RNN relu) x
(with / without a Linear head), converted two ways:

- ``sg.from_torch(module)`` in this process;
- ``torch.save(state_dict)`` then ``sg.load`` in a subprocess in which
  ``import torch`` fails, all cases in one subprocess run.

Also the cells stepped one sample at a time, nn.Sequential with every
supported activation module, functional activations in a traced forward,
and what from_torch refuses.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import streamgru as sg

from torch_fixtures import H, I, O, T, Case, build, cases, inputs, torch_outputs

TOL = 2e-5
CASES = cases()
IDS = [c.id for c in CASES]


def options(case):
    return {"rnn_nonlinearity": "relu"} if case.relu else {}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_from_torch(case):
    net = build(case, seed=len(case.id))
    x = inputs(seed=case.num_layers)
    expect = torch_outputs(net, x)
    # a bare recurrent module converts directly; with a head it is traced
    model = sg.from_torch(net if case.head else net.rnn)
    assert model.dtype == np.float32
    got = model.stream().process(x)
    assert got.shape == expect.shape == (T, O if case.head else (7 if case.proj else H))
    np.testing.assert_allclose(got, expect, rtol=0, atol=TOL)


def test_from_torch_step_by_step_and_batch():
    net = build(Case("LSTM", 2, True, proj=True, head=True))
    x = inputs(seed=5)
    expect = torch_outputs(net, x)
    model = sg.from_torch(net)
    s = model.stream()
    got = np.stack([s.step(row) for row in x])
    np.testing.assert_allclose(got, expect, rtol=0, atol=TOL)
    b = model.streams(3)
    X = np.stack([x, x[::-1].copy(), x * 0.5])
    Y = b.process(X)
    for i in range(3):
        np.testing.assert_allclose(Y[i], torch_outputs(net, X[i]), rtol=0, atol=TOL)


def test_from_torch_float64():
    net = build(Case("GRU", 2, True, head=True)).double()
    x = inputs(seed=2).astype(np.float64)
    with torch.no_grad():
        expect = net(torch.from_numpy(x)[:, None])[:, 0].numpy()
    got = sg.from_torch(net, dtype=np.float64).stream().process(x)
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------
# torch.save(state_dict) -> sg.load with torch unimportable


NO_TORCH = textwrap.dedent("""
    import json, sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("the torch block did not work")

    import numpy as np
    import streamgru as sg

    results = {}
    for case in json.load(open(sys.argv[1])):
        try:
            model = sg.load(case["path"], **case["options"])
            got = model.stream().process(np.load(case["x"]))
            expect = np.load(case["y"])
            results[case["id"]] = {
                "shape_ok": got.shape == expect.shape,
                "err": float(np.max(np.abs(got - expect))),
                "dtype": str(got.dtype),
            }
        except Exception as exc:
            results[case["id"]] = {"error": f"{type(exc).__name__}: {exc}"}
    torch_modules = [m for m in sys.modules if m.split(".")[0] == "torch"]
    print(json.dumps({"results": results, "torch_modules": torch_modules}))
""")


def _cell_state_dicts():
    """(id, state dict, options, torch outputs, x) for the three cells."""
    out = []
    x = inputs(seed=9)
    for name, cell, opts in (
        ("GRUCell", torch.nn.GRUCell(I, H), {}),
        ("LSTMCell", torch.nn.LSTMCell(I, H), {}),
        ("RNNCell-relu", torch.nn.RNNCell(I, H, nonlinearity="relu"), {"rnn_nonlinearity": "relu"}),
    ):
        out.append((name, cell, opts, step_cell(cell, x), x))
    return out


def step_cell(cell, x):
    """Torch's cell stepped over the rows of x, state carried: the reference stream."""
    outs, state = [], None
    with torch.no_grad():
        for row in torch.from_numpy(x):
            state = cell(row[None], state)
            h = state[0] if isinstance(state, tuple) else state
            outs.append(h[0].numpy().copy())
    return np.stack(outs)


@pytest.fixture(scope="module")
def no_torch_run(tmp_path_factory):
    """Save every case with torch, then load and run them all in one
    subprocess where torch cannot be imported."""
    folder = tmp_path_factory.mktemp("no_torch")
    specs = []
    for i, case in enumerate(CASES):
        net = build(case, seed=len(case.id))
        x = inputs(seed=case.num_layers)
        sd = net.state_dict()
        # alternate plain state dicts and checkpoint dicts, .pt and .pth
        obj = sd if i % 2 else {"model_state_dict": sd, "epoch": i}
        path = str(folder / f"{case.id}.{'pt' if i % 3 else 'pth'}")
        torch.save(obj, path)
        np.save(folder / f"{case.id}.x.npy", x)
        np.save(folder / f"{case.id}.y.npy", torch_outputs(net, x))
        specs.append({"id": case.id, "path": path, "options": options(case),
                      "x": str(folder / f"{case.id}.x.npy"), "y": str(folder / f"{case.id}.y.npy")})
    torch.manual_seed(3)
    for name, cell, opts, expect, x in _cell_state_dicts():
        path = str(folder / f"{name}.pt")
        torch.save(cell.state_dict(), path)
        np.save(folder / f"{name}.x.npy", x)
        np.save(folder / f"{name}.y.npy", expect)
        specs.append({"id": name, "path": path, "options": opts,
                      "x": str(folder / f"{name}.x.npy"), "y": str(folder / f"{name}.y.npy")})
    spec_file = folder / "cases.json"
    spec_file.write_text(json.dumps(specs))
    script = folder / "run.py"
    script.write_text(NO_TORCH)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(sg.__file__)), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.run([sys.executable, str(script), str(spec_file)], capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_no_torch_subprocess_never_imported_torch(no_torch_run):
    assert no_torch_run["torch_modules"] == []


@pytest.mark.parametrize("case_id", IDS + ["GRUCell", "LSTMCell", "RNNCell-relu"])
def test_saved_state_dict_without_torch(no_torch_run, case_id):
    result = no_torch_run["results"][case_id]
    assert "error" not in result, result
    assert result["shape_ok"] and result["dtype"] == "float32"
    assert result["err"] <= TOL, result


# ----------------------------------------------------------------------------
# cells, Sequential, activations, traced forward


@pytest.mark.parametrize("kind", ["GRUCell", "LSTMCell", "RNNCell"])
def test_cells_from_torch(kind):
    torch.manual_seed(4)
    cell = {"GRUCell": torch.nn.GRUCell(I, H, bias=False), "LSTMCell": torch.nn.LSTMCell(I, H),
            "RNNCell": torch.nn.RNNCell(I, H, nonlinearity="relu")}[kind]
    x = inputs(seed=4)
    got = sg.from_torch(cell).stream().process(x)
    np.testing.assert_allclose(got, step_cell(cell, x), rtol=0, atol=TOL)


ACTIVATION_MODULES = [
    torch.nn.ReLU(), torch.nn.Tanh(), torch.nn.Sigmoid(), torch.nn.LeakyReLU(0.2),
    torch.nn.ELU(0.7), torch.nn.GELU(), torch.nn.Softmax(dim=-1), torch.nn.LogSoftmax(dim=-1),
    torch.nn.Hardsigmoid(), torch.nn.Identity(), torch.nn.Dropout(0.5),
]


@pytest.mark.parametrize("act", ACTIVATION_MODULES, ids=lambda m: type(m).__name__)
def test_sequential_with_each_activation(act):
    torch.manual_seed(5)
    # the activation after a Linear folds into it; after the GRU it needs its own layer
    seq = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Linear(I, 6), act),
        torch.nn.GRU(6, H),
    ).eval()
    head = torch.nn.Sequential(act, torch.nn.Linear(H, O), act).eval()
    x = inputs(seed=6)
    with torch.no_grad():
        expect = head(seq(torch.from_numpy(x))[0]).numpy()
    full = torch.nn.Sequential(*seq, *head)
    model = sg.from_torch(full)
    got = model.stream().process(x)
    np.testing.assert_allclose(got, expect, rtol=0, atol=TOL)


class Functional(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(I, 8)
        self.lstm = torch.nn.LSTM(8, H, num_layers=2, batch_first=True)
        self.drop = torch.nn.Dropout(0.3)
        self.fc = torch.nn.Linear(H, O)

    def forward(self, x, hidden=None):
        x = torch.tanh(self.inp(x))
        y, (h, c) = self.lstm(x)
        y = F.leaky_relu(self.drop(y), 0.1).contiguous()
        y = F.elu(y, alpha=0.5).sigmoid()
        return F.log_softmax(self.fc(y), dim=-1)


def test_traced_forward_with_functional_activations():
    torch.manual_seed(6)
    net = Functional().eval()
    x = inputs(seed=7)
    with torch.no_grad():
        expect = net(torch.from_numpy(x)[None])[0].numpy()
    model = sg.from_torch(net)
    assert model.metadata["format"] == "pytorch" and "Functional" in model.metadata["source"]
    np.testing.assert_allclose(model.stream().process(x), expect, rtol=0, atol=TOL)


def test_from_torch_copies_and_leaves_the_module_alone():
    net = build(Case("GRU", 1, True, head=True))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = sg.from_torch(net)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    # the model holds copies: training the module on does not change it
    with torch.no_grad():
        net.head.weight.add_(1.0)
    np.testing.assert_array_equal(model.layers[-1].weight, before["head.weight"].numpy())


# ----------------------------------------------------------------------------
# what from_torch refuses


class Gated(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(I, I)

    def forward(self, x):
        # (x * self.fc(x) alone loads, as a graph)
        return x * self.fc(x).sum(-1, keepdim=True)


class ReturnsState(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(I, H)

    def forward(self, x):
        return self.gru(x)


class UsesHidden(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(I, H)
        self.fc = torch.nn.Linear(H, O)

    def forward(self, x):
        _, h = self.gru(x)
        return self.fc(h)


class TakesInitialState(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(I, H)

    def forward(self, x, h0):
        y, _ = self.gru(x, h0)
        return y


class DataDependent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(I, O)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


@pytest.mark.parametrize("module, needles", [
    (torch.nn.GRU(I, H, bidirectional=True), ["bidirectional", "future"]),
    (torch.nn.Sequential(torch.nn.Linear(I, H), torch.nn.Conv1d(1, 1, 1)), ["1", "Conv1d", "feature axis"]),
    (torch.nn.Sequential(torch.nn.GRUCell(I, H)), ["GRUCell", "fresh state"]),
    (torch.nn.Sequential(torch.nn.Linear(I, H), torch.nn.GELU(approximate="tanh")), ["approximate='tanh'"]),
    (torch.nn.Sequential(torch.nn.Linear(I, H), torch.nn.Softmax(dim=1)), ["dim=1", "dim=-1"]),
    (torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(I, H)), ["before the first layer"]),
    (torch.nn.Sequential(torch.nn.Dropout()), ["no GRU, LSTM, RNN or Linear"]),
    (Gated(), ["sums over an axis", "stacked branches", "return x * self.fc(x)"]),
    (ReturnsState(), ["return the output of its last layer as one tensor"]),
    (UsesHidden(), ["final hidden state"]),
    (TakesInitialState(), ["extra argument 'h0'"]),
    (DataDependent(), ["cannot trace DataDependent.forward"]),
    ("not a module", ["expects a torch.nn.Module"]),
], ids=lambda v: type(v).__name__ if not isinstance(v, list) else "")
def test_from_torch_refuses(module, needles):
    with pytest.raises(sg.WeightsError) as err:
        sg.from_torch(module)
    for n in needles:
        assert n in str(err.value), str(err.value)
