"""sg.from_torch on audio models whose forward ends in a residual skip, the
network's output plus a slice of the input (``Model(input_skip=a)``; with
an operation after it, a graph),
streamed against the module's own forward over 1000 steps (float32 within
1e-5, float64 within 1e-9).
"""

import pytest
import torch

import streamgru as sg

from test_torch_trace import I, H, check, line_of


class Residual(torch.nn.Module):
    """An amp model's forward: the network's output plus input channel(s)."""

    def __init__(self, start=0, reverse=False, whole=False):
        super().__init__()
        self.start, self.reverse, self.whole = start, reverse, whole
        self.lstm = torch.nn.LSTM(I, H, batch_first=True)
        self.fc = torch.nn.Linear(H, I if whole else 2)

    def forward(self, x):
        y, _ = self.lstm(x)
        out = self.fc(y)
        if self.whole:
            return out + x
        skip = x[..., self.start:self.start + 2]
        return skip + out if self.reverse else out + skip


@pytest.mark.parametrize("start, reverse, whole", [(0, False, False), (1, True, False), (0, False, True)])
def test_residual_skip(start, reverse, whole):
    torch.manual_seed(10)
    model = check(Residual(start, reverse, whole))
    assert model.input_skip == start and model.output_gain == 1.0


class SkipThenMore(Residual):
    def forward(self, x):
        y, _ = self.lstm(x)
        return torch.tanh(self.fc(y) + x[..., :2])


def test_an_operation_after_the_skip_makes_a_graph():
    torch.manual_seed(11)
    model = check(SkipThenMore())
    assert model.graph is not None and model.input_skip is None


class SkipOfTheState(Residual):
    def forward(self, x):
        y, h = self.lstm(x)
        return self.fc(y) + h[0][-1][:, None, :2]


def test_a_skip_of_what_is_no_stream_is_refused():
    with pytest.raises(sg.WeightsError) as err:
        sg.from_torch(SkipOfTheState())
    msg = str(err.value)
    assert f"line {line_of(SkipOfTheState, 'return self.fc(y) + h')}" in msg, msg
