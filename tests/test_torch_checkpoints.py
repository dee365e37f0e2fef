"""Checkpoints as training code writes them: Lightning's ``save_checkpoint``
(``.ckpt``), DataParallel's ``module.`` prefix, ``model.``/``net.`` wrappers,
and state dicts with tensors that are not layers. Each is written by torch
(or Lightning) itself and streamed against the module's own forward over
1000 steps: float32 within 1e-5, float64 within 1e-9.
"""

import warnings

import numpy as np
import pytest
import torch

import streamgru as sg

from torch_fixtures import inputs

STEPS = 1000
I, H, O = 4, 10, 3


class Net(torch.nn.Module):
    def __init__(self, kind="GRU"):
        super().__init__()
        self.rnn = getattr(torch.nn, kind)(I, H, batch_first=True)
        self.fc = torch.nn.Linear(H, O)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y)


def torch_stream(net, x, dtype=torch.float32):
    """The module's forward over the whole sequence x (T, I) -> (T, O)."""
    with torch.no_grad():
        return net.to(dtype)(torch.from_numpy(x).to(dtype)[None])[0].numpy()


def assert_parity(model, net, x):
    np.testing.assert_allclose(model.stream().process(x), torch_stream(net, x), rtol=0, atol=1e-5)
    got64 = model.astype(np.float64).stream().process(x.astype(np.float64))
    np.testing.assert_allclose(got64, torch_stream(net, x, torch.float64), rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------
# Lightning


@pytest.fixture(scope="module", params=["GRU", "LSTM"])
def lightning_ckpt(request, tmp_path_factory):
    pl = pytest.importorskip("pytorch_lightning")
    kind = request.param

    class Module(pl.LightningModule):
        def __init__(self, hidden=H):
            super().__init__()
            self.save_hyperparameters()
            self.net = Net(kind)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, i):
            x, y = batch
            return torch.nn.functional.mse_loss(self(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), 1e-2)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(16, 20, I), torch.randn(16, 20, O))
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, logger=False, accelerator="cpu",
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    module = Module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    path = str(tmp_path_factory.mktemp("lightning") / f"{kind}.ckpt")
    trainer.save_checkpoint(path)
    return path, module.net.eval(), trainer.global_step


def test_lightning_checkpoint_streams_like_the_module(lightning_ckpt):
    path, net, steps = lightning_ckpt
    model = sg.load(path)
    assert [type(l).__name__ for l in model.layers] == [type(net.rnn).__name__, "Dense"]
    # the LightningModule keeps the network as self.net: keys "net.rnn...", shown stripped
    assert model.metadata["prefix"] == "net." and model.metadata["modules"].startswith("rnn: ")
    assert model.metadata["checkpoint_key"] == "state_dict"
    assert model.metadata["checkpoint"]["global_step"] == steps == 3
    assert_parity(model, net, inputs(seed=1, steps=STEPS, size=I))


def test_lightning_checkpoint_content_wins_over_the_suffix(lightning_ckpt, tmp_path):
    # the same bytes under another name load the same
    path, net, _ = lightning_ckpt
    other = tmp_path / "renamed.bin"
    other.write_bytes(open(path, "rb").read())
    assert sg.load(str(other)) == sg.load(path)


# ----------------------------------------------------------------------------
# wrapper prefixes


class Wrapped(torch.nn.Module):
    def __init__(self, attr, inner):
        super().__init__()
        setattr(self, attr, inner)

    def forward(self, x):
        return next(self.children())(x)


@pytest.mark.parametrize("wrap", ["DataParallel", "model", "net", "model+DataParallel"])
def test_prefixed_state_dicts(tmp_path, wrap):
    torch.manual_seed(1)
    net = Net("LSTM").eval()
    if wrap == "DataParallel":
        outer, prefix = torch.nn.DataParallel(net), "module."
    elif wrap == "model+DataParallel":
        outer, prefix = Wrapped("model", torch.nn.DataParallel(net)), "model.module."
    else:
        outer, prefix = Wrapped(wrap, net), wrap + "."
    sd = outer.state_dict()
    assert all(k.startswith(prefix) for k in sd)
    path = str(tmp_path / "m.pth")
    torch.save(sd, path)
    model = sg.load(path)
    assert model.metadata["prefix"] == prefix
    assert model.metadata["modules"] == "rnn: LSTM (4->10), fc: Linear (10->3)"
    assert_parity(model, net, inputs(seed=2, steps=STEPS, size=I))
    # order= takes the names with or without the prefix
    assert sg.load(path, order=["rnn", "fc"]) == model
    assert sg.load(path, order=[prefix + "rnn", prefix + "fc"]) == model


# ----------------------------------------------------------------------------
# tensors that are not layers


class WithExtras(Net):
    def __init__(self):
        super().__init__("GRU")
        self._initial_hidden = torch.nn.Parameter(torch.randn(1, 1, H))
        self.register_buffer("_sample_rate", torch.tensor(48000.0))
        self.register_buffer("steps", torch.tensor(12, dtype=torch.int64))


class GRUWithState(torch.nn.GRU):
    def __init__(self):
        super().__init__(I, H, batch_first=True)
        self.register_buffer("h0", torch.zeros(1, 1, H))


def test_extra_tensors_are_kept_in_metadata(tmp_path):
    torch.manual_seed(2)
    net = WithExtras().eval()
    path = str(tmp_path / "m.pt")
    torch.save(net.state_dict(), path)
    model = sg.load(path)
    assert [type(l).__name__ for l in model.layers] == ["GRU", "Dense"]
    extra = model.metadata["extra_tensors"]
    assert list(extra) == ["_initial_hidden", "_sample_rate", "steps"]
    np.testing.assert_array_equal(extra["_initial_hidden"], net._initial_hidden.detach().numpy())
    assert extra["_sample_rate"] == 48000.0 and extra["steps"] == 12
    assert "_initial_hidden (1, 1, 10) float32" in str(extra) and "_sample_rate = 48000.0" in str(extra)
    assert_parity(model, net, inputs(seed=3, steps=STEPS, size=I))


def test_extra_buffer_of_a_recurrent_subclass(tmp_path):
    torch.manual_seed(3)
    seq = torch.nn.Sequential()
    seq.add_module("gru", GRUWithState())
    seq.add_module("fc", torch.nn.Linear(H, O))
    path = str(tmp_path / "m.pt")
    torch.save({"model_state_dict": seq.state_dict(), "epoch": 4, "note": "x" * 500}, path)
    model = sg.load(path)
    assert list(model.metadata["extra_tensors"]) == ["gru.h0"]
    assert model.metadata["checkpoint"]["epoch"] == 4
    assert len(model.metadata["checkpoint"]["note"]) == 203  # long text is cut short


def test_extra_tensors_survive_a_native_save_as_a_listing(tmp_path):
    torch.manual_seed(4)
    path = str(tmp_path / "m.pt")
    torch.save(WithExtras().state_dict(), path)
    out = str(tmp_path / "m.npz")
    sg.save(sg.load(path), out)
    assert "_sample_rate = 48000.0" in sg.load(out).metadata["extra_tensors"]


@pytest.mark.parametrize("module, key", [
    (torch.nn.BatchNorm1d(4, affine=False), "other.running_mean"),
    (torch.nn.LayerNorm(4), "other.weight"),
])
def test_layers_that_cannot_run_are_still_refused(tmp_path, module, key):
    sd = {**{f"gru.{k}": v for k, v in torch.nn.GRU(I, 4).state_dict().items()},
          **{f"other.{k}": v for k, v in module.state_dict().items()}}
    path = str(tmp_path / "m.pt")
    torch.save(sd, path)
    with pytest.raises(sg.WeightsError) as err:
        sg.load(path)
    assert path in str(err.value) and key in str(err.value)


def test_only_extra_tensors(tmp_path):
    path = str(tmp_path / "m.pt")
    torch.save({"_sample_rate": torch.tensor(1.0), "scale": torch.ones(3)}, path)
    with pytest.raises(sg.WeightsError, match="no layer weights.*_sample_rate, scale") as err:
        sg.load(path)
    assert path in str(err.value)
