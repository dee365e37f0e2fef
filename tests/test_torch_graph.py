"""sg.from_torch on modules whose forward branches (residual TCN blocks with
weight_norm or BatchNorm, sums and products of branches, gated
activations), loaded as graph models and streamed against the module's own
forward over 1000 samples, one at a time and in uneven blocks: float32
within 1e-5, float64 (module.double()) within 1e-9. Refusals name the line
of forward and what to write instead.
"""

import inspect
import itertools

import numpy as np
import pytest

import streamgru as sg

torch = pytest.importorskip("torch")
from test_conv_torch import Chomp as Chomp1d  # Bai et al.'s x[:, :, :-p]

nn = torch.nn
F = torch.nn.functional
wn = torch.nn.utils.parametrizations.weight_norm

T = 1000
BLOCKS = [0, 1, 7, 64, 255, 256, 300, 77, 40]  # uneven block sizes, summing to T


def run_torch(net, X, cf, tdtype):
    """The module's forward on one sequence X (T, C), as (T, out) rows."""
    x = torch.from_numpy(X.T[None].copy() if cf else X[None]).to(tdtype)
    with torch.no_grad():
        y = net(x)[0]
    return y.numpy()


def check(net, I, cf=True, out_cf=False, seed=0, graph=True):
    """Convert in float32 and float64 and stream T samples one at a time and
    in blocks against torch; returns the float32 model."""
    X = np.random.default_rng(seed).normal(size=(T, I))
    models = []
    for dtype, tdtype, tol in ((np.float64, torch.float64, 1e-9), (np.float32, torch.float32, 1e-5)):
        net = net.to(tdtype).eval()
        model = sg.from_torch(net, dtype=dtype)
        assert (model.graph is not None) == graph and model.latency == 0
        want = run_torch(net, X.astype(dtype), cf, tdtype)
        want = want.T if out_cf else want
        s = model.stream()
        steps = np.array([s.step(x) for x in X.astype(dtype)])
        np.testing.assert_allclose(steps, want, rtol=0, atol=tol)
        s.reset()
        ends = np.cumsum(BLOCKS)
        blocks = np.concatenate([s.process(X[a:b].astype(dtype)) for a, b in itertools.pairwise(ends)])
        np.testing.assert_allclose(blocks, want, rtol=0, atol=tol)
        models.append(model)
    return models[1]


# ----------------------------------------------------------------------------
# the residual TCN (Bai et al.), as people write it


def norm(conv, how):
    if how == "new":
        return wn(conv)
    if how == "old":
        return torch.nn.utils.weight_norm(conv)
    return conv


class TemporalBlock(nn.Module):
    """Two causal dilated convs, an optional 1x1 downsample, relu(out + res)."""

    def __init__(self, cin, cout, k, d, causal="chomp", wnorm="new", act="relu"):
        super().__init__()
        p = (k - 1) * d
        self.causal, self.p = causal, p
        padding = p if causal == "chomp" else 0
        self.conv1 = norm(nn.Conv1d(cin, cout, k, padding=padding, dilation=d), wnorm)
        self.conv2 = norm(nn.Conv1d(cout, cout, k, padding=padding, dilation=d), wnorm)
        self.chomp1, self.chomp2 = Chomp1d(p), Chomp1d(p)
        self.act1 = nn.ReLU() if act == "relu" else nn.Tanh()
        self.drop = nn.Dropout(0.2)
        self.downsample = nn.Conv1d(cin, cout, 1) if cin != cout else None
        self.bn = nn.BatchNorm1d(cout)  # the F.pad variant normalises its first conv
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 1.5)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.3, 0.3)

    def forward(self, x):
        if self.causal == "chomp":
            out = self.drop(self.act1(self.chomp1(self.conv1(x))))
            out = self.drop(torch.relu(self.chomp2(self.conv2(out))))
        else:
            out = self.drop(self.act1(self.bn(self.conv1(F.pad(x, (self.p, 0))))))
            out = torch.tanh(self.conv2(F.pad(out, (self.p, 0))))
        res = x if self.downsample is None else self.downsample(x)
        return F.relu(out + res)


class TCN(nn.Module):
    """Input (N, 3, T) -> stacked blocks (dilations 1, 2, 4) -> a head."""

    def __init__(self, causal="chomp", wnorm="new", act="relu", head="linear"):
        super().__init__()
        chans = [3, 8, 8, 6]
        self.blocks = nn.Sequential(*[
            TemporalBlock(chans[i], chans[i + 1], 3, 2 ** i, causal, wnorm, act) for i in range(3)])
        self.head = head
        self.gru = nn.GRU(6, 5, batch_first=True) if head == "gru" else None
        self.fc = nn.Linear(5 if head == "gru" else 6, 2)

    def forward(self, x):
        y = self.blocks(x)
        if self.head == "last":
            return self.fc(y[:, :, -1])
        y = y.transpose(1, 2)
        if self.gru is not None:
            y, _ = self.gru(y)
        return self.fc(y)


def randomise_gains(net, gen):
    """Weight-norm gains other than ||v|| (their value at creation), set
    without a forward: the old API's ``weight`` is then stale."""
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "parametrizations"):
                g = m.parametrizations.weight.original0
                g.copy_(torch.rand(g.shape, generator=gen) + 0.5)
            if hasattr(m, "weight_g"):
                m.weight_g.copy_(torch.rand(m.weight_g.shape, generator=gen) + 0.5)


@pytest.mark.parametrize("causal, wnorm, act, head", [
    ("chomp", "new", "relu", "linear"),
    ("chomp", "old", "tanh", "gru"),
    ("pad", None, "relu", "gru"),
], ids=["chomp-weightnorm-linear", "chomp-old-weightnorm-gru", "pad-gru"])
def test_residual_tcn_matches_torch(causal, wnorm, act, head):
    torch.manual_seed(1)
    net = TCN(causal, wnorm, act, head)
    randomise_gains(net, torch.Generator().manual_seed(2))
    model = check(net, 3)
    kinds = [type(l).__name__ for l in model.layers]
    # the activations (and BatchNorm) fold into the convs, relu(out + res) into the sum
    assert kinds.count("Conv1d") == 8 and kinds.count("Elementwise") == 3, kinds
    assert ("GRU" in kinds) == (head == "gru")
    assert "channels-first" in model.metadata["modules"]


def test_one_block_without_downsample():
    """relu(net(x) + x): a chain up to the skip, which the activation follows
    (once folded into the last conv, ahead of the skip: wrong)."""
    torch.manual_seed(10)
    check(TemporalBlock(3, 3, 3, 2), 3, out_cf=True)


class WeightNormedChain(nn.Module):
    """No branch: a chain, whose weight-normed conv and Linear fold the same way."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.utils.weight_norm(nn.Conv1d(3, 4, 3, padding=4, dilation=2))
        self.fc = wn(nn.Linear(4, 2), dim=None)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)[:, :, :-4]).transpose(1, 2))


def test_weight_norm_in_a_chain():
    torch.manual_seed(8)
    net = WeightNormedChain()
    randomise_gains(net, torch.Generator().manual_seed(9))
    check(net, 3, graph=False)


def test_tcn_classifier_takes_the_last_step():
    """``fc(y[:, :, -1])``: step t is the module's answer for x[:t + 1]."""
    torch.manual_seed(3)
    net = TCN(head="last").eval()
    model = sg.from_torch(net)
    assert model.metadata["many_to_one"] is True
    X = np.random.default_rng(4).normal(size=(T, 3)).astype(np.float32)
    got = model.stream().process(X)
    for t in (0, 1, 9, 500, T - 1):
        np.testing.assert_allclose(got[t], run_torch(net, X[: t + 1], True, torch.float32),
                                   rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------
# sums, products and gates of branches


C = 4
COMBINE = {
    "a + b": lambda s, z, a, b, c: a + b,
    "torch.add": lambda s, z, a, b, c: torch.add(a, b),
    "a += b": lambda s, z, a, b, c: s.iadd(a, b),
    "sum([...])": lambda s, z, a, b, c: sum([a, b, c]),
    "stack.sum(0)": lambda s, z, a, b, c: torch.stack([a, b, c]).sum(0),
    "stack.mean": lambda s, z, a, b, c: torch.stack([a, b], dim=0).mean(dim=0),
    "a * b": lambda s, z, a, b, c: a * b + c,
    "scaled": lambda s, z, a, b, c: 0.5 * a - b / 4 + (-c) * 2,
    "gate-chunk": lambda s, z, a, b, c: s.gate_chunk(z),
    "gate-split": lambda s, z, a, b, c: s.gate_split(z),
    "gate-slices": lambda s, z, a, b, c: torch.sigmoid(z[:, C:]) * torch.tanh(z[:, :C]),
    "gate-branches": lambda s, z, a, b, c: s.gate(a, b),
}


class Branches(nn.Module):
    """(N, 2, T): causal conv branches combined, then a residual 1x1 head."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.a = nn.Conv1d(2, C, 3, padding=2)
        self.b = nn.Conv1d(2, C, 2, dilation=3)
        self.c = nn.Conv1d(2, C, 1)
        self.z = nn.Conv1d(2, 2 * C, 3, dilation=2)
        self.out = nn.Conv1d(C, 2, 1)
        self.pad = nn.ZeroPad1d((4, 0))

    def iadd(self, a, b):
        a += b
        return a

    def gate(self, a, b):
        return torch.tanh(a) * torch.sigmoid(b)

    def gate_chunk(self, z):
        t, g = torch.chunk(z, 2, dim=1)
        return torch.tanh(t) * torch.sigmoid(g)

    def gate_split(self, z):
        t, g = z.split(C, 1)
        return self.gate(t, g)

    def forward(self, x):
        a = self.a(x)[:, :, :-2]
        b = self.b(F.pad(x, (3, 0)))
        z = self.z(self.pad(x))
        y = COMBINE[self.how](self, z, a, b, self.c(x))
        return self.out(y) + x


@pytest.mark.parametrize("how", list(COMBINE))
def test_branches_match_torch(how):
    torch.manual_seed(5)
    model = check(Branches(how), 2, out_cf=True)
    gates = [l for l in model.layers if type(l).__name__ == "Elementwise" and l.op == "gate"]
    assert len(gates) == (how.startswith("gate") and how != "gate-branches")
    if how == "gate-slices":  # sigmoid first in forward: still tanh of the first half
        assert (gates[0].activation.name, gates[0].secondary.name) == ("tanh", "sigmoid")


class ScaledGru(nn.Module):
    """Scaling after a recurrent chain: no branch, but no chain either."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 6, batch_first=True)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        y, _ = self.gru(x)
        return self.fc(y) * 0.5 + torch.tanh(self.fc(y[..., :6]))


def test_scaled_recurrent_head_matches_torch():
    torch.manual_seed(6)
    check(ScaledGru(), 3, cf=False)


# ----------------------------------------------------------------------------
# refusals: the line of forward, what it does, what to write instead


class NotCausal(Branches):
    def __init__(self):
        super().__init__("a + b")
        self.same = nn.Conv1d(2, C, 3, padding=1)  # "same": needs one future sample

    def forward(self, x):
        return self.same(x) + self.c(x)


class Concat(Branches):
    def forward(self, x):
        return torch.cat([self.c(x), self.b(F.pad(x, (3, 0))), x], 1)


def test_cat_over_the_channels_matches_torch():
    # (refused while a graph had no concat node)
    torch.manual_seed(7)
    check(Concat("a + b"), 2, out_cf=True)


class CatOverTime(Branches):
    def forward(self, x):
        return torch.cat([self.c(x), self.b(F.pad(x, (3, 0)))], 2)


class Strided(Branches):
    def __init__(self):
        super().__init__("a + b")
        self.s = nn.Conv1d(2, C, 1, stride=2)

    def forward(self, x):
        return self.s(x) + self.c(x)


class AddsConstant(Branches):
    def forward(self, x):
        return self.c(x) * self.c(x) + 1.0


class DropsTheStart(Branches):
    def forward(self, x):
        return self.c(x)[:, :, 1:] + self.c(x)[:, :, :-1]


class OwnForward(nn.Conv1d):
    def forward(self, x):
        return super().forward(F.pad(x, (2, 0)))


class SubclassedConv(Branches):
    def __init__(self):
        super().__init__("a + b")
        self.t = OwnForward(2, C, 3)

    def forward(self, x):
        return self.t(x) + self.c(x)


def test_a_weight_normed_conv_subclass_with_its_own_forward_is_refused_in_a_chain():
    """Under weight_norm fx keeps it whole: its unpadded weights would
    stream as a conv with a delay, not what its forward does."""
    net = nn.Sequential(wn(OwnForward(2, C, 3)), nn.ReLU())
    with pytest.raises(sg.WeightsError, match="OwnForward.*own forward"):
        sg.from_torch(net)


def line_of(cls, text):
    src, start = inspect.getsourcelines(cls.forward)
    return start + next(i for i, line in enumerate(src) if text in line)


@pytest.mark.parametrize("cls, code, needles", [
    (NotCausal, "return self.same(x) + self.c(x)", ["not causal", "F.pad(x, (2, 0))", "y[:, :, :-2]"]),
    (CatOverTime, "return torch.cat(", ["concatenates over dim=2", "not the channel axis"]),
    (Strided, "return self.s(x) + self.c(x)", ["stride 2", "one rate"]),
    (AddsConstant, "return self.c(x) * self.c(x) + 1.0", ["adds the constant 1.0", "bias"]),
    (DropsTheStart, "return self.c(x)[:, :, 1:]", ["indexes the time axis with [:, :, 1:]",
                                                   "y[:, :, -1]"]),
    (SubclassedConv, "return self.t(x) + self.c(x)", ["OwnForward", "own forward", "nn.Conv1d"]),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_graph_refusals_name_the_line_of_forward(cls, code, needles):
    torch.manual_seed(7)
    with pytest.raises(sg.WeightsError) as err:
        sg.from_torch(cls() if cls in (NotCausal, Strided, SubclassedConv) else cls("a + b"))
    msg = str(err.value)
    assert f"{cls.__name__}.forward, line {line_of(cls, code)} (test_torch_graph.py): " in msg, msg
    assert code in msg, msg
    for n in needles:
        assert n in msg, msg
