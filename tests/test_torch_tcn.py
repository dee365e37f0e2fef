"""pytorch-tcn's TCN, as its package builds it, through ``sg.from_torch``:
every option that streams, against its own forward (float32 and float64),
and the ones that do not, refused."""

import numpy as np
import pytest
import torch
from pytorch_tcn import TCN, TemporalConv1d

import streamgru as sg
from streamgru.errors import WeightsError

T = 300


def tcn(seed: int, channels=(8, 8, 6), **options) -> TCN:
    torch.manual_seed(seed)
    net = TCN(4, list(channels), kernel_size=3, **options)
    with torch.no_grad():  # its own init is N(0, 0.01): outputs near zero would prove little
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.4)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def offline(net: TCN, X: np.ndarray, dtype=torch.float32) -> np.ndarray:
    """The framework's own forward over the whole (T, C) sequence, as (T, out)."""
    nlc = net.input_shape == "NLC"
    x = torch.tensor(X, dtype=dtype)[None]
    with torch.no_grad():
        y = net(x if nlc else x.transpose(1, 2))[0]
    return (y if nlc else y.T).double().numpy()


OPTIONS = {
    "weight_norm": {},
    "no_norm": {"use_norm": None},
    "batch_norm": {"use_norm": "batch_norm"},
    "layer_norm": {"use_norm": "layer_norm"},
    "skips": {"use_skip_connections": True},
    "skips_downsampled": {"use_skip_connections": True, "channels": (8, 6, 6)},
    "nlc": {"input_shape": "NLC"},
    "gated": {"use_gate": True},
    "head": {"activation": "tanh", "output_projection": 3, "output_activation": "sigmoid"},
    "dilation_reset": {"channels": (6,) * 5, "dilation_reset": 4},
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_tcn_streams_like_its_own_forward(name):
    options = dict(OPTIONS[name])
    net = tcn(len(name), **options)
    m = sg.from_torch(net)
    X = np.random.default_rng(len(name)).normal(size=(T, 4)).astype(np.float32)
    want = offline(net, X)
    tol = 1e-5 * max(1.0, np.abs(want).max())
    got = m.stream().process(X)
    assert np.max(np.abs(got - want)) < tol
    s, y = m.stream(), np.empty(m.output_size, np.float32)
    stepped = np.array([s.step(x, out=y).copy() for x in X])
    assert np.max(np.abs(stepped - want)) < tol
    assert m.latency == 0


def test_a_float64_tcn_matches_torch_double_to_1e_9():
    net = tcn(3, use_skip_connections=True).double()
    m = sg.from_torch(net, dtype=np.float64)
    X = np.random.default_rng(3).normal(size=(T, 4))
    want = offline(net, X, torch.float64)
    assert np.max(np.abs(m.stream().process(X) - want)) < 1e-9 * max(1.0, np.abs(want).max())


def test_a_chain_of_non_causal_temporal_convs_streams_with_their_delay():
    torch.manual_seed(0)
    net = torch.nn.Sequential(TemporalConv1d(3, 5, 3, dilation=2, causal=False), torch.nn.ReLU(),
                              TemporalConv1d(5, 2, 2, causal=False)).eval()
    m = sg.from_torch(net)
    assert m.latency == 2 + 1  # the right-hand pads: (3-1)*2 - 2, then 1 - 0
    X = np.random.default_rng(0).normal(size=(T, 3)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.tensor(X).T[None])[0].T.numpy()
    got = m.stream().process(X)
    np.testing.assert_allclose(got[m.latency:], want[: T - m.latency], rtol=0, atol=1e-5)


def test_what_does_not_stream_is_refused_by_name():
    with pytest.raises(WeightsError, match=r"network.0.conv1 is not causal.*\(pytorch-tcn: causal=True\)"):
        sg.from_torch(tcn(0, causal=False))
    reflect = torch.nn.Sequential(TemporalConv1d(3, 5, 3, padding_mode="reflect")).eval()
    with pytest.raises(WeightsError, match="padding_mode=ReflectionPad1d; only zero padding"):
        sg.from_torch(reflect)


def test_forward_runs_at_its_defaults():
    # embeddings=None: what net(x) computes, the embedding projections unused
    net = tcn(5, embedding_shapes=[(3,)])
    X = np.random.default_rng(5).normal(size=(T, 4)).astype(np.float32)
    want = offline(net, X)
    got = sg.from_torch(net).stream().process(X)
    assert np.max(np.abs(got - want)) < 1e-5 * max(1.0, np.abs(want).max())


class _Glu(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(3, 6, 1)
        self.fc = torch.nn.Linear(3, 2)
        self.dim = dim

    def forward(self, x):
        h = torch.nn.functional.glu(self.conv(x), dim=self.dim)
        return self.fc((h + x).transpose(1, 2))


@pytest.mark.parametrize("dim", [1, -2])
def test_glu_over_the_channels_is_one_gate(dim):
    torch.manual_seed(1)
    net = _Glu(dim).eval()
    X = np.random.default_rng(1).normal(size=(T, 3)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.tensor(X).T[None])[0].numpy()
    np.testing.assert_allclose(sg.from_torch(net).stream().process(X), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dim", [2, -1])
def test_glu_over_time_is_refused(dim):
    with pytest.raises(WeightsError, match=f"GLU over dim={dim}, which is not the channel axis"):
        sg.from_torch(_Glu(dim).eval())


class _Branches(torch.nn.Module):
    """Two conv branches and the input, concatenated over the channels into a GRU."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.a = torch.nn.Conv1d(3, 4, 3)
        self.b = torch.nn.Conv1d(3, 2, 2, dilation=3)
        self.gru = torch.nn.GRU(9, 5, batch_first=True)
        self.dim = dim

    def forward(self, x):
        a = torch.relu(self.a(torch.nn.functional.pad(x, (2, 0))))
        b = self.b(torch.nn.functional.pad(x, (3, 0)))
        y, _ = self.gru(torch.cat([a, b, x], dim=self.dim).transpose(1, 2))
        return y


@pytest.mark.parametrize("dim", [1, -2])
def test_cat_over_the_channels_is_one_node(dim):
    torch.manual_seed(2)
    net = _Branches(dim).eval()
    m = sg.from_torch(net)
    assert [getattr(layer, "op", "") for layer in m.layers].count("concat") == 2
    X = np.random.default_rng(2).normal(size=(T, 3)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.tensor(X).T[None])[0].numpy()
    np.testing.assert_allclose(m.stream().process(X), want, rtol=0, atol=1e-5)


def test_cat_over_time_is_refused():
    with pytest.raises(WeightsError, match="concatenates over dim=2, which is not the channel"):
        sg.from_torch(_Branches(2).eval())
