"""Run the docstring examples of every topologies module under plain ``pytest tests``."""

import doctest
import importlib

import pytest

MODULES = [
    "topologies",
    "topologies.builders",
    "topologies.external",
    "topologies.registry",
    "topologies.mixing",
    "topologies.schedules",
    "topologies.trees",
    "topologies.spectral",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
