"""The examples in the docs run: docstring examples of every streamgru module
(doctest) and the README's Python quickstart block."""

import doctest
import importlib
import os
import pkgutil
import re

import pytest

import streamgru

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODULES = ["streamgru"] + sorted(
    m.name
    for m in pkgutil.walk_packages(streamgru.__path__, "streamgru.")
    if not m.name.endswith("__main__")  # importing it runs the command line
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any file an example writes lands here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_public_modules_have_examples():
    """The doctests above are not vacuous: the main modules carry examples."""
    counted = {}
    finder = doctest.DocTestFinder()
    for name in ("streamgru", "streamgru.model", "streamgru.stream"):
        module = importlib.import_module(name)
        counted[name] = sum(len(t.examples) for t in finder.find(module))
    assert all(n > 0 for n in counted.values()), counted


def readme_python_blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_quickstart_runs(tmp_path, monkeypatch, capsys):
    blocks = readme_python_blocks()
    assert blocks, "README.md has no ```python block"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    assert "expected finite values" in capsys.readouterr().out


def test_readme_keeps_the_two_setup_commands():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert re.search(r"pip install [^\n]*&& *streamgru demo", text)  # install and run the main job
    assert re.search(r"pip install [^\n]*\[test\][^\n]*&& *python -m pytest", text)


def test_help_shows_the_public_api_first():
    import pydoc

    text = pydoc.render_doc(streamgru, renderer=pydoc.plaintext)
    description = text[text.index("DESCRIPTION") : text.index("PACKAGE CONTENTS")]
    for name in ("sg.load", "sg.from_torch", "sg.save", "m.stream()", "s.step", "WeightsError"):
        assert name in description, name
    functions = text[text.index("FUNCTIONS") :]
    assert "__getattr__" not in functions and "__dir__" not in functions  # internals stay out
