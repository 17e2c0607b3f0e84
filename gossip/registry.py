"""One registry shape for every pluggable kind: algorithms, problems, compressors, models, data
sets (and attacks, aggregators, fault models).

A :class:`Registry` maps names to entries. Each entry declares its options where it is
defined, as a frozen dataclass whose fields are the keys of its config section: a field's
annotation is the key's type, and :func:`option` gives its default, one line of help, allowed
values and a check. From that one declaration come the :class:`~gossip.options.Option` list
that :func:`~gossip.options.resolve` validates a section against (:func:`options_of`), the
``gossip train --help`` text, and the typed object the entry reads (``cfg.gamma``).

Examples
--------
>>> from dataclasses import dataclass
>>> from gossip.options import positive
>>> WIDGETS = Registry("widget", "widget")
>>> @dataclass(frozen=True)
... class Spin:
...     speed: float = option(1.0, "turns per second", check=positive)
>>> @WIDGETS.register("spin", Spin)
... def spin(cfg: Spin) -> str:
...     return f"spinning at {cfg.speed}"
>>> WIDGETS.names()
['spin']
>>> cfg = WIDGETS.config("spin", {"speed": 2})
>>> cfg, WIDGETS["spin"](cfg)
(Spin(speed=2.0), 'spinning at 2.0')
>>> WIDGETS.config("spin", {"speed": 0})
Traceback (most recent call last):
...
gossip.errors.ConfigError: widget.speed must be > 0, got 0.0
>>> WIDGETS["spun"]
Traceback (most recent call last):
...
gossip.errors.ConfigError: unknown widget 'spun'; valid: spin
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from gossip.options import Option, resolve, unknown_name

__all__ = ["NoOptions", "Registry", "option", "options_of"]

T = TypeVar("T")


def option(
    default: Any = Option.REQUIRED,
    help: str = "",
    *,
    choices: Sequence[Any] | None = None,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """A dataclass field that is one config key (see :class:`~gossip.options.Option`).

    A list or dict default is copied for every instance.
    """
    meta = {"help": help, "choices": choices, "check": check}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    if default is Option.REQUIRED:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of an entry that has none."""


def _plain_type(hint: Any) -> type | tuple[type, ...]:
    """``int`` for ``int`` and ``int | None``, ``list`` for ``list[int]``, ``(float, str)`` for
    ``float | str`` (a key that takes a number or a name, such as ``gamma = "auto"``)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) > 1:
            return tuple(typing.get_origin(a) or a for a in args)
        hint = args[0]
    return typing.get_origin(hint) or hint


def options_of(config: type) -> list[Option]:
    """The :class:`~gossip.options.Option` of every field of the dataclass ``config``, in order."""
    hints = typing.get_type_hints(config)
    out = []
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = Option.REQUIRED
        meta = f.metadata
        out.append(Option(f.name, _plain_type(hints[f.name]), default, meta.get("help", ""),
                          choices=meta.get("choices"), check=meta.get("check")))
    return out


class Registry(Generic[T]):
    """Names of one kind, each with an entry (a class or factory) and its options dataclass.

    Parameters
    ----------
    kind : str
        What the names are, for errors: ``unknown <kind> 'foo'; valid: ...``.
    section : str
        The config section the options live in (``algorithm.gamma``).

    A registry is also the live sequence of its names (``in``, iteration in sorted order), so
    it can be an option's ``choices``.
    """

    def __init__(self, kind: str, section: str) -> None:
        self.kind, self.section = kind, section
        self._entries: dict[str, tuple[T, type]] = {}

    def register(self, name: str, config: type = NoOptions) -> Callable[[T], T]:
        """Decorator adding an entry under ``name`` with options dataclass ``config``; one line
        for an existing object: ``REGISTRY.register("name", Config)(obj)``."""
        if not (dataclasses.is_dataclass(config) and isinstance(config, type)):
            raise TypeError(f"{self.kind} {name!r}: config must be a dataclass, got {config!r}")

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = (obj, config)
            return obj

        return add

    def remove(self, name: str) -> None:
        """Take ``name`` out again (a test's temporary entry)."""
        del self._entries[name]

    def _entry(self, name: str) -> tuple[T, type]:
        if name not in self._entries:
            raise unknown_name(self.kind, name, list(self._entries))
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        """The entry ``name``; ConfigError listing the valid names when there is none."""
        return self._entry(name)[0]

    def config_type(self, name: str) -> type:
        """The options dataclass of ``name``."""
        return self._entry(name)[1]

    def options(self, name: str) -> list[Option]:
        """The config keys of ``name``."""
        return options_of(self.config_type(name))

    def config(self, name: str, given: dict[str, Any]) -> Any:
        """``name``'s options dataclass built from the section's keys ``given``, every key
        checked (ConfigError naming ``<section>.<key>``)."""
        cls = self.config_type(name)
        return cls(**resolve(self.section, dict(given), options_of(cls)))

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
