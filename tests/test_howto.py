"""The "how to add an algorithm, a compressor, an attack" section of docs/architecture.md,
run literally: every ```python block headed ``# file: NAME.py`` becomes a module in a
temporary folder (imported, so it registers), every block headed ``# run`` is executed there,
and the runs it makes are checked against exact properties.
"""

from __future__ import annotations

import importlib
import re
import sys

import pytest

from gossip.algorithms import ALGORITHMS
from gossip.compression import COMPRESSORS
from tests.mpi_util import REPO_ROOT

DOC = REPO_ROOT / "docs" / "architecture.md"


def howto_blocks() -> list[str]:
    text = DOC.read_text()
    section = text[text.index("## How to add an algorithm, a compressor, an attack"):]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture
def howto(tmp_path, monkeypatch):
    """The section's namespace after running its blocks in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    blocks = howto_blocks()
    files = [b for b in blocks if b.startswith("# file: ")]
    runs = [b for b in blocks if b.startswith("# run")]
    assert len(files) == 3 and len(runs) == 1, "the section lost a block"
    modules = []
    try:
        for block in files:
            name = block.splitlines()[0].removeprefix("# file: ").strip()
            (tmp_path / name).write_text(block)
            modules.append(name.removesuffix(".py"))
            importlib.import_module(modules[-1])
        namespace: dict = {}
        exec(compile(runs[0], str(DOC), "exec"), namespace)
        yield namespace
    finally:
        for name in ("howto_dgd",):
            if name in ALGORITHMS:
                ALGORITHMS.remove(name)
        if "howto_scaled" in COMPRESSORS:
            COMPRESSORS.remove("howto_scaled")
        for m in modules:
            sys.modules.pop(m, None)


def test_the_howto_section_runs_as_written(howto):
    clean, compressed, honest = howto["clean"], howto["compressed"], howto["honest"]
    # the new algorithm ran with its declared option, one mix per round like D-SGD (the same
    # messages), and its mean model is near the optimum (~1e-2 of the quadratic's loss)
    assert clean["algorithm"] == {"name": "howto_dgd", "scale": 1.0}
    assert clean["bytes_sent"] == honest["bytes_sent"]
    assert clean["final"]["loss_at_mean"] < 0.05
    # the new compressor is lossless with factor 0.5 (a power of two): CHOCO through it is
    # CHOCO without compression, bit for bit, at the same bytes
    assert compressed["compression"]["name"] == "howto_scaled"
    assert compressed["compression"]["ratio"] == 1.0


def test_the_howto_compressor_is_exactly_lossless(howto, tmp_path):
    from gossip.config import load_config
    from gossip.runner.loop import run

    compressed = howto["compressed"]
    plain = run(load_config(overrides=["problem.name=quadratic", "rounds=200",
                                       "eval_every=100", "out=runs", "algorithm.name=choco",
                                       "name=plain"]), quiet=True)
    assert compressed["final"]["distance_to_optimum"] == plain["final"]["distance_to_optimum"]
    assert compressed["bytes_sent"] == plain["bytes_sent"]


def test_the_howto_attack_hurts_at_the_same_bytes(howto):
    honest, attacked = howto["honest"], howto["attacked"]
    assert attacked["bytes_sent"] == honest["bytes_sent"]  # a replaced message costs the same
    assert attacked["final"]["distance_to_optimum"] > 10 * honest["final"]["distance_to_optimum"]
