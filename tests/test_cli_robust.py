"""The command line never shows a traceback: closed pipes, Ctrl-C, odd
separators, the demo's limit from the environment, and --plot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from streamgru import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.path.join(ROOT, "weights", "watch_gru.npz")
ONNX = os.path.join(ROOT, "weights", "watch_gru.onnx")
CSV = os.path.join(ROOT, "weights", "watch_sample.csv")


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


COMMANDS = {
    "demo": ["demo", "--limit", "20000", "--progress", "lines"],
    "info": ["info", ONNX],
    "run": ["run", NATIVE, CSV],
    "bench": ["bench", NATIVE, "--steps", "200", "--repeats", "2"],
    "help": ["--help"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_closed_pipe_stops_quietly(name):
    # `streamgru ... | head -1`, for real: the reader closes after one line
    cmd = " ".join([f"'{sys.executable}'", "-m", "streamgru", *COMMANDS[name]])
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd} | head -1"], capture_output=True,
                       text=True, cwd="/", env=_env(), timeout=300)
    assert "Traceback" not in r.stderr and "Error" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1


def test_ctrl_c_is_one_line_and_130():
    # `run` waiting on stdin, interrupted the way a terminal does it
    p = subprocess.Popen([sys.executable, "-m", "streamgru", "run", NATIVE], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    p.stdin.write("0,0,0,0,0,0\n")
    p.stdin.flush()
    assert p.stdout.readline()  # it is running: one output line for one sample
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert "Traceback" not in err
    assert err.strip() == "streamgru: interrupted"


@pytest.mark.parametrize("line", ["1;2;3;4;5;6", "1 ; 2;3;4;5;6", "1\t2\t3\t4\t5\t6"])
def test_semicolons_and_tabs_separate_fields(line):
    assert np.array_equal(cli.parse_sample(line, 6), np.arange(1, 7))


def test_a_short_line_says_how_fields_are_separated():
    with pytest.raises(cli.LineError, match=r"expected 6 values, got 1 \(fields are separated by "
                                            r"commas, semicolons or spaces\)"):
        cli.parse_sample("1|2|3|4|5|6", 6)


def test_demo_limit_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("STREAMGRU_DEMO_LIMIT", "500")
    assert cli.main(["demo", "--progress", "none"]) == 0
    assert "streaming 500 samples" in capsys.readouterr().out
    monkeypatch.setenv("STREAMGRU_DEMO_LIMIT", "many")
    assert cli.main(["demo"]) == 2
    assert "STREAMGRU_DEMO_LIMIT must be a whole number" in capsys.readouterr().err


def test_limit_zero_names_the_option_once(capsys):
    assert cli.main(["demo", "--limit", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "streamgru demo: --limit must be at least 1, got 0\n"


def test_demo_plot_writes_a_picture(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # the optional extra; the test extra installs it
    out = tmp_path / "demo.png"
    assert cli.main(["demo", "--limit", "6000", "--progress", "none", "--plot", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert "plot:" in capsys.readouterr().out


def test_demo_plot_without_matplotlib_names_the_pip_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    t0 = time.perf_counter()
    assert cli.main(["demo", "--plot", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err
    assert "pip install matplotlib" in err and "Traceback" not in err
    assert time.perf_counter() - t0 < 5  # refused before streaming
    assert not (tmp_path / "d.png").exists()


def test_demo_plot_bad_name(tmp_path, capsys):
    assert cli.main(["demo", "--plot", str(tmp_path / "d.txt")]) == 2
    assert "use a .png, .pdf or .svg" in capsys.readouterr().err
