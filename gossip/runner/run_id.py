"""The run id: which checkpoints belong to a run folder's configuration, across versions.

Every checkpoint file and the manifest carry the id of the run that wrote them, and a resume
accepts only files with its own id (:mod:`gossip.runner.resume`). The id must not change when
a later version of the simulator adds a section or a key with a default that keeps the old
behaviour (``[faults]``, ``[time]``, ``[attack]``, ``[privacy]`` ...): such a section holds
only defaults in a run folder written before it existed, and nothing that matters changed.

So the id is the SHA-256 (16 hex digits) of the *sparse* config :func:`sparse_config`: the
resolved configuration without the keys a resume may change (:data:`RESUMABLE_CHANGES`) and
without every key whose value is the one :func:`~gossip.config.validate` gives it when it is
absent (its default in context: ``topology.seed`` defaults to ``seed``, so it is left out
exactly when it equals ``seed``). A key set to anything else, a changed ``algorithm.lr`` for
instance, stays in and changes the id. Two resolved configs with the same sparse config are
equal, because a left-out key is a function of the keys kept (defaults depend on other keys
without cycles).

Versions before this one hashed the whole resolved config, so a section added later changed
the id of every existing run folder (:func:`legacy_run_id`). Their checkpoints are accepted
when their id is the legacy id of the folder's ``config.toml`` as stored (the file that
version wrote, read without resolving it), and a resume rewrites only the resumable keys of
that file (:func:`resumed_file`), so the legacy id stays valid until the resumed run has
written checkpoints of its own.

What a resume may change is checked on the resolved configs (:func:`differences`): both the
stored file and the given config are resolved by this version, so a section or key absent
from the file equals its default, and a changed value is refused in one line naming every
dotted key that differs, old and new value (:func:`refuse_differences`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from gossip.config import Config, validate
from gossip.errors import ConfigError

__all__ = ["RESUMABLE_CHANGES", "accepted_run_ids", "differences", "legacy_run_id",
           "refuse_differences", "resumed_file", "run_id", "sparse_config"]

#: Keys a resumed run may change (everything else must match the saved config).
#: ``out`` and ``name`` are where the run lives: the folder given to ``--resume`` decides them.
RESUMABLE_CHANGES = ("rounds", "eval_every", "checkpoint_every", "device")

_ABSENT = object()


def _digest(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _keys(full: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every key of a config dict: ``(top,)`` or ``(section, key)``."""
    return [(k, s) if isinstance(v, dict) else (k,)
            for k, v in full.items() for s in (v if isinstance(v, dict) else [None])]


def _get(d: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(d, dict) or part not in d:
            return _ABSENT
        d = d[part]
    return d


def _is_default(full: dict[str, Any], path: tuple[str, ...]) -> bool:
    """Whether ``full`` (a resolved config as a dict) gives ``path`` the value validation
    gives it when the key is absent (the other keys as they are)."""
    trial = copy.deepcopy(full)
    if len(path) == 1:
        del trial[path[0]]
    else:
        del trial[path[0]][path[1]]
    try:
        resolved = validate(trial).to_dict()
    except ConfigError:  # without the key the config is not valid: the key matters
        return False
    return _get(resolved, path) == _get(full, path)


@lru_cache(maxsize=64)
def _sparse(text: str) -> str:
    full = json.loads(text)
    sparse: dict[str, Any] = {}
    for path in _keys(full):
        if path[0] in RESUMABLE_CHANGES or _is_default(full, path):
            continue
        if len(path) == 1:
            sparse[path[0]] = full[path[0]]
        else:
            sparse.setdefault(path[0], {})[path[1]] = full[path[0]][path[1]]
    return json.dumps(sparse, sort_keys=True)


def sparse_config(config: Config) -> dict[str, Any]:
    """The keys of ``config`` that are not their defaults, resumable keys left out (see the
    module docstring).

    >>> from gossip.config import load_config
    >>> sparse_config(load_config(None, ["problem.name=quadratic", "algorithm.lr=0.05",
    ...                                  "rounds=7", "seed=3"]))
    {'algorithm': {'lr': 0.05}, 'problem': {'name': 'quadratic'}, 'seed': 3}
    """
    return json.loads(_sparse(json.dumps(config.to_dict(), sort_keys=True, default=str)))


def run_id(config: Config) -> str:
    """The run's id: SHA-256 (16 hex digits) of :func:`sparse_config`."""
    return _digest(sparse_config(config))


def legacy_run_id(stored: dict[str, Any]) -> str:
    """The id older versions gave a run: SHA-256 of the whole config as stored in its
    ``config.toml`` (``stored``, the file's table), resumable keys left out."""
    return _digest({k: v for k, v in stored.items() if k not in RESUMABLE_CHANGES})


def _read_stored(path: Path) -> dict[str, Any] | None:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None


def accepted_run_ids(config: Config, config_file: str | Path) -> tuple[str, ...]:
    """The ids a checkpoint of ``config`` may carry: :func:`run_id`, and the
    :func:`legacy_run_id` of ``config_file`` (the run folder's ``config.toml``) when it can be
    read. The caller has checked that ``config`` and the file agree (:func:`differences`)."""
    ids = [run_id(config)]
    stored = _read_stored(Path(config_file))
    if stored is not None and legacy_run_id(stored) not in ids:
        ids.append(legacy_run_id(stored))
    return tuple(ids)


def resumed_file(config: Config, config_file: str | Path) -> str:
    """The text of ``config.toml`` after a resume: the stored file with its resumable keys
    replaced by those of ``config`` (the other keys agree, :func:`differences`), so the file's
    :func:`legacy_run_id` does not change; ``config.to_toml()`` when the file cannot be read."""
    import tomli_w

    stored = _read_stored(Path(config_file))
    if stored is None:
        return config.to_toml()
    new = config.to_dict()
    for key in RESUMABLE_CHANGES:
        stored.pop(key, None)
        if key in new:
            stored[key] = new[key]
    return tomli_w.dumps(stored)


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    return {".".join(path): _get(d, path) for path in _keys(d)}


def differences(old: Config, new: Config, ignore=RESUMABLE_CHANGES) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every key whose resolved values differ
    (``None`` for a key one side does not have), ``ignore``'s top-level keys left out.

    >>> from gossip.config import load_config
    >>> base = ["problem.name=quadratic"]
    >>> differences(load_config(None, base), load_config(None, [*base, "algorithm.lr=0.05",
    ...                                                          "rounds=7"]))
    [('algorithm.lr', 0.1, 0.05)]
    """
    a, b = _flat(old.to_dict()), _flat(new.to_dict())
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, None), b.get(key, None)
        if key.split(".")[0] not in ignore and x != y:
            out.append((key, x, y))
    return out


def refuse_differences(saved: Config, given: Config, run_dir: Path) -> None:
    """ConfigError (one line) when ``given`` changes a key of ``saved`` other than
    :data:`RESUMABLE_CHANGES`, naming every such key with its saved and its given value."""
    found = differences(saved, given)
    if not found:
        return
    keys = {k for k, _, _ in found}
    listed = ", ".join(f"{k!r} (saved {x!r}, given {y!r})" for k, x, y in found)
    where = f": the run stays in {str(run_dir)!r}" if keys & {"out", "name"} else ""
    raise ConfigError(f"cannot resume with a different {listed}{where}; only "
                      f"{', '.join(RESUMABLE_CHANGES)} may change")
