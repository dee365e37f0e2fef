"""sg.from_torch on convolutional models, streamed against PyTorch's own forward.

A CNN-GRU sensor classifier (batch-first input transposed for the convs,
BatchNorm1d folded into the conv, ReLU) and a small TCN (channels-first
input, dilated causal convs written both ways: a left pad before an
unpadded conv, and a padded conv with the chomp; PReLU; LayerNorm between
transposes), over 1200 steps: float32 within 1e-5, float64 within 1e-9.
"""

import numpy as np
import pytest

import streamgru as sg

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

T = 1200


def randomise_batchnorm(bn, gen):
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.5)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.weight.copy_(torch.randn(bn.num_features, generator=gen))
        bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.3)


class CnnGru(nn.Module):
    """Input (N, T, 3) -> per-step class scores (N, T, 4)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(3, 8, 5)
        self.bn = nn.BatchNorm1d(8)
        self.pad2 = nn.ConstantPad1d((4, 0), 0.0)
        self.conv2 = nn.Conv1d(8, 8, 3, dilation=2, groups=2)
        self.bn2 = nn.BatchNorm1d(8)
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = x.transpose(1, 2)
        x = F.pad(x, (4, 0))
        x = torch.relu(self.bn(self.conv1(x)))
        x = self.bn2(F.relu(self.conv2(self.pad2(x))))  # not foldable: after the relu
        x = x.permute(0, 2, 1)
        y, _ = self.gru(x)
        return self.fc(y)


class Chomp(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        return x[:, :, : -self.p].contiguous()


class Block(nn.Module):
    def __init__(self, c, d, shared):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, padding=2 * d, dilation=d)
        self.chomp = Chomp(2 * d)
        self.act = nn.PReLU() if shared else nn.PReLU(c)

    def forward(self, x):
        return self.act(self.chomp(self.conv(x)))


class TCN(nn.Module):
    """Input (N, 2, T) channels-first -> (N, T, 3)."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad1d((2, 0))
        self.inp = nn.Conv1d(2, 6, 3)
        self.blocks = nn.ModuleList([Block(6, d, shared=d % 2 == 0) for d in (1, 2, 4, 8, 16)])
        self.depthwise = nn.Conv1d(6, 6, 2, padding=3, dilation=3, groups=6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = self.inp(self.pad(x))
        for b in self.blocks:
            x = b(x)
        x = torch.tanh(self.depthwise(x)[:, :, :-3])
        x = self.norm(x.transpose(1, 2))
        return self.head(x)


def converted(net, dtype):
    net = net.eval()
    if dtype == np.float64:
        net = net.double()
    return net, sg.from_torch(net, dtype=dtype)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-9)])
def test_cnn_gru_classifier_matches_torch(dtype, tol):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = CnnGru()
    randomise_batchnorm(net.bn, gen)
    randomise_batchnorm(net.bn2, gen)
    net, model = converted(net, dtype)
    # conv1 + bn + relu fold into one conv; bn2 after a relu stays a layer
    assert [type(l).__name__ for l in model.layers] == ["Conv1d", "Conv1d", "BatchNorm", "GRU", "Dense"]
    assert model.layers[0].activation.name == "relu" and model.latency == 0
    X = np.random.default_rng(1).normal(size=(1, T, 3)).astype(dtype)
    with torch.no_grad():
        want = net(torch.from_numpy(X))[0].numpy()
    s = model.stream()
    np.testing.assert_allclose(s.process(X[0]), want, rtol=0, atol=tol)
    s.reset()
    half = T // 2
    steps = np.array([s.step(x) for x in X[0, :half]])
    np.testing.assert_allclose(steps, want[:half], rtol=0, atol=tol)
    b = model.streams(2)
    Yb = b.process(np.stack([X[0], X[0]]))
    np.testing.assert_allclose(Yb[1], want, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-9)])
def test_tcn_matches_torch(dtype, tol):
    torch.manual_seed(1)
    net, model = converted(TCN(), dtype)
    kinds = [type(l).__name__ for l in model.layers]
    assert kinds.count("Conv1d") == 7 and kinds.count("PReLU") == 5 and "LayerNorm" in kinds
    assert model.input_size == 2 and model.output_size == 3
    assert "a sample is x[:, :, t]" in model.metadata["modules"]
    X = np.random.default_rng(2).normal(size=(1, 2, T)).astype(dtype)
    with torch.no_grad():
        want = net(torch.from_numpy(X))[0].numpy()
    s = model.stream()
    got = np.concatenate([s.process(c) for c in np.split(X[0].T, [5, 77, 400])])
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-9)])
def test_sequential_of_causal_convs_matches_torch(dtype, tol):
    torch.manual_seed(2)
    net = nn.Sequential(nn.ConstantPad1d((2, 0), 0.0), nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4),
                        nn.ReLU(), nn.ZeroPad1d((4, 0)), nn.Conv1d(4, 3, 3, dilation=2), nn.PReLU(3),
                        nn.Conv1d(3, 2, 1))
    randomise_batchnorm(net[2], torch.Generator().manual_seed(3))
    net, model = converted(net, dtype)
    X = np.random.default_rng(3).normal(size=(1, 2, T)).astype(dtype)
    with torch.no_grad():
        want = net(torch.from_numpy(X))[0].numpy().T
    np.testing.assert_allclose(model.stream().process(X[0].T), want, rtol=0, atol=tol)


class Wrap(nn.Module):
    def __init__(self, body, pre=None):
        super().__init__()
        self.body = body
        self.pre = pre

    def forward(self, x):
        return self.body(x if self.pre is None else self.pre(x))


class GruThenConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)
        self.conv = nn.Conv1d(4, 4, 1)

    def forward(self, x):
        y, _ = self.gru(x)
        return self.conv(y)  # over the feature axis: no transpose


class NormOverTime(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 1)
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        return self.norm(self.conv(x))


class PadThenRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3)

    def forward(self, x):
        return self.conv(torch.relu(F.pad(x, (2, 0))))


class ReflectPad(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3)

    def forward(self, x):
        return self.conv(F.pad(x, (2, 0), mode="reflect"))


@pytest.mark.parametrize("make,match", [
    (lambda: nn.Sequential(nn.ZeroPad1d((1, 0)), nn.Conv1d(3, 4, 3, padding=2)),
     r"Sequential.forward: padding: 3 zeros on the left, more than .* = 2: the first outputs "
     r"would come before the first sample"),
    (lambda: nn.Sequential(nn.Conv1d(3, 4, 1, padding=1)), "1 zeros on the left, more than"),
    (lambda: nn.Sequential(nn.Conv1d(3, 4, 3), nn.MaxPool1d(2, return_indices=True)),
     "return_indices"),
    (lambda: nn.Sequential(nn.MaxPool1d(2), nn.Conv1d(3, 4, 3)), "before the first layer"),
    (lambda: nn.Sequential(nn.ZeroPad1d((2, 0)), nn.Conv1d(3, 4, 3, padding_mode="zeros"),
                           nn.BatchNorm1d(4, track_running_stats=False)), "running"),
    (lambda: GruThenConv(), "conv over the feature axis"),
    (lambda: NormOverTime(), "LayerNorm"),
    (lambda: PadThenRelu(), "must feed a Conv1d"),
    (lambda: ReflectPad(), r"ReflectPad.forward.*only a constant pad"),
    (lambda: nn.Sequential(nn.ZeroPad1d((2, 0))), "feeds no Conv1d"),
    (lambda: Wrap(nn.GRU(3, 4, bidirectional=True)), "bidirectional"),
])
def test_unstreamable_modules_are_refused_with_the_reason(make, match):
    with pytest.raises(sg.WeightsError, match=match):
        sg.from_torch(make().eval())
