"""The compression contract tests' cases, taken from the registry.

Every registered operator is a case: ``operator_cases()`` gives each name with the options in
:data:`OPTIONS` (a name not listed runs with its defaults), so a new operator is covered by the
round-trip, byte-count and MPI tests as soon as it registers. The wire-bytes tests compare with
a size written out by hand from the operator's wire format (:data:`WIRE_FORMULA`): a registered
operator without one fails them, naming what to add.
"""

from __future__ import annotations

from gossip.compression import compressor_names

#: Options the contract tests give an operator (small enough for rows of 12 to 60 entries).
OPTIONS: dict[str, dict] = {
    "topk": {"ratio": 0.2},
    "randomk": {"k": 3, "unbiased": True},
    "qsgd": {"levels": 3},
    "lowrank": {"rank": 1},
}

# One row of dim 60: a 6x7 matrix, a bias of 6 and a 3x2x2 tensor (low-rank: reshaped to 3x4).
WIRE_DIM = 60
WIRE_LAYOUT = [("w", (6, 7)), ("b", (6,)), ("v", (3, 2, 2))]
#: Bytes of one encoded row of WIRE_DIM fp32 values with the options of OPTIONS, written out by
#: hand from each operator's wire format.
WIRE_FORMULA: dict[str, int] = {
    "none": 60 * 4,                      # fp32 values
    "fp16": 60 * 2,
    "bf16": 60 * 2,
    "topk": 12 * (4 + 1),                # ratio 0.2: k = 12 fp32 values + 12 uint8 indices
    "randomk": 3 * 4,                    # k = 3 values; coordinates come from the shared seed
    "sign": 4 + 8,                       # fp32 scale + 60 bits packed into 8 bytes
    "qsgd": 4 + 23,                      # fp32 norm + 60 x (1 sign + 2 level bits) = 180 bits
    "lowrank": (1 * (6 + 7) + 6 + 1 * (3 + 4)) * 4,  # P, Q of rank 1 per matrix; bias as is
}


def operator_cases() -> list[tuple[str, dict]]:
    """``(name, options)`` for every registered operator, sorted by name."""
    return [(name, OPTIONS.get(name, {})) for name in compressor_names()]


def wire_formula(name: str) -> int:
    """The hand-written row size of ``name``; AssertionError naming the missing case."""
    if name not in WIRE_FORMULA:
        raise AssertionError(
            f"compression operator {name!r} needs a case: add its hand-written row size to "
            "WIRE_FORMULA (and options, if its defaults do not fit, to OPTIONS) in "
            "tests/compression/cases.py"
        )
    return WIRE_FORMULA[name]
