"""sg.from_torch on the forward functions tutorials and audio models write:
many-to-one classifiers, subclasses of the supported modules, learned
initial states. Each is a live module streamed against its own forward over
1000 steps: float32 within 1e-5, float64 (module.double()) within 1e-9. A
many-to-one module answers once per sequence, so stream row t is compared
with the module run on the sequence ending at t.
"""

import inspect

import numpy as np
import pytest
import torch

import streamgru as sg

from torch_fixtures import inputs

STEPS = 1000
I, H, O = 4, 9, 3
# prefixes a many-to-one module is run on (each a full torch forward)
ENDS = [0, 1, 7, 63, 250, 500, 777, STEPS - 1]


def sequence_outputs(net, x, batch_first, dtype):
    """The module's forward on the whole sequence, (T, out)."""
    xt = torch.from_numpy(x).to(dtype)
    xt = xt[None] if batch_first else xt[:, None]
    with torch.no_grad():
        y = net(xt)
    return (y[0] if batch_first else y[:, 0]).numpy()


def prefix_outputs(net, x, batch_first, dtype):
    """The many-to-one module's answer for each sequence x[:t + 1], t in ENDS."""
    out = []
    for t in ENDS:
        xt = torch.from_numpy(x[: t + 1]).to(dtype)
        with torch.no_grad():
            out.append(net(xt[None] if batch_first else xt[:, None])[0].numpy())
    return np.stack(out)


def check(net, batch_first=True, many_to_one=False, seed=0):
    """Convert, stream 1000 steps in float32 and float64, compare with torch."""
    x = inputs(seed=seed, steps=STEPS, size=I)
    for dtype, tdtype, tol in ((np.float32, torch.float32, 1e-5), (np.float64, torch.float64, 1e-9)):
        net = net.to(tdtype).eval()
        model = sg.from_torch(net, dtype=dtype)
        assert model.metadata["many_to_one"] is many_to_one
        got = model.stream().process(x.astype(dtype))
        if many_to_one:
            np.testing.assert_allclose(got[ENDS], prefix_outputs(net, x, batch_first, tdtype),
                                       rtol=0, atol=tol)
        else:
            np.testing.assert_allclose(got, sequence_outputs(net, x, batch_first, tdtype),
                                       rtol=0, atol=tol)
    return model


# ----------------------------------------------------------------------------
# many-to-one


class LastStep(torch.nn.Module):
    """The tutorial classifier: y[:, -1] (batch_first) or y[-1]."""

    def __init__(self, kind="GRU", batch_first=True, layers=1):
        super().__init__()
        self.batch_first = batch_first
        self.rnn = getattr(torch.nn, kind)(I, H, num_layers=layers, batch_first=batch_first)
        self.fc = torch.nn.Linear(H, O)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1] if self.batch_first else y[-1])


class LastStepFull(LastStep):
    def forward(self, x):
        y, _ = self.rnn(x)
        return torch.softmax(self.fc(y[:, -1, :]), dim=-1)


class FinalHidden(torch.nn.Module):
    """h_n[-1] (any kind, any layer count), h_n[k], or h_n.squeeze(0)."""

    def __init__(self, kind="GRU", layers=2, pick="last"):
        super().__init__()
        self.kind, self.pick = kind, pick
        self.rnn = getattr(torch.nn, kind)(I, H, num_layers=layers, batch_first=True)
        self.fc = torch.nn.Linear(H, O)

    def forward(self, x):
        if self.kind == "LSTM":
            _, (h, c) = self.rnn(x)
        else:
            _, h = self.rnn(x)
        if self.pick == "squeeze":
            return self.fc(h.squeeze(0))
        return self.fc(h[0] if self.pick == "first" else h[-1])


@pytest.mark.parametrize("kind", ["GRU", "LSTM", "RNN"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_last_time_step(kind, batch_first):
    torch.manual_seed(0)
    model = check(LastStep(kind, batch_first, layers=2), batch_first, many_to_one=True)
    assert [type(l).__name__ for l in model.layers] == [kind, kind, "Dense"]


def test_last_time_step_full_index_then_softmax():
    torch.manual_seed(1)
    model = check(LastStepFull(), many_to_one=True)
    assert model.layers[-1].activation.name == "softmax"


@pytest.mark.parametrize("kind", ["GRU", "LSTM", "RNN"])
def test_final_hidden_state_of_the_last_layer(kind):
    torch.manual_seed(2)
    check(FinalHidden(kind, layers=2), many_to_one=True)


def test_final_hidden_state_squeezed():
    torch.manual_seed(3)
    check(FinalHidden("LSTM", layers=1, pick="squeeze"), many_to_one=True)


def test_final_hidden_state_of_a_lower_layer_drops_the_layers_above():
    torch.manual_seed(4)
    model = check(FinalHidden("GRU", layers=3, pick="first"), many_to_one=True)
    assert [type(l).__name__ for l in model.layers] == ["GRU", "Dense"]


# ----------------------------------------------------------------------------
# subclasses of supported modules are leaves


class MyGRU(torch.nn.GRU):
    """A subclass whose forward fx would otherwise enter (and fail on)."""

    def forward(self, x, hx=None):
        if x.dim() == 3 and x.shape[0] > 10**9:  # data-dependent: untraceable
            raise ValueError
        return super().forward(x, hx)


class MyLinear(torch.nn.Linear):
    pass


class MyLSTM(torch.nn.LSTM):
    pass


class WithSubclasses(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = MyGRU(I, H, batch_first=True)
        self.lstm = MyLSTM(H, H, batch_first=True)
        self.fc = MyLinear(H, O)

    def forward(self, x):
        y, _ = self.gru(x)
        y, _ = self.lstm(y)
        return self.fc(y)


def test_subclasses_are_leaves():
    torch.manual_seed(5)
    model = check(WithSubclasses())
    assert [type(l).__name__ for l in model.layers] == ["GRU", "LSTM", "Dense"]


def test_a_subclass_given_on_its_own():
    torch.manual_seed(6)
    gru = MyGRU(I, H)
    x = inputs(seed=6, steps=STEPS, size=I)
    with torch.no_grad():
        expect = gru(torch.from_numpy(x)[:, None])[0][:, 0].numpy()
    np.testing.assert_allclose(sg.from_torch(gru).stream().process(x), expect, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------
# learned and constant initial states


class LearnedState(torch.nn.Module):
    def __init__(self, kind="GRU", layers=2, expand=True, proj=0):
        super().__init__()
        self.kind, self.expand = kind, expand
        kw = {"proj_size": proj} if proj else {}
        self.rnn = getattr(torch.nn, kind)(I, H, num_layers=layers, batch_first=True, **kw)
        out = proj or H
        self.h0 = torch.nn.Parameter(torch.randn(layers, 1, out))
        if kind == "LSTM":
            self.c0 = torch.nn.Parameter(torch.randn(layers, 1, H))
        self.fc = torch.nn.Linear(out, O)

    def forward(self, x):
        h0 = self.h0.expand(-1, x.size(0), -1).contiguous() if self.expand else self.h0
        if self.kind == "LSTM":
            c0 = self.c0.expand(-1, x.size(0), -1).contiguous() if self.expand else self.c0
            y, _ = self.rnn(x, (h0, c0))
        else:
            y, _ = self.rnn(x, h0)
        return self.fc(y)


@pytest.mark.parametrize("kind, expand, proj", [
    ("GRU", True, 0), ("GRU", False, 0), ("RNN", True, 0), ("LSTM", True, 0), ("LSTM", False, 5),
])
def test_learned_initial_state(kind, expand, proj):
    torch.manual_seed(7)
    net = LearnedState(kind, expand=expand, proj=proj)
    model = check(net)
    # the state a stream starts from (and reset() returns to): per layer h, LSTM h then c
    parts = []
    for k in range(2):
        parts.append(net.h0[k, 0].detach().double().numpy())
        if kind == "LSTM":
            parts.append(net.c0[k, 0].detach().double().numpy())
    np.testing.assert_array_equal(model.initial_state, np.concatenate(parts))
    s = model.stream()
    s.process(inputs(seed=1, steps=10, size=I))
    s.reset()
    np.testing.assert_array_equal(s.get_state(), model.initial_state)


class TutorialZeros(torch.nn.Module):
    """``h0 = torch.zeros(layers, x.size(0), H).to(x)``, as tutorials write it."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(I, H, num_layers=2, batch_first=True)
        self.fc = torch.nn.Linear(H, O)

    def forward(self, x):
        h0 = torch.zeros(2, x.size(0), H).to(x)
        c0 = torch.zeros(2, x.shape[0], H, device=x.device, dtype=x.dtype)
        out, _ = self.lstm(x, (h0, c0))
        return self.fc(out[:, -1, :])


def test_tutorial_zero_state_and_last_step():
    torch.manual_seed(8)
    model = check(TutorialZeros(), many_to_one=True)
    assert not model.initial_state.any()


# ----------------------------------------------------------------------------
# what is refused, and how it is said


class FirstStep(LastStep):
    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, 0])


class UsesCell(FinalHidden):
    def forward(self, x):
        _, (h, c) = self.rnn(x)
        return self.fc(c[-1])


class StateFromInput(LastStep):
    def forward(self, x):
        y, _ = self.rnn(x, x[:, :1, :1].expand(1, -1, H).transpose(0, 1).contiguous())
        return self.fc(y)


class Cumulative(LastStep):
    def forward(self, x):
        y, _ = self.rnn(x)
        return torch.cumsum(self.fc(y), 1)


class WithNorm(LastStep):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.InstanceNorm1d(H)  # statistics over the whole sequence: not streamable

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(self.norm(y))


class RecurrentAfterLast(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.GRU(I, H, batch_first=True)
        self.b = torch.nn.GRU(H, H, batch_first=True)

    def forward(self, x):
        y, _ = self.a(x)
        z, _ = self.b(y[:, -1:].squeeze(1)[:, None])
        return z


def line_of(cls, text):
    src, start = inspect.getsourcelines(cls.forward)
    return start + next(i for i, line in enumerate(src) if text in line)


@pytest.mark.parametrize("cls, args, code, needles", [
    (FirstStep, (), "return self.fc(y[:, 0])", ["indexes the output sequence with [:, 0]", "y[:, -1]"]),
    (UsesCell, ("LSTM",), "return self.fc(c[-1])", ["cell state c_n", "h_n[-1]"]),
    (StateFromInput, (), "self.rnn(x, x[", ["initial state", "computed from the input"]),
    (Cumulative, (), "return torch.cumsum(self.fc(y), 1)", ["calls cumsum", "not supported"]),
    (WithNorm, (), "return self.fc(self.norm(y))", ["module norm", "InstanceNorm1d", "not supported"]),
], ids=["first-step", "cell-state", "state-from-input", "cumsum", "module"])
def test_refusals_name_the_line_of_forward(cls, args, code, needles):
    torch.manual_seed(9)
    with pytest.raises(sg.WeightsError) as err:
        sg.from_torch(cls(*args))
    msg = str(err.value)
    assert f"{cls.__name__}.forward, line {line_of(cls, code)} (test_torch_trace.py): " in msg, msg
    assert code in msg, msg
    for n in needles:
        assert n in msg, msg
    assert "getitem_" not in msg and "call_function" not in msg  # never fx's own names alone


def test_recurrent_layer_after_the_last_step_is_refused():
    with pytest.raises(sg.WeightsError, match="line .*indexes the output sequence|recurrent layer after"):
        sg.from_torch(RecurrentAfterLast())



class BothOutputs(FinalHidden):
    def forward(self, x):
        y, h = self.rnn(x)
        z = self.fc(y)
        return self.fc(h[-1]) + z[:, -1]


def test_final_state_after_layers_ran_on_the_output_is_refused():
    with pytest.raises(sg.WeightsError) as err:
        sg.from_torch(BothOutputs())
    assert f"line {line_of(BothOutputs, 'return self.fc(h[-1])')}" in str(err.value)
    assert "final state after later layers" in str(err.value)
