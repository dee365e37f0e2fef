"""sg.from_torch on "same"-padded and downsampling convolutional models,
streamed against PyTorch's own offline forward over 1200 samples.

With a latency D (the right-hand paddings of the convolutions), step t must
equal torch's output at t - D (zeros for t < D); a downsampling model's
rows must be torch's output rows in order. float32 within 1e-5, float64
within 1e-9; step, process in chunks and StreamBatch.
"""

import numpy as np
import pytest

import streamgru as sg

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

T = 1200


class SameCnnGru(nn.Module):
    """(N, T, 3) -> (N, T, 4): "same" convs (padding="same", padding=p, and
    F.pad on both sides), BatchNorm1d folded, then a GRU."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(3, 8, 5, padding="same")
        self.bn = nn.BatchNorm1d(8)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=2, dilation=2, groups=4)
        self.conv3 = nn.Conv1d(8, 6, 4)
        self.gru = nn.GRU(6, 12, batch_first=True)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        x = x.transpose(1, 2)
        x = F.relu(self.bn(self.conv1(x)))
        x = torch.tanh(self.conv2(x))
        x = self.conv3(F.pad(x, (1, 2)))
        y, _ = self.gru(x.permute(0, 2, 1))
        return self.fc(y)


class DownCnnGru(nn.Module):
    """(N, T, 3) -> (N, T / 12, 4): Conv1d stride 2, MaxPool1d(2),
    AvgPool1d(3, stride 3), with "same"-style padding on the convs."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(3, 8, 3, stride=2, padding=1)
        self.pool1 = nn.MaxPool1d(2)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.pool2 = nn.AvgPool1d(3, stride=3)
        self.gru = nn.GRU(8, 10, batch_first=True)
        self.fc = nn.Linear(10, 4)

    def forward(self, x):
        x = x.transpose(1, 2)
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        y, _ = self.gru(x.transpose(1, 2))
        return self.fc(y)


def converted(net, dtype):
    torch.manual_seed(0)
    net = net.eval()
    if dtype == np.float64:
        net = net.double()
    return net, sg.from_torch(net, dtype=dtype)


def torch_out(net, X):
    with torch.no_grad():
        return net(torch.from_numpy(X[None]))[0].numpy()


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-9)])
def test_same_padded_cnn_gru_matches_torch_after_the_delay(dtype, tol):
    torch.manual_seed(0)
    net = SameCnnGru()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 1.5)
    net, model = converted(net, dtype)
    assert [type(l).__name__ for l in model.layers] == ["Conv1d", "Conv1d", "Conv1d", "GRU", "Dense"]
    # right-hand paddings: 2 ("same", k=5), 2 (padding=2 of (k-1)*d = 4), 2 (F.pad (1, 2), k=4)
    D = model.latency
    assert D == 6 and model.stride == 1
    X = np.random.default_rng(1).normal(size=(T, 3)).astype(dtype)
    want = np.zeros((T, 4), dtype)
    want[D:] = torch_out(net, X)[: T - D]
    s = model.stream()
    np.testing.assert_allclose(s.process(X), want, rtol=0, atol=tol)
    s.reset()
    steps = np.array([s.step(x) for x in X[:300]])
    np.testing.assert_allclose(steps, want[:300], rtol=0, atol=tol)
    parts = [s.process(c) for c in np.split(X[300:], [3, 40, 41, 500])]
    np.testing.assert_allclose(np.concatenate(parts), want[300:], rtol=0, atol=tol)
    b = model.streams(2)
    Yb = b.process(np.stack([X, X[::-1].copy()]))
    np.testing.assert_allclose(Yb[0], want, rtol=0, atol=tol)
    back = np.zeros((T, 4), dtype)
    back[D:] = torch_out(net, X[::-1].copy())[: T - D]
    np.testing.assert_allclose(Yb[1], back, rtol=0, atol=tol)
    b.reset()
    Ybs = np.stack([b.step(np.stack([x, x])) for x in X[:50]], axis=1)
    np.testing.assert_allclose(Ybs[1], want[:50], rtol=0, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-9)])
def test_downsampling_cnn_gru_matches_torch_row_for_row(dtype, tol):
    net, model = converted(DownCnnGru(), dtype)
    assert [type(l).__name__ for l in model.layers] == [
        "Conv1d", "MaxPool1d", "Conv1d", "AvgPool1d", "GRU", "Dense"]
    assert model.stride == 12
    X = np.random.default_rng(2).normal(size=(T, 3)).astype(dtype)
    want = torch_out(net, X)
    s = model.stream()
    Y = s.process(X)
    assert len(Y) == len(want) - 1  # the last row needs the right padding of the end
    np.testing.assert_allclose(Y, want[: len(Y)], rtol=0, atol=tol)
    s.reset()
    rows = [r for r in (s.step(x) for x in X) if r is not None]
    np.testing.assert_allclose(np.array(rows), Y, rtol=0, atol=tol)
    s.reset()
    parts = [s.process(c) for c in np.split(X, [5, 17, 18, 400])]
    np.testing.assert_allclose(np.concatenate(parts), Y, rtol=0, atol=tol)
    b = model.streams(3)
    Yb = b.process(np.stack([X] * 3))
    np.testing.assert_allclose(Yb[2], Y, rtol=0, atol=tol)
    b.reset()
    got = [r for r in (b.step(np.stack([x] * 3)) for x in X[:244]) if r is not None]
    assert model.latency == 15 and len(got) == 20  # rows at inputs 15, 27, ..., 243
    np.testing.assert_allclose(np.stack(got, axis=1)[0], Y[:20], rtol=0, atol=tol)
