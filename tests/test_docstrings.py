"""Every docstring example (``>>>``) of ``gossip``, ``topologies`` and ``analysis`` runs and
prints what it shows: an example that goes stale fails here."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("gossip", "topologies", "analysis")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
    return [name for name in names if not name.endswith("__main__")]  # __main__ runs the CLI


def _with_examples() -> list[str]:
    finder = doctest.DocTestFinder()
    return [name for name in _modules()
            if any(t.examples for t in finder.find(importlib.import_module(name)))]


WITH_EXAMPLES = _with_examples()


def test_the_packages_have_examples():
    assert {"gossip.config", "gossip.runner.sweep", "topologies.spectral"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS,
                             report=True, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
