"""Neural Amp Modeler ``.nam`` LSTM files: written by NAM's own exporter
(``neural-amp-modeler`` 0.13.0, ``nam.models.recurrent.LSTM.export``) and
streamed against NAM's own forward, started from the file's h0 / c0 (NAM's
``import_weights`` of the same file); every malformed variant refused.
"""

import copy
import json

import numpy as np
import pytest

import streamgru as sg
from streamgru import cli

torch = pytest.importorskip("torch")
nam_recurrent = pytest.importorskip("nam.models.recurrent")

T = 2000
# NAM's exporter burns its initial state in on mono silence: input_size 1 only
CONFIGS = [dict(input_size=1, hidden_size=8, num_layers=2), dict(input_size=1, hidden_size=5, num_layers=1)]


def audio(T, channels, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 48000.0
    x = 0.5 * np.sin(2 * np.pi * 220.0 * t)[:, None] + 0.1 * rng.normal(size=(T, channels))
    return x


def nam_forward(model, x, dtype):
    """NAM's own forward (its BaseNet.forward, pad_start as the plugin export does)."""
    with torch.no_grad():
        xt = torch.from_numpy(x.astype(dtype))
        xt = xt[None, :, 0] if x.shape[1] == 1 else xt[None]
        return model(xt, pad_start=True)[0].numpy()


@pytest.fixture(scope="module", params=range(len(CONFIGS)), ids=["8x2", "5x1"])
def exported(request, tmp_path_factory):
    cfg = CONFIGS[request.param]
    torch.manual_seed(request.param)
    model = nam_recurrent.LSTM(cfg["hidden_size"], input_size=cfg["input_size"],
                               num_layers=cfg["num_layers"], sample_rate=48000)
    with torch.no_grad():  # a trained-looking model: larger weights than the init
        for p in model._core.parameters():
            p.mul_(2.0)
    folder = tmp_path_factory.mktemp("nam")
    model.export(folder, basename="amp")  # NAM's exporter (metadata, loudness, sample rate)
    path = folder / "amp.nam"
    doc = json.loads(path.read_text())
    # NAM's plugin starts from the file's state: NAM's own import of the file does too
    ref = nam_recurrent.LSTM(cfg["hidden_size"], input_size=cfg["input_size"],
                             num_layers=cfg["num_layers"], sample_rate=48000)
    ref.import_weights(doc["weights"])
    ref.float()  # its import makes the head float64 (from a float64 numpy array)
    ref.eval()
    return cfg, path, doc, ref


def test_the_file_is_nams_layout(exported):
    cfg, path, doc, _ = exported
    assert doc["architecture"] == "LSTM" and doc["config"] == cfg
    assert set(doc) >= {"version", "architecture", "config", "weights"}


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-9)])
def test_streams_like_nams_own_forward(exported, dtype, tol):
    cfg, path, _, ref = exported
    ref = copy.deepcopy(ref).double() if dtype == np.float64 else ref
    x = audio(T, cfg["input_size"])
    want = nam_forward(ref, x, dtype)
    m = sg.load(path, dtype=dtype)
    assert (m.input_size, m.output_size) == (cfg["input_size"], 1)
    s = m.stream()
    y = np.empty(1, dtype)
    got = np.array([s.step(xi.astype(dtype), out=y)[0] for xi in x])
    err = float(np.max(np.abs(got - want)))
    assert err < tol, err
    s.reset()
    np.testing.assert_allclose(s.process(x.astype(dtype))[:, 0], want, atol=tol, rtol=0)


def test_initial_state_is_the_files_h0_c0(exported):
    cfg, path, _, ref = exported
    m = sg.load(path, dtype=np.float64)
    h, c = ref._initial_hidden.detach().numpy(), ref._initial_cell.detach().numpy()
    want = np.concatenate([np.concatenate([h[k], c[k]]) for k in range(cfg["num_layers"])])
    np.testing.assert_array_equal(m.initial_state, want.astype(np.float64))
    assert np.any(want != 0)  # the exporter's burn-in on silence left a real state


def test_metadata_and_info(exported, capsys):
    _, path, doc, _ = exported
    m = sg.load(path)
    assert m.metadata["format"] == "nam" and m.metadata["sample_rate"] == 48000
    assert m.metadata["nam_version"] == doc["version"]
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Neural Amp Modeler" in out and "non-zero initial state" in out


def test_a_renamed_nam_file_is_found_by_content(exported, tmp_path):
    _, path, _, _ = exported
    other = tmp_path / "amp.json"
    other.write_bytes(path.read_bytes())
    assert sg.load(other) == sg.load(path)


# ---------------------------------------------------------------------------
# malformed files


def _good():
    rng = np.random.default_rng(5)
    cfg = {"input_size": 1, "hidden_size": 3, "num_layers": 2}
    # per layer [W_ih | W_hh] 4H x (I + H), bias 4H, h0 and c0; then head H + 1
    n = (4 * 3 * (1 + 3) + 4 * 3 + 2 * 3) + (4 * 3 * (3 + 3) + 4 * 3 + 2 * 3) + 3 + 1
    return {"version": "0.5.4", "metadata": {}, "architecture": "LSTM", "config": cfg,
            "weights": (rng.normal(size=n) * 0.3).tolist(), "sample_rate": 48000}


def _set(path, value):
    def change(doc):
        *parents, last = path
        d = doc
        for p in parents:
            d = d[p]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
        return doc
    return change


BAD_DOCS = {
    "no_version": (_set(["version"], KeyError), "'version' is missing"),
    "version_type": (_set(["version"], 5), "'version' must be str"),
    "no_architecture": (_set(["architecture"], KeyError), "'architecture' is missing"),
    # an LSTM config under the WaveNet name: read as a WaveNet, which needs its layer arrays
    "wavenet": (_set(["architecture"], "WaveNet"), "config: key 'layers' is missing"),
    "no_config": (_set(["config"], KeyError), "'config' is missing"),
    "no_hidden": (_set(["config", "hidden_size"], KeyError), "config: key 'hidden_size'"),
    "hidden_zero": (_set(["config", "hidden_size"], 0), "'hidden_size' must be a whole number"),
    "hidden_huge": (_set(["config", "hidden_size"], 10 ** 9), "'hidden_size' must be a whole"),
    "layers_bool": (_set(["config", "num_layers"], True), "'num_layers' must be int"),
    "layers_float": (_set(["config", "num_layers"], 2.0), "'num_layers' must be int"),
    "no_weights": (_set(["weights"], KeyError), "'weights' is missing"),
    "weights_dict": (_set(["weights"], {}), "'weights' must be list"),
    "short": (lambda d: d.update(weights=d["weights"][:-1]) or d, "tensor weights: 159 numbers"),
    "long": (lambda d: d.update(weights=d["weights"] + [0.0]) or d, "tensor weights: 161 numbers"),
    "string": (_set(["weights", 7], "0.5"), "tensor weights: expected numbers, found a string"),
    "bool": (_set(["weights", 7], True), "tensor weights: expected numbers, found a boolean"),
    "null": (_set(["weights", 7], None), "tensor weights: expected numbers, found null"),
    "nested": (_set(["weights", 7], [1.0]), "tensor weights: expected numbers, found a list"),
    "sample_rate": (_set(["sample_rate"], -1), "'sample_rate' must be a positive"),
    "sample_rate_str": (_set(["sample_rate"], "48k"), "'sample_rate' must be int or float"),
    "not_object": (lambda d: [d], "expected a JSON object, got a list"),
}


@pytest.mark.parametrize("name", list(BAD_DOCS))
def test_malformed_documents_are_refused(tmp_path, name):
    change, words = BAD_DOCS[name]
    path = tmp_path / f"{name}.nam"
    path.write_text(json.dumps(change(_good())))
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    assert str(path) in str(info.value) and words in str(info.value), str(info.value)


BAD_BYTES = {
    "truncated": (lambda raw: raw[: len(raw) // 2], "not a valid NAM file"),
    "garbage": (lambda raw: b"\x00\xffgarbage{" + raw, "not a NAM file (not UTF-8"),
    "nan": (lambda raw: raw.replace(b'"weights": [', b'"weights": [NaN, ', 1),
            "non-finite number NaN"),
    "infinity": (lambda raw: raw.replace(b'"weights": [', b'"weights": [-Infinity, ', 1),
                 "non-finite number -Infinity"),
    "overflow": (lambda raw: raw.replace(b'"weights": [', b'"weights": [1e999, ', 1),
                 "tensor weights"),
    "deep": (lambda raw: b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    "long_int": (lambda raw: raw.replace(b'"weights": [', b'"weights": [' + b"9" * 5000 + b", ", 1),
                 "not a valid NAM file"),
    "empty": (lambda raw: b"", "not a valid NAM file"),
}


@pytest.mark.parametrize("name", list(BAD_BYTES))
def test_malformed_bytes_are_refused(tmp_path, name):
    change, words = BAD_BYTES[name]
    path = tmp_path / f"{name}.nam"
    good = _good()
    if name == "overflow":
        good["weights"] = good["weights"][1:]  # keep the count right: the bad number is the tensor's
    path.write_bytes(change(json.dumps(good).encode()))
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    assert str(path) in str(info.value) and words in str(info.value), str(info.value)


def test_a_file_over_its_budget_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.nam"
    path.write_text(json.dumps(_good()))
    with pytest.raises(sg.WeightsError, match="budget"):
        sg.load(path, max_bytes=len(path.read_bytes()) + 10)


def test_the_weight_count_matches_nams_export():
    from streamgru.formats.nam import weight_count

    for cfg in CONFIGS:
        torch.manual_seed(0)
        model = nam_recurrent.LSTM(cfg["hidden_size"], input_size=cfg["input_size"],
                                   num_layers=cfg["num_layers"])
        assert weight_count(**cfg) == len(model._export_weights())
