"""The `streamgru` command and the shipped demo model.

Subprocess tests (each pays the interpreter and numba cache start-up, about a
second) cover every subcommand once end to end; the line parser and error
paths are tested in-process through ``cli.main``.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamgru as sg
from streamgru import cli
from streamgru.data import WATCH_GRU

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "weights")
NATIVE = os.path.join(WEIGHTS, "watch_gru.npz")
PT = os.path.join(WEIGHTS, "watch_gru.pt")
ONNX = os.path.join(WEIGHTS, "watch_gru.onnx")
STREAM = os.path.join(WEIGHTS, "watch_test.npz")
CSV = os.path.join(WEIGHTS, "watch_sample.csv")
README = os.path.join(ROOT, "README.md")
DATA_DIR = os.path.dirname(WATCH_GRU)


def streamgru(*args: str, stdin: str | None = None, cwd: str | None = None):
    """Run ``python -m streamgru ARGS`` in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "streamgru", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=600,
    )


def numbers(stdout: str) -> np.ndarray:
    return np.array([[float(v) for v in line.split(",")] for line in stdout.splitlines()])


@pytest.fixture(scope="module")
def model():
    return sg.load(NATIVE)


@pytest.fixture(scope="module")
def held_out():
    with np.load(STREAM) as z:
        return z["samples"], z["labels"], z["recording_ids"]


def stepped(model, X, state=None):
    """The library's outputs for X fed one step at a time (as `run` does)."""
    s = model.stream()
    if state is not None:
        s.set_state(state)
    return np.array([s.step(x) for x in X]), s.get_state()


def csv_rows():
    with open(CSV) as f:
        lines = f.read().splitlines()
    return lines[0], np.array([[float(v) for v in line.split(",")] for line in lines[1:]])


# ----------------------------------------------------------------------------
# the shipped files


def test_shipped_files_are_the_package_data():
    # weights/ links to the one copy that the package installs
    for name in ("watch_gru.npz", "watch_test.npz"):
        assert os.path.samefile(os.path.join(WEIGHTS, name), os.path.join(DATA_DIR, name))


def test_pt_onnx_and_native_give_the_same_outputs(held_out):
    X = held_out[0][:2000]
    native = sg.load(NATIVE)
    ref = native.stream().process(X)
    for path in (PT, ONNX):
        m = sg.load(path)
        assert (m.input_size, m.output_size, m.state_size) == (6, 7, 48)
        # the same float32 weights after each loader's conversion, hence the same outputs
        assert m == native, path
        np.testing.assert_array_equal(m.stream().process(X), ref, err_msg=path)


def test_onnx_runtime_agrees_with_the_shipped_model(held_out):
    ort = pytest.importorskip("onnxruntime")
    X = held_out[0][:2000]
    sess = ort.InferenceSession(ONNX, providers=["CPUExecutionProvider"])
    (logits,) = sess.run(None, {"imu": X[None]})
    np.testing.assert_allclose(sg.load(NATIVE).stream().process(X), logits[0], atol=1e-4)


def readme_accuracy(label: str) -> float:
    with open(os.path.join(WEIGHTS, "README.md")) as f:
        text = f.read()
    m = re.search(re.escape(label) + r"[^|]*\|\s*\*\*([0-9.]+)%\*\*", text)
    assert m, f"weights/README.md states no accuracy for {label!r}"
    return float(m.group(1))


def test_accuracy_matches_weights_readme(model, held_out):
    X, labels, recs = held_out
    pred = model.stream().process(X).argmax(axis=1)
    per_step = 100 * np.mean(pred == labels)
    votes = [np.bincount(pred[recs == r], minlength=7).argmax() == labels[recs == r][0]
             for r in np.unique(recs)]
    assert round(per_step, 1) == readme_accuracy("per time step")
    assert round(100 * np.mean(votes), 1) == readme_accuracy("per recording")
    # and it is a real classifier: far above chance (1/7) and the 71% baseline
    assert per_step > 85


def test_console_script_is_declared():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("streamgru") == "streamgru.cli:main"


# ----------------------------------------------------------------------------
# every subcommand in a real process


def test_demo_runs_from_any_directory(tmp_path):
    r = streamgru("demo", "--limit", "1500", "--progress", "lines", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert re.search(r"accuracy per sample: +\d+\.\d%", r.stdout)
    assert re.search(r"p50 [\d.]+ us +p99 [\d.]+ us +max [\d.]+ us", r.stdout)
    progress = [l for l in r.stderr.splitlines() if l.strip().startswith(tuple("0123456789"))]
    assert len(progress) >= 10 and "1500/1500" in progress[-1]


def test_run_equals_the_library_and_continues_with_state(tmp_path, model):
    header, X = csv_rows()
    assert header == "ax,ay,az,wx,wy,wz"
    state = tmp_path / "state.npy"
    r = streamgru("run", NATIVE, CSV, "--state-out", str(state))
    assert r.returncode == 0, r.stderr
    expect, expect_state = stepped(model, X)
    out = numbers(r.stdout).astype(np.float32)
    assert out.shape == expect.shape
    np.testing.assert_array_equal(out, expect)  # %.9g round-trips float32 exactly
    np.testing.assert_array_equal(np.load(state), expect_state)

    # stdin, whitespace-separated, continuing from the saved state
    text = "\n".join(" ".join(repr(float(v)) for v in row) for row in X[:5]) + "\n"
    r = streamgru("run", NATIVE, "--state-in", str(state), stdin=text)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(numbers(r.stdout).astype(np.float32),
                                  stepped(model, X[:5], expect_state)[0])


def test_run_bad_line_stops_with_exit_2_and_keeps_the_good_state(tmp_path, model):
    _, X = csv_rows()
    good = [",".join(repr(float(v)) for v in row) for row in X[:3]]
    text = "ax,ay,az,wx,wy,wz\n" + "\n".join(good) + "\n1,2,nan,4,5,6\n" + good[0] + "\n"
    state = tmp_path / "state.npy"
    r = streamgru("run", NATIVE, "-", "--state-out", str(state), stdin=text)
    assert r.returncode == 2
    assert "line 5" in r.stderr and "field 3" in r.stderr and "Traceback" not in r.stderr
    expect, expect_state = stepped(model, X[:3])
    np.testing.assert_array_equal(numbers(r.stdout).astype(np.float32), expect)
    np.testing.assert_array_equal(np.load(state), expect_state)


def test_info_describes_the_model():
    r = streamgru("info", PT)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "PyTorch state dict" in out
    assert re.search(r"parameters: +8,407", out)
    assert re.search(r"state size: +48", out)
    assert "dtype:       float32" in out
    assert re.search(r"GRU +6 -> 48 .*reset_after=True", out)
    assert re.search(r"Dense +48 -> 7 .*activation none", out)


def test_convert_writes_an_equal_native_model(tmp_path):
    dst = tmp_path / "watch.safetensors"
    r = streamgru("convert", ONNX, str(dst))
    assert r.returncode == 0, r.stderr
    assert sg.load(dst) == sg.load(ONNX)
    assert sg.load(dst).metadata["converted_from"] == "watch_gru.onnx"


def test_bench_reports_latency_and_throughput():
    r = streamgru("bench", NATIVE, "--steps", "300", "--repeats", "3", "--chunk", "200")
    assert r.returncode == 0, r.stderr
    assert re.search(r"step: +p50 [\d.]+ us +p99 [\d.]+ us", r.stdout)
    assert re.search(r"[\d,]+ samples/s", r.stdout)


def test_warmup():
    r = streamgru("warmup")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("numba cache ready")


def test_bad_model_file_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip file")
    r = streamgru("info", str(bad))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "broken.npz" in r.stderr
    assert r.stdout == ""


# ----------------------------------------------------------------------------
# in-process: help, arguments, line parsing


@pytest.mark.parametrize("command", ["", "demo", "run", "info", "convert", "bench", "warmup"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"] if command else ["--help"])
    assert exc.value.code == 0
    assert "usage: streamgru" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, code, message",
    [
        ([], 2, "usage"),
        (["frobnicate"], 2, "invalid choice"),
        (["run"], 2, "required: MODEL"),
        (["info", "missing.onnx"], 1, "missing.onnx: no such file"),
        (["info", README], 1, "unknown file type '.md'"),
        (["convert", PT, "out.onnx"], 2, "use a .npz or .safetensors suffix"),
        (["bench", NATIVE, "--steps", "5"], 2, "--steps must be"),
        (["run", NATIVE, "no/such/input.csv"], 1, "no/such/input.csv"),
    ],
)
def test_bad_arguments(argv, code, message, capsys):
    try:
        got = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        got = exc.code
    assert got == code
    assert message in capsys.readouterr().err


def run_in_process(monkeypatch, capsys, text, *extra):
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code = cli.main(["run", NATIVE, *extra])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize(
    "line, why",
    [
        ("1,2,3,4,5", "expected 6 values, got 5"),
        ("1 2 3 4 5 6 7", "expected 6 values, got 7"),
        ("1,2,,4,5,6", "field 3 is empty"),
        ("1,2,3,4,5,x1", "field 6 is not a number: 'x1'"),
        ("inf 0 0 0 0 0", "field 1 is 'inf'; values must be finite"),
        ("0,0,0,0,-NaN,0", "field 5 is '-NaN'"),
        ("0,0,0,0,0,1e39", "field 6 (1e+39) is too large for float32"),
    ],
)
def test_run_names_the_bad_line_and_what_was_wrong(line, why, monkeypatch, capsys, model, tmp_path):
    state = tmp_path / "s.npy"
    code, out, err = run_in_process(
        monkeypatch, capsys, f"# comment\n0,0,0,0,0,0\n\n{line}\n0,0,0,0,0,0\n",
        "--state-out", str(state),
    )
    assert code == 2
    assert f"line 4: {why}" in err
    assert len(out.splitlines()) == 1
    np.testing.assert_array_equal(np.load(state), stepped(model, np.zeros((1, 6)))[1])


def test_run_argmax_names_the_class(monkeypatch, capsys, model):
    _, X = csv_rows()
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in X[:50])
    code, out, _ = run_in_process(monkeypatch, capsys, text, "--argmax")
    assert code == 0
    classes = model.metadata["classes"]
    expect = stepped(model, X[:50])[0].argmax(axis=1)
    assert out.splitlines() == [f"{k},{classes[k]}" for k in expect]


def test_run_rejects_a_state_of_the_wrong_size(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "s.npy"
    np.save(bad, np.zeros(5))
    code, out, err = run_in_process(monkeypatch, capsys, "0,0,0,0,0,0\n", "--state-in", str(bad))
    assert code == 2 and out == ""
    assert "expected 48 floats" in err


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=8),
    st.sampled_from([",", ", ", " ", "\t", "  "]),
)
def test_parse_sample_reads_back_what_was_written(values, sep):
    line = sep.join(repr(v) for v in values)
    np.testing.assert_array_equal(cli.parse_sample(line, len(values)), values)
    assert not cli.is_header(line)


def test_header_detection():
    assert cli.is_header("ax,ay,az,wx,wy,wz")
    assert cli.is_header("time value")
    assert not cli.is_header("1,2,abc")  # a bad data line, not a header
    assert not cli.is_header("nan,nan")
