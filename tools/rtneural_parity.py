"""streamgru against RTNeural's own C++ on RTNeural JSON files.

RTNeural is not vendored: pass a checkout of its repository (its headers and
``modules/json``). This script writes a small C++ driver of its own, builds
it against RTNeural's plain C++ backend (no Eigen, no xsimd) in double
precision, runs each model file sample by sample, and prints the largest
difference to streamgru's float64 and float32 streams.

    python tools/rtneural_parity.py RTNEURAL_CHECKOUT model.json [model.json ...]
    python tools/rtneural_parity.py RTNEURAL_CHECKOUT --tests   # the conv models of tests/

Measured (Dec 2026, RTNeural 1fb1f07, g++ -O1, ``--tests``): the CNN-GRU and
TCN of tests/test_rtneural_conv.py over 1500 samples agree to 2.8e-16
(float64) and 1.4e-7 (float32); the grouped conv document to 8.9e-16 and
5.1e-7.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import streamgru as sg  # noqa: E402

DRIVER = r"""
#include "RTNeural/RTNeural.h"
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <vector>
// argv: model.json, number of inputs; stdin: one sample per line; stdout: outputs
int main(int argc, char** argv) {
    std::ifstream js(argv[1], std::ifstream::binary);
    auto model = RTNeural::json_parser::parseJson<double>(js, false);
    if (!model) return 1;
    model->reset();
    const int n = std::atoi(argv[2]);
    std::vector<double> x(n);
    std::cout.precision(17);
    for (;;) {
        for (int i = 0; i < n; ++i)
            if (!(std::cin >> x[i])) return 0;
        model->forward(x.data());
        const double* y = model->getOutputs();
        for (int o = 0; o < model->getOutSize(); ++o)
            std::cout << y[o] << (o + 1 < model->getOutSize() ? ' ' : '\n');
    }
}
"""


def build(checkout: str, folder: str) -> str:
    src, exe = os.path.join(folder, "driver.cpp"), os.path.join(folder, "driver")
    with open(src, "w") as f:
        f.write(DRIVER)
    subprocess.run(["g++", "-O1", "-std=c++17", "-DRTNEURAL_DEFAULT_ALIGNMENT=16",
                    f"-I{checkout}", f"-I{os.path.join(checkout, 'modules', 'json')}", src,
                    "-o", exe], check=True)
    return exe


def compare(exe: str, path: str, T: int = 1500) -> tuple[float, float]:
    m64 = sg.load(path, dtype=np.float64)
    X = np.random.default_rng(0).normal(0, 0.5, (T, m64.input_size))
    text = "\n".join(" ".join("%.17g" % v for v in row) for row in X)
    out = subprocess.run([exe, path, str(m64.input_size)], input=text, capture_output=True,
                         text=True, check=True).stdout
    want = np.array([[float(v) for v in line.split()] for line in out.strip().splitlines()])
    got64 = m64.stream().process(X)
    got32 = sg.load(path).stream().process(X.astype(np.float32))
    return float(np.abs(got64 - want).max()), float(np.abs(got32 - want).max())


def test_models(folder: str) -> list[str]:
    """The Keras-built conv models of tests/test_rtneural_conv.py, exported."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import test_rtneural_conv as t

    paths = []
    for name in t.MODELS:
        model, _ = t.build(name)
        paths.append(os.path.join(folder, f"{name}.json"))
        t.rtneural_export(model, paths[-1])
    paths.append(os.path.join(folder, "groups.json"))
    with open(paths[-1], "w") as f:
        json.dump(t._conv_doc(), f)
    return paths


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as folder:
        exe = build(argv[0], folder)
        paths = test_models(folder) if argv[1:] == ["--tests"] else argv[1:]
        for path in paths:
            e64, e32 = compare(exe, path)
            print(f"{os.path.basename(path)}: max |streamgru - RTNeural| float64 {e64:.2g}, "
                  f"float32 {e32:.2g}")


if __name__ == "__main__":
    main(sys.argv[1:])
