"""Declared options for registries (algorithms, problems, compressors, data, models).

Every registry entry declares its configuration keys as :class:`Option` objects; one function,
:func:`resolve`, fills defaults, converts and checks values, and raises
:class:`~gossip.errors.ConfigError` naming the full key (``algorithm.lr``), the bad value and
what is allowed. ``gossip train --help`` lists the same declarations.

Examples
--------
>>> opts = [Option("lr", float, 0.1, "step size", check=positive), Option("local_steps", int, 1)]
>>> resolve("algorithm", {"lr": 0.5}, opts)
{'lr': 0.5, 'local_steps': 1}
>>> resolve("algorithm", {"lr": -1.0}, opts)
Traceback (most recent call last):
...
gossip.errors.ConfigError: algorithm.lr must be > 0, got -1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gossip.errors import ConfigError

__all__ = [
    "SEED_MAX",
    "Option",
    "at_least",
    "fraction",
    "int_range",
    "non_negative",
    "positive",
    "resolve",
    "type_name",
    "unknown_name",
]

_REQUIRED = object()

#: The largest seed: TOML's largest integer, which numpy and ``torch.manual_seed`` accept.
SEED_MAX = 2**63 - 1


@dataclass(frozen=True)
class Option:
    """One configuration key.

    Parameters
    ----------
    name : str
        Key inside its section (``lr``).
    type : type or tuple of types
        ``int``, ``float``, ``str``, ``bool``, ``list`` or ``dict``, or a tuple of them (a value
        of any of them, e.g. ``(float, str)`` for ``gamma = 0.5`` or ``"auto"``). Ints are
        accepted for floats.
        A float must be finite (TOML's ``inf``, ``nan`` and ``1e400``, which reads as
        ``inf``, are rejected).
    default :
        Value when the key is absent; ``Option.REQUIRED`` makes it mandatory; ``None`` means
        "not set" and skips the type check when absent or given as None.
    help : str
        One line for ``--help``.
    choices : sequence, optional
        Allowed values.
    check : callable, optional
        ``check(value) -> str | None``: a message like ``"must be > 0"`` when the value is bad.
    """

    name: str
    type: type
    default: Any = None
    help: str = ""
    choices: Sequence[Any] | None = None
    check: Callable[[Any], str | None] | None = None

    REQUIRED = _REQUIRED

    def convert(self, section: str, value: Any) -> Any:
        key = f"{section}.{self.name}" if section else self.name
        if value is None and self.default is None:
            return None
        t = self.type
        kinds = t if isinstance(t, tuple) else (t,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if t is bool and not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        if t is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        if t is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, t):
            raise ConfigError(f"{key} must be of type {type_name(t)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise ConfigError(f"{key} must be one of [{allowed}], got {value!r}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ConfigError(f"{key} {problem}, got {value!r}")
        return value


def resolve(section: str, given: dict[str, Any], options: Sequence[Option]) -> dict[str, Any]:
    """Defaults filled in, values converted and checked; unknown keys rejected.

    Raises
    ------
    ConfigError
        Unknown key (listing the valid ones), missing required key, wrong type, bad value.
    """
    known = {o.name: o for o in options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        valid = ", ".join(sorted(known)) or "(none)"
        raise ConfigError(f"unknown key {section}.{unknown[0]}; valid keys of [{section}]: {valid}")
    out = {}
    for o in options:
        if o.name in given:
            out[o.name] = o.convert(section, given[o.name])
        elif o.default is _REQUIRED:
            raise ConfigError(f"missing required key {section}.{o.name} ({o.help})")
        else:
            out[o.name] = o.default
    return out


def type_name(t: type | tuple[type, ...]) -> str:
    """``float`` for ``float``, ``float|str`` for ``(float, str)``."""
    return "|".join(k.__name__ for k in t) if isinstance(t, tuple) else t.__name__


def unknown_name(kind: str, name: str, valid: Sequence[str]) -> ConfigError:
    """``ConfigError('unknown algorithm 'foo'; valid: a, b')``."""
    return ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")


def positive(v) -> str | None:
    return None if v > 0 else "must be > 0"


def non_negative(v) -> str | None:
    return None if v >= 0 else "must be >= 0"


def fraction(v) -> str | None:
    """0 < v <= 1."""
    return None if 0 < v <= 1 else "must be in (0, 1]"


def int_range(lo: int, hi: int) -> Callable[[Any], str | None]:
    """``lo <= v <= hi`` (e.g. a seed numpy and torch both accept)."""

    def check(v):
        return None if lo <= v <= hi else f"must be in [{lo}, {hi}]"

    return check


def at_least(m) -> Callable[[Any], str | None]:
    def check(v):
        return None if v >= m else f"must be >= {m}"

    return check
