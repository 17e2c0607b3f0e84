"""Run configuration: one TOML file, dotted ``--set`` overrides, every key validated.

A configuration has top-level keys (``seed``, ``nodes``, ``rounds`` ...) and sections
``[topology]`` (:mod:`gossip.network.topology`), ``[algorithm]``, ``[problem]``,
``[compression]``, ``[data]``, ``[model]``, ``[faults]`` (:mod:`gossip.network.faults`),
``[time]`` (:mod:`gossip.network.sim_time`), ``[attack]`` (:mod:`gossip.robust.attacks`) and
``[privacy]`` (:mod:`gossip.privacy.dp_sgd`).
Keys of a section are declared by the registry entry that owns them (:mod:`gossip.registry`:
an algorithm's, a problem's, a compressor's options dataclass), so the same declarations
validate a file and produce ``gossip train --help``.

Examples
--------
>>> cfg = load_config(None, ["problem.name=quadratic", "topology.name=chain", "nodes=8"])
>>> cfg["topology"]["name"], cfg["nodes"], cfg["algorithm"]["lr"]
('chain', 8, 0.1)
>>> load_config(None, ["nodes=1"])
Traceback (most recent call last):
...
gossip.errors.ConfigError: nodes must be >= 2, got 1
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gossip.errors import ConfigError
from gossip.network.topology import TOPOLOGY_OPTIONS, build_topology, resolve_topology
from gossip.options import (
    SEED_MAX,
    Option,
    at_least,
    int_range,
    non_negative,
    positive,
    resolve,
    type_name,
    unknown_name,
)

__all__ = [
    "Config",
    "DEFAULTS",
    "RUN_OPTIONS",
    "TOPOLOGY_OPTIONS",
    "build_topology",
    "LR_OPTIONS",
    "describe_keys",
    "load_config",
    "parse_override",
    "validate",
]

def _run_name(v: str) -> str | None:
    """A run folder name is one path component inside ``out`` (so never ``..`` or ``a/b``)."""
    if v in ("", ".", "..") or "/" in v or "\\" in v:
        return "must be one folder name inside out (no '/' or '\\', not '.' or '..')"
    return None


RUN_OPTIONS: list[Option] = [
    Option("seed", int, 0, "seed of everything random (data, batches, random topologies), "
           "0 .. 2**63-1",
           check=int_range(0, SEED_MAX)),
    Option("nodes", int, 16, "number of nodes n", check=at_least(2)),
    Option("rounds", int, 1000, "communication rounds", check=at_least(1)),
    Option("eval_every", int, 100, "rounds between two metric records", check=at_least(1)),
    Option(
        "threads",
        int,
        0,
        "torch CPU threads per process (0: OMP_NUM_THREADS if set, else 1; "
        "gossip.runner.launch_env.torch_threads); 1 is fastest when processes share the cores",
        check=non_negative,
    ),
    Option("device", str, "auto", "where node blocks live", choices=("auto", "cpu", "cuda")),
    Option("dtype", str, "float32", "precision of parameters", choices=("float32", "float64")),
    Option(
        "checkpoint_every", int, None, "rounds between checkpoints (default: eval_every, a "
        "checkpoint at every evaluation; 0: only at the end)",
        check=non_negative,
    ),
    Option("out", str, "runs", "folder that holds run folders"),
    Option("name", str, None, "run folder name (default <algorithm>-<topology>-<timestamp>, "
           "with -2, -3 ... when that folder exists)",
           check=_run_name),
]

#: ``[algorithm]`` keys of the run loop itself (the rest are the algorithm's ``Config``).
LR_OPTIONS: list[Option] = [
    Option("name", str, "dsgd", "algorithm (gossip.algorithms)"),
    Option("lr", float, 0.1, "step size eta", check=positive),
    Option(
        "lr_schedule", str, "constant", "eta(t): constant, cosine or step",
        choices=("constant", "cosine", "step"),
    ),
    Option("lr_decay_rounds", int, 100, "step: rounds between two decays", check=at_least(1)),
    Option("lr_decay_factor", float, 0.1, "step: factor per decay", check=positive),
    Option("warmup_rounds", int, 0, "linear warm-up rounds first", check=non_negative),
    Option("lr_min", float, 0.0, "cosine: final step size", check=non_negative),
]

SECTIONS = ("topology", "algorithm", "problem", "compression", "data", "model", "faults", "time",
            "attack", "privacy")
#: Sections whose keys are folded into ``[problem]`` (their ``name`` becomes this key).
PASS_THROUGH = {"data": "dataset", "model": "model"}

#: The embedded default run: 16 nodes on a ring, D-SGD, MNIST classification.
DEFAULTS: dict[str, Any] = {
    "topology": {"name": "ring", "weights": "metropolis", "schedule": "static"},
    "algorithm": {"name": "dsgd"},
    "problem": {"name": "classification"},
    "compression": {"name": "none"},
    "data": {},
    "model": {},
    "faults": {},
    "time": {},
    "attack": {"name": "none"},
    "privacy": {},
}


@dataclass
class Config(Mapping):
    """A fully resolved configuration (a read-only mapping of keys and sections)."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __iter__(self):
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy as plain dicts (``None`` values left out, as TOML has no null)."""
        return _drop_none(copy.deepcopy(self.values))

    def to_toml(self) -> str:
        """The resolved configuration as TOML text (loads back to the same ``Config``)."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def replace(self, **top: Any) -> Config:
        """A copy with top-level keys replaced (``name=``, ``out=``), validated again."""
        raw = self.to_dict()
        raw.update({k: v for k, v in top.items()})
        return validate(_drop_none(raw))


def _drop_none(d: dict) -> dict:
    return {
        k: (_drop_none(v) if isinstance(v, dict) else v)
        for k, v in d.items()
        if v is not None and v != {}
    }


# -- overrides -----------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"algorithm.lr=0.05"`` -> ``(["algorithm", "lr"], 0.05)``.

    The value is read as a TOML literal (``3``, ``0.5``, ``true``, ``[4, 4]``, ``"x"``); what
    does not parse as one is taken as a plain string (``topology.name=chain``).
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. algorithm.lr=0.05)")
    key, raw = text.split("=", 1)
    path = [p.strip() for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"override {text!r} has an empty key part")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if raw.lstrip("+-") in ("nan", "inf"):
        value = raw  # a name such as name=nan, not a number a run could use
    return path, value


def _apply(raw: dict, path: list[str], value: Any) -> None:
    if len(path) > 2:
        raise ConfigError(f"key {'.'.join(path)} is nested too deeply; use section.key")
    if len(path) == 2:
        section, key = path
        if section not in SECTIONS:
            raise ConfigError(
                f"unknown section {section!r} in {'.'.join(path)}; valid: {', '.join(SECTIONS)}"
            )
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"[{section}] must be a table")
        raw[section][key] = value
    else:
        raw[path[0]] = value


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a TOML file (or nothing: the embedded default), apply overrides, validate.

    Parameters
    ----------
    path : path or None
        A TOML file; ``None`` starts from :data:`DEFAULTS`.
    overrides : list of ``"key=value"``
        Dotted keys applied in order after the file (``topology.name=chain``).

    Raises
    ------
    ConfigError
        Unreadable file, unknown key or section, wrong type, impossible value.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_toml(Path(path))
    for text in overrides:
        _apply(raw, *parse_override(text))
    return validate(raw)


def _read_toml(p: Path) -> dict[str, Any]:
    """The table in the TOML file ``p``; a ConfigError saying what ``p`` is when it is not one."""
    where = f"config file {str(p)!r}"
    if p.is_dir():
        raise ConfigError(f"{where} is a directory, not a TOML file")
    if not p.exists():
        raise ConfigError(f"{where} does not exist")
    if not p.is_file():
        raise ConfigError(f"{where} is not a regular file (a device or pipe), not a TOML file")
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(f"{where} cannot be read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where} is not a TOML file: not UTF-8 text ({err.reason} at byte "
                          f"{err.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where} is not a TOML file: {err}") from None


# -- validation ----------------------------------------------------------------------------


def validate(raw: Mapping[str, Any]) -> Config:
    """Fill defaults, check every key against its declaration; returns a resolved Config.

    Names (algorithm, problem, topology, rule, schedule, compressor), types and declared
    ranges are checked here; nothing is built. What only building shows (a graph that does
    not exist for ``nodes`` or is disconnected, a mixing rule that does not apply, compressor
    keys that do not fit together) is reported, as a ConfigError, by the one build of the run
    (:meth:`gossip.runner.experiment.Experiment.build`).
    """
    raw = copy.deepcopy(dict(raw))
    sections = {}
    for s in SECTIONS:
        given = raw.pop(s, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{s}] must be a table of keys, got {given!r}")
        sections[s] = {**DEFAULTS[s], **given}
    _check_top_keys(raw)
    out: dict[str, Any] = dict(resolve("", raw, RUN_OPTIONS))
    out["topology"] = resolve_topology(sections["topology"], out)
    out["algorithm"] = _algorithm(sections["algorithm"])
    out["problem"], out["data"], out["model"] = _problem(sections)
    out["compression"] = _named("compression", sections["compression"], _reg_compressor_options)
    out["faults"] = resolve("faults", sections["faults"], _fault_options())
    out["time"] = resolve("time", sections["time"], _time_options())
    out["attack"] = _named("attack", sections["attack"], _reg_attack_options)
    out["privacy"] = resolve("privacy", sections["privacy"], _privacy_options())
    _check_combinations(out)
    return Config(out)


def _check_combinations(out: dict) -> None:
    """Keys that are valid alone but would be silently ignored or contradict each other."""
    alg, topo = out["algorithm"], out["topology"]
    if alg["lr_schedule"] == "cosine" and alg["lr_min"] > alg["lr"]:
        raise ConfigError(f"algorithm.lr_min={alg['lr_min']!r} must be <= algorithm.lr="
                          f"{alg['lr']!r} for the cosine schedule (it decays from lr to lr_min)")
    from gossip.algorithms import ALGORITHMS

    entry = ALGORITHMS[alg["name"]]
    comp = out["compression"]["name"]
    if comp != "none" and not entry.USES_COMPRESSION:
        users = sorted(n for n in ALGORITHMS.names() if ALGORITHMS[n].USES_COMPRESSION)
        raise ConfigError(f"compression.name={comp!r} has no effect with algorithm.name="
                          f"{alg['name']!r}; the algorithms that compress: {', '.join(users)}")
    if topo["schedule"] != "static" and not entry.FOLLOWS_SCHEDULE:
        users = sorted(n for n in ALGORITHMS.names() if ALGORITHMS[n].FOLLOWS_SCHEDULE)
        raise ConfigError(f"topology.schedule={topo['schedule']!r} has no effect with "
                          f"algorithm.name={alg['name']!r}, which does not mix with W(t); use "
                          f"schedule 'static' or one of: {', '.join(users)}")
    from gossip.network.faults import check_faults

    check_faults(out)
    from gossip.privacy.dp_sgd import check_privacy

    check_privacy(out)


def _check_top_keys(raw: dict) -> None:
    known = {o.name for o in RUN_OPTIONS}
    for key in raw:
        if key not in known:
            valid = ", ".join([*sorted(known), *(f"[{s}]" for s in SECTIONS)])
            raise ConfigError(f"unknown key {key!r}; valid top-level keys: {valid}")


def _named(section: str, given: dict, options_of) -> dict:
    name = given.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{section}.name must be a string, got {name!r}")
    options = options_of(name)
    rest = {k: v for k, v in given.items() if k != "name"}
    return {"name": name, **resolve(section, rest, options)}


def _problem(sections: dict) -> tuple[dict, dict, dict]:
    """``[problem]`` resolved, with the keys of ``[data]`` and ``[model]`` folded into it.

    ``[data] name`` becomes ``problem.dataset`` and ``[model] name`` ``problem.model``; every
    other key keeps its name (``[data] partition`` is ``problem.partition``). A key the
    problem does not declare, or one given twice, is an error naming it.
    """
    name = sections["problem"].get("name")
    declared = {o.name for o in _reg_problem_options(name)} if isinstance(name, str) else set()
    given = dict(sections["problem"])
    for section in PASS_THROUGH:
        for key, value in sections[section].items():
            target = PASS_THROUGH[section] if key == "name" else key
            if target not in declared:
                raise ConfigError(
                    f"unknown key {section}.{key} for problem {name!r}; "
                    f"its keys: {', '.join(sorted(declared)) or '(none)'}"
                )
            if target in given:
                raise ConfigError(f"{section}.{key} and problem.{target} are the same key; "
                                  "give it once")
            given[target] = value
    return _named("problem", given, _reg_problem_options), {}, {}


def _algorithm(given: dict) -> dict:
    name = given.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"algorithm.name must be a string, got {name!r}")
    own = _reg_algorithm_options(name)
    own_names = {o.name for o in own}
    run_level = [o for o in LR_OPTIONS if o.name not in own_names]
    return resolve("algorithm", given, [*run_level, *own])


# -- help ------------------------------------------------------------------------------------


def _line(key: str, o: Option) -> str:
    default = "(required)" if o.default is Option.REQUIRED else repr(o.default)
    choices = f" one of {list(o.choices)}" if o.choices else ""
    return f"  {key:<34} {type_name(o.type):<6} default {default:<14} {o.help}{choices}"


def describe_keys() -> str:
    """Every configuration key with its type, default and help (``gossip train --help``)."""
    lines = ["configuration keys (TOML file or --set key=value):", ""]
    lines += [_line(o.name, o) for o in RUN_OPTIONS]
    lines += ["", "[topology]"] + [_line(f"topology.{o.name}", o) for o in TOPOLOGY_OPTIONS]
    lines += ["", "[algorithm]"] + [_line(f"algorithm.{o.name}", o) for o in LR_OPTIONS]
    for name in _reg_algorithm_names():
        opts = _reg_algorithm_options(name)
        lines += [f"  algorithm.name = {name!r}:"]
        lines += [_line(f"  algorithm.{o.name}", o) for o in opts] or ["    (no options)"]
    lines += ["", "[problem]"]
    for name in _reg_problem_names():
        lines += [f"  problem.name = {name!r}:"]
        opts = _reg_problem_options(name)
        lines += [_line(f"  problem.{o.name}", o) for o in opts] or ["    (no options)"]
    names = _reg_compressor_names()
    lines += ["", "[compression]", f"  compression.name: one of {names} (default 'none')"]
    lines += [_line(f"compression.{o.name}", o) for o in _reg_compressor_options("none")]
    lines += ["", "[faults]"] + [_line(f"faults.{o.name}", o) for o in _fault_options()]
    lines += ["", "[time]"] + [_line(f"time.{o.name}", o) for o in _time_options()]
    lines += ["", "[attack] (gossip.robust.attacks)"]
    for name in _reg_attack_names():
        lines += [f"  attack.name = {name!r}:"]
        opts = _reg_attack_options(name)
        lines += [_line(f"  attack.{o.name}", o) for o in opts] or ["    (no options)"]
    lines += ["", "[privacy] (gossip.privacy)"]
    lines += [_line(f"privacy.{o.name}", o) for o in _privacy_options()]
    lines += ["", "[data], [model]: their keys are [problem] keys ([data] name = problem.dataset,",
              "  [model] name = problem.model), e.g. --set data.partition=iid"]
    return "\n".join(lines)


# -- registries (algorithms, problems, compressors) ------------------------------------------


def _reg_algorithm_names() -> list[str]:
    from gossip.algorithms import ALGORITHMS

    return ALGORITHMS.names()


def _reg_algorithm_options(name: str) -> list[Option]:
    from gossip.algorithms import ALGORITHMS

    return ALGORITHMS.options(name)


def _reg_problem_names() -> list[str]:
    from gossip.problems.registry import PROBLEMS

    return PROBLEMS.names()


def _reg_problem_options(name: str) -> list[Option]:
    from gossip.problems.registry import PROBLEMS

    return PROBLEMS.options(name)


def _fault_options() -> list[Option]:
    from gossip.network.faults import FAULT_OPTIONS

    return FAULT_OPTIONS


def _time_options() -> list[Option]:
    from gossip.network.sim_time import TIME_OPTIONS

    return TIME_OPTIONS


def _privacy_options() -> list[Option]:
    from gossip.privacy.dp_sgd import PRIVACY_OPTIONS

    return PRIVACY_OPTIONS


def _reg_compressor_names() -> list[str]:
    from gossip.compression import COMPRESSORS

    return COMPRESSORS.names()


def _reg_compressor_options(name: str) -> list[Option]:
    from gossip.compression import COMPRESSORS, section_options

    if name not in COMPRESSORS:
        raise unknown_name("compression", name, COMPRESSORS.names())
    return [o for o in section_options() if o.name != "name"]


def _reg_attack_names() -> list[str]:
    from gossip.robust.attacks import ATTACKS

    return ATTACKS.names()


def _reg_attack_options(name: str) -> list[Option]:
    from gossip.robust.attacks import ATTACKS

    return ATTACKS.options(name)
