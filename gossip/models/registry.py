"""Model registry: ``make_model(name, input_shape, classes, options)``.

Each model is an ``nn.Module`` class ``cls(input_shape, classes, **options)`` registered in
:data:`MODELS` with the frozen dataclass of its ``[model]`` keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from gossip.models.nets import MLP, LeNet, LogReg, ResNet20
from gossip.registry import NoOptions, Registry, option

__all__ = ["MODELS", "make_model", "model_names", "model_options"]

#: Every model by its ``[model] name`` (``problem.model``).
MODELS: Registry[type[nn.Module]] = Registry("model", "model")


def _hidden(v) -> str | None:
    return None if all(isinstance(h, int) and h > 0 for h in v) else "must be positive integers"


def _groups(v) -> str | None:
    if v <= 0:
        return "must be > 0"
    return None if 16 % v == 0 else "must divide 16"


@dataclass(frozen=True)
class MLPConfig:
    hidden: list[int] = option([128], "hidden layer widths of the mlp", check=_hidden)


@dataclass(frozen=True)
class ResNet20Config:
    groups: int = option(2, "GroupNorm groups of resnet20 (divides 16)", check=_groups)


MODELS.register("logreg", NoOptions)(LogReg)
MODELS.register("mlp", MLPConfig)(MLP)
MODELS.register("lenet", NoOptions)(LeNet)
MODELS.register("resnet20", ResNet20Config)(ResNet20)


def model_names() -> list[str]:
    """Names accepted by :func:`make_model`, sorted."""
    return MODELS.names()


def model_options(name: str) -> list:
    """The options (:class:`~gossip.options.Option`) model ``name`` declares."""
    return MODELS.options(name)


def make_model(
    name: str, input_shape: tuple[int, ...], classes: int, options: dict[str, Any] | None = None
) -> nn.Module:
    """A fresh model ``name`` for inputs ``input_shape`` (no batch axis) and ``classes`` outputs.

    Parameters are initialised from torch's global generator: seed it (``torch.manual_seed``)
    or wrap the call in ``torch.random.fork_rng`` for a reproducible start.

    Raises
    ------
    ConfigError
        Unknown name, unknown or bad option.
    """
    cls = MODELS[name]
    return cls(tuple(input_shape), classes, **asdict(MODELS.config(name, dict(options or {}))))
