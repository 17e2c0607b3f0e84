"""The registry shape, and that a new entry is picked up by the contract tests.

A toy compressor and a toy algorithm are written into a temporary module, imported, and must
then appear in the case lists of the wire-bytes tests (``tests/compression/cases.py``) and of
the MPI-equivalence test (``tests/run_scripts/equivalence.py``), and run end to end.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gossip.algorithms import ALGORITHMS
from gossip.compression import COMPRESSORS, make_compressor
from gossip.config import describe_keys, load_config
from gossip.errors import ConfigError
from gossip.options import Option, positive
from gossip.registry import NoOptions, Registry, option, options_of
from tests.compression import cases
from tests.mpi_util import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests" / "run_scripts"))
import equivalence  # noqa: E402


@dataclass(frozen=True)
class _Opts:
    must: float = option(help="a required key")
    width: int | None = option(None, "how wide", check=positive)
    sizes: list[int] = option([1, 2], "sizes")
    mode: str = option("a", "mode", choices=("a", "b"))


def test_options_come_from_the_dataclass():
    opts = {o.name: o for o in options_of(_Opts)}
    assert list(opts) == ["must", "width", "sizes", "mode"]
    assert opts["width"] == Option("width", int, None, "how wide", check=positive)
    assert opts["sizes"].type is list and opts["sizes"].default == [1, 2]
    assert opts["mode"].choices == ("a", "b")
    assert opts["must"].default is Option.REQUIRED
    assert _Opts(must=1.0).sizes is not _Opts(must=1.0).sizes  # a fresh list per instance


def test_registry_lookup_config_and_errors():
    reg = Registry("widget", "widget")
    reg.register("b", _Opts)(len)
    reg.register("a")(max)
    assert reg.names() == list(reg) == ["a", "b"] and "a" in reg and len(reg) == 2
    assert reg["b"] is len and reg.config_type("a") is NoOptions
    assert reg.config("b", {"must": 2, "width": 3}) == _Opts(width=3, must=2.0)
    with pytest.raises(ConfigError, match=r"^unknown widget 'c'; valid: a, b$"):
        reg["c"]
    with pytest.raises(ConfigError, match=r"^widget\.width must be > 0, got 0$"):
        reg.config("b", {"must": 1, "width": 0})
    with pytest.raises(ConfigError, match=r"^missing required key widget\.must"):
        reg.config("b", {})
    with pytest.raises(ConfigError, match=r"^unknown key widget\.x; valid keys of \[widget\]"):
        reg.config("a", {"x": 1})
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(min)
    with pytest.raises(TypeError, match="must be a dataclass"):
        reg.register("d", dict)
    reg.remove("a")
    assert reg.names() == ["b"]


TOY = '''
from dataclasses import dataclass

from gossip.algorithms.base import register_algorithm
from gossip.algorithms.dsgd import DSGD
from gossip.compression.base import Compressor, make_state, register_compressor
from gossip.options import positive
from gossip.registry import option


@dataclass(frozen=True)
class Halve:
    factor: float = option(0.5, "scale of the sent rows", check=positive)


@register_compressor("toy_scale", Halve)
def toy_scale(cfg):
    def init(dim, nodes, layout=None, seed=0, *, dtype=None, device="cpu"):
        return make_state(dim, nodes, layout, seed, dtype=dtype, device=device)

    def encode(X, state, step):
        return (X * cfg.factor,), state

    def decode(payload, state, ids, step):
        return payload[0] / cfg.factor

    def payload_row_bytes(dim, layout=None, dtype=None):
        return 4 * dim

    return Compressor("toy_scale", init, encode, decode, payload_row_bytes,
                      {"factor": cfg.factor}, biased=False)


@register_algorithm
class ToyDSGD(DSGD):
    name = "toy_dsgd"
'''


@pytest.fixture
def toy_module(tmp_path):
    path = tmp_path / "toy_entries.py"
    path.write_text(TOY)
    spec = importlib.util.spec_from_file_location("toy_entries", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    COMPRESSORS.remove("toy_scale")
    ALGORITHMS.remove("toy_dsgd")


def test_a_new_entry_is_picked_up_by_the_contract_tests(toy_module, tmp_path):
    # wire bytes: the toy operator is a case, and it fails until its row size is written down
    assert ("toy_scale", {}) in cases.operator_cases()
    with pytest.raises(AssertionError, match="'toy_scale' needs a case"):
        cases.wire_formula("toy_scale")
    # MPI equivalence: every registered algorithm is a case
    assert "toy_dsgd-ring" in equivalence.cases()
    # options, errors and --help come from the same declarations
    assert make_compressor("toy_scale", {"factor": 2}).options["factor"] == 2.0
    with pytest.raises(ConfigError, match="compression.k does not apply to 'toy_scale'"):
        make_compressor("toy_scale", {"k": 3})
    assert "toy_scale: scale of the sent rows" in describe_keys()
    assert "algorithm.name = 'toy_dsgd':" in describe_keys()
    # a D-SGD never compresses, so naming a compressor for it is refused, not ignored
    quick = ["problem.name=quadratic", "nodes=4", "rounds=2", "eval_every=1", f"out='{tmp_path}'"]
    with pytest.raises(ConfigError, match="compression.name='toy_scale' has no effect with "
                                          "algorithm.name='toy_dsgd'"):
        load_config(None, [*quick, "algorithm.name=toy_dsgd", "compression.name=toy_scale"])
    # and both run end to end
    from gossip.runner.loop import run

    run(load_config(None, [*quick, "algorithm.name=toy_dsgd", "name=toy"]), quiet=True)
    summary = json.loads((Path(tmp_path) / "toy" / "summary.json").read_text())
    assert summary["algorithm"]["name"] == "toy_dsgd"
    run(load_config(None, [*quick, "algorithm.name=naive_compressed_dsgd",
                           "compression.name=toy_scale", "name=toy_c"]), quiet=True)
    summary = json.loads((Path(tmp_path) / "toy_c" / "summary.json").read_text())
    assert summary["compression"]["name"] == "toy_scale"


def test_doctests():
    import doctest

    import gossip.registry

    assert doctest.testmod(gossip.registry).failed == 0
