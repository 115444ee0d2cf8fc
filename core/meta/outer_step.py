"""The outer (meta) step: how the meta-parameters move with a meta-gradient estimate ``g`` (``meta.outer_step``).

``shared/reference.md``, "The bilevel view", "Outer steps": the MAML objective is not globally smooth (its smoothness
constant grows with the meta-gradient's norm, Chayti and Jaggi), which argues for steps whose length does not grow
with ``||g||``. With ``eta`` the rate of a parameter's group:

- ``adam``:       ``torch.optim.Adam`` (the default, and the only step before this choice existed). Options ``betas``
                  (``[0.9, 0.999]``) and ``eps`` (``1e-8``).
- ``sgd``:        ``torch.optim.SGD``: ``x <- x - eta g``; option ``momentum`` (``0``; torch's heavy ball
                  ``b <- momentum b + g; x <- x - eta b``).
- ``clipped``:    ``g <- g min(1, c / (||g|| + 1e-6))`` (``torch.nn.utils.clip_grad_norm_``), then the ``base`` step
                  (``sgd``, the default, or ``adam``, with the base's own options beside ``max_norm`` = ``c``, which
                  has no default). The ``1e-6`` is torch's: a clipped gradient's norm falls short of ``c`` by the
                  relative ``1e-6 / ||g||``, and a gradient with ``||g|| <= c`` is left exactly as it is.
- ``normalized``: ``x <- x - eta g / ||g||`` (:class:`NormalizedGD`).
- ``sngdm``:      ``m <- beta m + (1 - beta) g;  x <- x - eta m / ||m||``, ``m`` starting at 0 (:class:`SNGDM`, the
                  paper's stochastic normalized gradient descent with momentum); option ``momentum`` = ``beta``
                  (``0.9``).

The norm. ``||.||`` is the Euclidean norm of all the meta-parameters together, over every param group
(``torch.nn.utils.get_total_norm``, as clipping takes it): one outer step of the paper moves the whole outer variable
``x``. Training has two groups, the backbone at ``meta.outer_lr`` and the rule's meta-parameters at
``meta.rule_outer_lr``; each group then moves by its own rate along its part of the one unit direction, so the step
is ``(eta_b d_b, eta_r d_r)`` with ``||d_b||^2 + ||d_r||^2 = 1``: its length is exactly ``eta`` when the rates agree
(or there is one group), and between the smaller and the larger rate otherwise. A zero (or non-finite) norm leaves
``x`` where it is.

A config names a step and its options (``meta.outer_step``, ``meta.outer_step_options``), as it names an estimator.
``meta.grad_clip = c > 0`` is the older spelling of ``clipped`` around an ``adam`` (or ``sgd``) step: it is read as
``clipped`` with ``max_norm = c`` and that base, so configs and runs written with it train as they did.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

__all__ = [
    "OUTER_STEPS",
    "SNGDM",
    "NormalizedGD",
    "OuterStep",
    "OuterStepChoice",
    "OuterStepSpec",
    "choose_outer_step",
]


# ----- the optimizers torch does not have --------------------------------------------------------------------------
class NormalizedGD(torch.optim.Optimizer):
    """``x <- x - lr g / ||g||``, the norm over every parameter of every group together (the module's docstring).

    A group's ``lr`` is the length of its share of the step: with one group, or equal rates, the step has length
    exactly ``lr`` (up to rounding). A zero or non-finite norm: no move.
    """

    def __init__(self, params: Iterable[Any], lr: float, **defaults: Any) -> None:
        if not lr >= 0:
            raise ValueError(f"invalid learning rate: {lr}")
        super().__init__(params, {"lr": lr, **defaults})

    def _direction(self, parameter: torch.Tensor, group: Mapping[str, Any]) -> torch.Tensor:
        """The vector normalised, for one parameter: its gradient here, its momentum in :class:`SNGDM`."""
        assert parameter.grad is not None
        return parameter.grad

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        moves = [(group, [(p, self._direction(p, group)) for p in group["params"] if p.grad is not None])
                 for group in self.param_groups]
        vectors = [d for _, pairs in moves for _, d in pairs]
        if not vectors:
            return loss
        norm = torch.nn.utils.get_total_norm(vectors)
        if not (bool(norm > 0) and bool(torch.isfinite(norm))):
            return loss
        for group, pairs in moves:
            for parameter, direction in pairs:
                # x - eta (d / ||d||): the unit direction first, as the formula reads
                parameter.sub_(torch.div(direction, norm.to(direction.device)).mul_(group["lr"]))
        return loss


class SNGDM(NormalizedGD):
    """``m <- momentum m + (1 - momentum) g;  x <- x - lr m / ||m||`` (Chayti and Jaggi's SNGDM), ``m`` from 0.

    ``m`` is kept per parameter (``state[p]["momentum_buffer"]``, saved and restored with the optimizer's state);
    ``||m||`` is over every parameter of every group together, as in :class:`NormalizedGD`.
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"invalid momentum: {momentum}")
        super().__init__(params, lr, momentum=momentum)

    def _direction(self, parameter: torch.Tensor, group: Mapping[str, Any]) -> torch.Tensor:
        assert parameter.grad is not None
        state = self.state[parameter]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(parameter)
        beta = group["momentum"]
        # beta m + (1 - beta) g with the two products rounded apart, as the formula reads
        return state["momentum_buffer"].mul_(beta).add_(parameter.grad * (1 - beta))


# ----- options ---------------------------------------------------------------------------------------------------
def _number(step: str, name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False,
            high_open: bool = False) -> float:
    """``value`` as a float in the stated range, else a ValueError that names the step, the option and the range."""
    below = f"above {low:g}" if low_open else f"from {low:g}"
    above = "" if high == math.inf else (f" to below {high:g}" if high_open else f" to {high:g}")
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"outer step {step!r}: {name} must be a number {below}{above}, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class AdamOptions:
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        betas = self.betas
        if not (isinstance(betas, list | tuple) and len(betas) == 2):
            raise ValueError(f"outer step 'adam': betas must be two numbers [beta1, beta2], not {betas!r}")
        object.__setattr__(self, "betas", tuple(_number("adam", "betas", b, low=0, high=1, high_open=True)
                                                for b in betas))
        object.__setattr__(self, "eps", _number("adam", "eps", self.eps, low=0, low_open=True))


@dataclass(frozen=True)
class SGDOptions:
    momentum: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "momentum", _number("sgd", "momentum", self.momentum, low=0, high=1, high_open=True))


@dataclass(frozen=True)
class NoOptions:
    pass


@dataclass(frozen=True)
class SNGDMOptions:
    momentum: float = 0.9  # the paper's beta

    def __post_init__(self) -> None:
        object.__setattr__(self, "momentum", _number("sngdm", "momentum", self.momentum, low=0, high=1, high_open=True))


_BASES = ("sgd", "adam")  # what ``clipped`` may clip in front of


@dataclass(frozen=True)
class ClippedOptions:
    """``max_norm`` (no default), ``base`` and the base's own options, given beside them in one flat table."""

    max_norm: float | None = None
    base: str = "sgd"
    base_options: Any = None  # the base's options dataclass; None: its defaults

    def __post_init__(self) -> None:
        if self.max_norm is None:
            raise ValueError("outer step 'clipped' needs max_norm, the clipping threshold (a positive number)")
        object.__setattr__(self, "max_norm", _number("clipped", "max_norm", self.max_norm, low=0, low_open=True))
        if self.base not in _BASES:
            raise ValueError(f"outer step 'clipped': base must be one of {', '.join(_BASES)}, not {self.base!r}")
        base_cls = OUTER_STEPS[self.base].options
        if self.base_options is None:
            object.__setattr__(self, "base_options", base_cls())
        elif not isinstance(self.base_options, base_cls):
            raise TypeError(f"base {self.base!r} takes {base_cls.__name__}, not {type(self.base_options).__name__}")


# ----- the registry ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OuterStepSpec:
    name: str
    summary: str
    options: type  # a dataclass with a default for every option but clipped's max_norm
    shown: tuple[str, ...] = ()  # options a label always names (the others only where they differ from defaults)


OUTER_STEPS: Mapping[str, OuterStepSpec] = MappingProxyType({spec.name: spec for spec in (
    OuterStepSpec("adam", "torch.optim.Adam", AdamOptions),
    OuterStepSpec("sgd", "x <- x - eta g (torch.optim.SGD)", SGDOptions),
    OuterStepSpec("clipped", "g <- g min(1, c / ||g||), then the base step", ClippedOptions, ("max_norm",)),
    OuterStepSpec("normalized", "x <- x - eta g / ||g||", NoOptions),
    OuterStepSpec("sngdm", "m <- beta m + (1 - beta) g; x <- x - eta m / ||m||", SNGDMOptions, ("momentum",)),
)})


def _spec(name: Any) -> OuterStepSpec:
    if not isinstance(name, str) or name not in OUTER_STEPS:
        raise ValueError(f"unknown outer step {name!r}; choose one of {', '.join(sorted(OUTER_STEPS))}")
    return OUTER_STEPS[name]


def _fill(name: str, cls: type, values: Mapping[str, Any], where: str = "") -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown option(s) for outer step {name!r}{where}: {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known)) or 'none'})")
    return cls(**values)


def _parse_options(name: str, values: Mapping[str, Any] | None) -> Any:
    spec = _spec(name)
    values = dict(values or {})
    if spec.options is not ClippedOptions:
        return _fill(name, spec.options, values)
    own = {"max_norm", "base"}
    base = values.get("base", "sgd")
    if base not in _BASES:
        raise ValueError(f"outer step 'clipped': base must be one of {', '.join(_BASES)}, not {base!r}")
    base_cls = OUTER_STEPS[base].options
    known = own | {f.name for f in dataclasses.fields(base_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown option(s) for outer step 'clipped' with base {base!r}: {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known))})")
    base_options = _fill(base, base_cls, {k: v for k, v in values.items() if k not in own})
    return ClippedOptions(values.get("max_norm"), base, base_options)


@dataclass(frozen=True)
class OuterStepChoice:
    """An outer step by name with its options dataclass: ``OuterStepChoice.parse("sngdm", {"momentum": 0.9})``."""

    name: str = "adam"
    options: Any = None  # the step's options dataclass; None: its defaults (clipped has none: it needs max_norm)

    def __post_init__(self) -> None:
        spec = _spec(self.name)
        if self.options is None:
            object.__setattr__(self, "options", spec.options())
        elif not isinstance(self.options, spec.options):
            raise TypeError(f"outer step {self.name!r} takes {spec.options.__name__}, not {type(self.options).__name__}")

    @classmethod
    def parse(cls, name: str, values: Mapping[str, Any] | None = None) -> OuterStepChoice:
        """The choice from a config's name and options table; ValueError for an unknown name, key or a bad value."""
        return cls(name, _parse_options(name, values))

    def settings(self) -> dict[str, Any]:
        """Every option with its value, defaults included (JSON-ready)."""
        if isinstance(self.options, ClippedOptions):
            return {"max_norm": self.options.max_norm, "base": self.options.base,
                    **OuterStepChoice(self.options.base, self.options.base_options).settings()}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.options).items()}

    @property
    def label(self) -> str:
        """``sngdm (momentum=0.9)``: the name, the options that define the step (SNGDM's momentum, clipped's
        ``max_norm``) and any other that differs from its default."""
        settings = self.settings()
        if self.name == "clipped":
            defaults = {"base": "sgd", **OuterStepChoice(settings["base"]).settings()}
        else:
            defaults = OuterStepChoice(self.name).settings()
        shown = OUTER_STEPS[self.name].shown
        settings = {k: v for k, v in settings.items() if k in shown or v != defaults.get(k)}
        text = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())
        return f"{self.name} ({text})" if text else self.name

    def build(self, params: Iterable[Any], lr: float) -> OuterStep:
        """The step over ``params`` (tensors or param-group dicts, as torch optimizers take them), ``lr`` the rate of
        groups that give none."""
        name, options, max_norm = self.name, self.options, None
        if isinstance(options, ClippedOptions):
            name, options, max_norm = options.base, options.base_options, options.max_norm
        if name == "adam":
            optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, betas=options.betas, eps=options.eps)
        elif name == "sgd":
            optimizer = torch.optim.SGD(params, lr=lr, momentum=options.momentum)
        elif name == "normalized":
            optimizer = NormalizedGD(params, lr=lr)
        else:
            optimizer = SNGDM(params, lr=lr, momentum=options.momentum)
        return OuterStep(optimizer, max_norm)


def choose_outer_step(name: str = "adam", options: Mapping[str, Any] | None = None,
                      grad_clip: float = 0.0) -> OuterStepChoice:
    """The outer step a config's ``meta.outer_step``, ``meta.outer_step_options`` and ``meta.grad_clip`` mean.

    ``grad_clip > 0`` (the older spelling, see the module's docstring) wraps an ``adam`` or ``sgd`` step in
    ``clipped``; with any other step it is refused, so that one threshold is given once.
    """
    choice = OuterStepChoice.parse(name, options)
    if not grad_clip > 0:
        return choice
    if name not in _BASES:
        raise ValueError(
            f"meta.grad_clip clips before an adam or sgd step; with outer step {name!r} set it to 0"
            + (" and give the threshold as outer_step_options.max_norm" if name == "clipped" else "")
        )
    return OuterStepChoice("clipped", ClippedOptions(grad_clip, name, choice.options))


# ----- the step --------------------------------------------------------------------------------------------------
class OuterStep:
    """A torch optimizer and an optional clipping threshold: :meth:`step` clips the gradients of every parameter of
    every group together (``torch.nn.utils.clip_grad_norm_``), then steps. ``optimizer`` is what is saved and
    restored (its state holds Adam's moments, SGD's and SNGDM's momentum buffers)."""

    def __init__(self, optimizer: torch.optim.Optimizer, max_norm: float | None = None) -> None:
        self.optimizer = optimizer
        self.max_norm = max_norm

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def parameters(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def step(self) -> dict[str, float]:
        """One outer step with the gradients in ``.grad``; returns diagnostics (``grad_norm`` before clipping)."""
        diagnostics = {}
        if self.max_norm is not None:
            diagnostics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.parameters(), self.max_norm))
        self.optimizer.step()
        return diagnostics

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)
