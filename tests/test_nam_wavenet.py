"""Neural Amp Modeler ``.nam`` WaveNet files: written by NAM's own exporter
(``neural-amp-modeler`` 0.13.0, ``nam.models.wavenet.WaveNet.export``),
read back by NAM's own reader (``init_from_nam``), and streamed step by step
and in 256-sample blocks against NAM's forward of the same file (which pads
the start with receptive_field - 1 zeros: the stream starts from the settled
response to them). Every malformed variant is refused naming the file.
"""

import copy
import json

import numpy as np
import pytest

import streamgru as sg

torch = pytest.importorskip("torch")
nam_wavenet = pytest.importorskip("nam.models.wavenet")
from nam.models._from_nam import init_from_nam  # noqa: E402

T = 2500
DIL = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def layer_array(inp, ch, head, bias, dilations=DIL, activation="Tanh", **extra):
    return {"input_size": inp, "condition_size": 1, "channels": ch, "kernel_size": 3,
            "dilations": dilations, "activation": activation,
            "head": {"out_channels": head, "kernel_size": 1, "bias": bias}, **extra}


GATED = {"name": "PairMultiply", "primary": "Tanh", "secondary": "Sigmoid"}
# (a LeakyReLU primary would be exported with its slope, which NAM 0.13 cannot read back)
BLENDED = {"name": "PairBlend", "primary": "Tanh", "secondary": "Sigmoid"}
CONFIGS = {
    # NAM's standard "WaveNet" preset: 16 then 8 channels, kernel 3, dilations 1..512 twice
    "standard": {"layers_configs": [layer_array(1, 16, 8, False), layer_array(16, 8, 1, True)],
                 "head": None, "head_scale": 0.02},
    "gated": {"layers_configs": [layer_array(1, 6, 3, False, [1, 3, 9, 27], GATED),
                                 layer_array(6, 3, 1, True, [1, 2, 4], GATED)],
              "head": None, "head_scale": 0.5},
    # NAM 0.13's extras: bottleneck, head1x1, a wider head rechannel kernel, grouped convs,
    # blended gating, per-layer kernel sizes, and an output head of two blocks
    "extras": {"layers_configs": [
        {**layer_array(1, 8, 4, True, [1, 2, 5], BLENDED), "kernel_size": [2, 3, 4],
         "bottleneck": 4, "head_1x1_config": {"active": True, "out_channels": 5, "groups": 1},
         "groups_input": 2, "head": {"out_channels": 4, "kernel_size": 3, "bias": True}},
        layer_array(8, 4, 2, True, [1, 7], {"name": "LeakyReLU", "negative_slope": 0.2})],
        "head": {"channels": 3, "activation": "Tanh", "out_channels": 1, "kernel_sizes": [2, 1]},
        "head_scale": 0.8},
}


def audio(T, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 48000.0
    return (0.5 * np.sin(2 * np.pi * 220.0 * t) + 0.1 * rng.normal(size=T))[:, None]


def export(name, folder):
    """(name, path, file contents, NAM's own model read from the file)."""
    torch.manual_seed(len(name))
    net = nam_wavenet.WaveNet.init_from_config(copy.deepcopy(CONFIGS[name]))
    with torch.no_grad():  # trained-looking weights: larger than the init
        for p in net.parameters():
            p.mul_(1.5)
    net.export(folder, basename="amp")  # NAM's exporter
    path = folder / "amp.nam"
    doc = json.loads(path.read_text())
    ref = init_from_nam(copy.deepcopy(doc))  # NAM's reader of the same file
    ref.eval()
    return name, path, doc, ref


@pytest.fixture(scope="module", params=list(CONFIGS))
def exported(request, tmp_path_factory):
    return export(request.param, tmp_path_factory.mktemp("nam"))


@pytest.fixture(scope="module")
def standard(tmp_path_factory):
    return export("standard", tmp_path_factory.mktemp("nam"))


def nam_forward(ref, x, dtype):
    r = copy.deepcopy(ref).double() if dtype == np.float64 else ref
    with torch.no_grad():
        return r(torch.from_numpy(x[:, 0].astype(dtype))[None], pad_start=True)[0].numpy()


def test_the_file_is_nams_wavenet(exported):
    name, _, doc, ref = exported
    assert doc["architecture"] == "WaveNet"
    assert {"head", "kernel_sizes", "gating_mode", "secondary_activation",
            "layer1x1"} <= set(doc["config"]["layers"][0])
    assert doc["weights"][-1] == pytest.approx(CONFIGS[name]["head_scale"])
    assert sg.load(exported[1]).metadata["receptive_field"] == ref.receptive_field


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-9)])
def test_streams_like_nams_own_forward(exported, dtype, tol):
    _, path, _, ref = exported
    x = audio(T)
    want = nam_forward(ref, x, dtype)
    m = sg.load(path, dtype=dtype)
    assert (m.input_size, m.output_size, m.dtype) == (1, 1, dtype)
    s = m.stream()
    y = np.empty(1, dtype)
    xs = x.astype(dtype)
    got = np.array([s.step(xi, out=y)[0] for xi in xs])
    assert np.max(np.abs(got - want)) < tol
    s.reset()  # back to the settled response to silence
    blocks = np.concatenate([s.process(xs[i : i + 256]) for i in range(0, T, 256)])[:, 0]
    assert np.max(np.abs(blocks - want)) < tol
    b = m.streams(2)
    both = b.process(np.stack([xs, xs[::-1].copy()]))
    assert np.max(np.abs(both[0, :, 0] - want)) < tol
    assert np.max(np.abs(both[1, :, 0] - nam_forward(ref, x[::-1].copy(), dtype))) < tol


def test_initial_state_is_the_settled_response_to_silence(exported):
    _, path, _, ref = exported
    m = sg.load(path, dtype=np.float64)
    s = m.stream()
    np.testing.assert_array_equal(s.get_state(), m.initial_state)
    silent = s.process(np.zeros((64, 1)))
    want = nam_forward(ref, np.zeros((64, 1)), np.float64)
    np.testing.assert_allclose(silent[:, 0], want, rtol=0, atol=1e-12)
    # settled: silence changes no value of the state but the rings' positions
    assert np.allclose(silent, silent[0])


def legacy(doc):
    """The same model in the layer-array form NAM 0.5-0.12 wrote (standard config)."""
    old = copy.deepcopy(doc)
    old["version"] = "0.5.2"
    arrays = []
    for lc in doc["config"]["layers"]:
        arrays.append({"input_size": lc["input_size"], "condition_size": lc["condition_size"],
                       "head_size": lc["head"]["out_channels"], "channels": lc["channels"],
                       "kernel_size": lc["kernel_sizes"][0], "dilations": lc["dilations"],
                       "activation": lc["activation"][0]["type"], "gated": False,
                       "head_bias": lc["head"]["bias"]})
    old["config"] = {"layers": arrays, "head": None, "head_scale": doc["config"]["head_scale"]}
    return old


def test_legacy_layer_arrays_read_the_same(standard, tmp_path):
    _, path, doc, _ = standard
    p = tmp_path / "old.nam"
    p.write_text(json.dumps(legacy(doc)))
    x = audio(300)
    np.testing.assert_array_equal(sg.load(p).stream().process(x),
                                  sg.load(path).stream().process(x))


def _edit(doc, fn):
    d = copy.deepcopy(doc)
    fn(d)
    return d


def _set(key, value, array=0):
    return lambda d: d["config"]["layers"][array].__setitem__(key, value)


BROKEN = {
    "short weights": (lambda d: d["weights"].pop(), "tensor weights: .* numbers"),
    "text weight": (lambda d: d["weights"].__setitem__(3, "x"), "tensor weights"),
    "nan weight": (lambda d: d["weights"].__setitem__(3, float("nan")), "non-finite number NaN"),
    "unknown activation": (_set("activation", [{"type": "Softsign"}] * 10),
                           "activation 'Softsign' is not supported"),
    "bad gating mode": (_set("gating_mode", ["sideways"] * 10), "gating_mode 'sideways'"),
    "FiLM": (_set("conv_pre_film", {"active": True, "shift": True, "groups": 1}), "FiLM"),
    "zero dilation": (_set("dilations", [0] * 10), "'dilations' must be"),
    "dilations vs kernels": (_set("kernel_sizes", [3] * 9), "'kernel_sizes' has 9 entries"),
    "condition dsp": (lambda d: d["config"].__setitem__("condition_dsp", {"name": "WaveNet"}),
                      "condition_dsp"),
    "channels mismatch": (_set("input_size", 4, array=1), "input_size 4 but the previous"),
    "condition size": (_set("condition_size", 2), "condition_size 2"),
    "no layers": (lambda d: d["config"].__setitem__("layers", []), "1 to 64 layer arrays"),
    "huge dilations": (_set("dilations", [1 << 20] * 10), "rings of past samples|warm-up"),
    "slimmable": (_set("slimmable", {"method": "slice_channels_uniform"}), "slimmable"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_malformed_files_are_refused(standard, tmp_path, case):
    _, _, doc, _ = standard
    fn, message = BROKEN[case]
    p = tmp_path / "bad.nam"
    p.write_text(json.dumps(_edit(doc, fn)))
    with pytest.raises(sg.WeightsError, match=message) as info:
        sg.load(p)
    assert str(p) in str(info.value)
