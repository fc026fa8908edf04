"""The MLP family under study: ``Linear -> [norm] -> activation`` per hidden layer, linear head.

The norm is BatchNorm1d (``bn=True`` or ``norm="batchnorm"``), LayerNorm (``norm="layernorm"``) or
none. It sits before the activation, as in Ioffe & Szegedy (2015), or after it with
``placement="after"`` (``Linear -> activation -> norm``). Every variant is the identical network plus
or minus the norm layers, and all draw their weights in the same order from the same generator (norm
layers draw nothing), so the arms of a paired comparison start from the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

from .arms import NORMS, PLACEMENTS
from .config import ACTIVATIONS, INITS  # the config validates against the same names

_ACT_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}
# torch has no GELU gain; GELU behaves like ReLU for the variance argument behind He init.
_GAIN_NAME = {"relu": "relu", "tanh": "tanh", "gelu": "relu", "sigmoid": "sigmoid"}


def _check(activation: str, init: str, layers: int, width: int) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if layers < 1 or width < 1:
        raise ValueError(f"layers and width must be >= 1, got layers={layers}, width={width}")


def resolve_norm(bn: bool | None, norm: str | None, placement: str = "before") -> tuple[str, str]:
    """(norm, placement) from the legacy ``bn`` flag and/or the ``norm`` name; they must agree."""
    if norm is None:
        norm = "batchnorm" if bn else "none"
    elif norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    elif bn is not None and bool(bn) != (norm == "batchnorm"):
        raise ValueError(f"bn={bn} contradicts norm={norm!r}; pass only norm")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    return norm, placement


def init_linear_(layer: nn.Linear, init: str, gain_name: str, generator: torch.Generator | None) -> None:
    """Initialise one Linear in place; ``gain_name`` is the nonlinearity that follows it ("linear" for the head)."""
    w = layer.weight
    with torch.no_grad():
        if init == "kaiming":
            nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity=gain_name, generator=generator)
        elif init == "xavier":
            nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain(gain_name), generator=generator)
        elif init == "normal":
            nn.init.normal_(w, 0.0, 1.0, generator=generator)
        elif init == "uniform":
            nn.init.uniform_(w, -1.0, 1.0, generator=generator)
        else:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if layer.bias is not None:
            layer.bias.zero_()


def _linear(fan_in: int, fan_out: int) -> nn.Linear:
    """An nn.Linear whose weights are left for init_linear_ to draw. Its default init would draw from
    (and advance) the global RNG only to be thrown away. nn.utils.skip_init avoids that through the
    meta device, but its first call imports sympy (~0.3 s, in every worker process) and each call
    costs ~0.17 ms; a meta layer given fresh empty parameters costs ~0.07 ms and draws nothing."""
    lin = nn.Linear(fan_in, fan_out, device="meta")
    lin.weight = nn.Parameter(torch.empty(fan_out, fan_in))
    lin.bias = nn.Parameter(torch.empty(fan_out))
    return lin


def build_mlp(
    n_in: int,
    n_out: int,
    *,
    layers: int,
    width: int,
    activation: str,
    init: str,
    bn: bool | None = None,
    norm: str | None = None,
    placement: str = "before",
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """Build the MLP. Weights come from ``generator`` (the global RNG when None) in layer order.

    ``bn=True`` is ``norm="batchnorm"``, ``bn=False`` (or nothing) ``norm="none"``. The head always
    uses gain 1 ("linear") for kaiming/xavier: no nonlinearity follows it.
    """
    _check(activation, init, layers, width)
    norm, placement = resolve_norm(bn, norm, placement)
    norm_cls = {"batchnorm": nn.BatchNorm1d, "layernorm": nn.LayerNorm}.get(norm)
    mods: list[nn.Module] = []
    fan_in = n_in
    for _ in range(layers):
        lin = _linear(fan_in, width)
        init_linear_(lin, init, _GAIN_NAME[activation], generator)
        mods.append(lin)
        if norm_cls is not None and placement == "before":
            mods.append(norm_cls(width))
        mods.append(_ACT_MODULES[activation]())
        if norm_cls is not None and placement == "after":
            mods.append(norm_cls(width))
        fan_in = width
    head = _linear(fan_in, n_out)
    init_linear_(head, init, "linear", generator)
    mods.append(head)
    return nn.Sequential(*mods)


def layer_dims(n_in: int, n_out: int, layers: int, width: int) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of every Linear, head last."""
    dims = [n_in] + [width] * layers + [n_out]
    return list(zip(dims[:-1], dims[1:]))


def forward_flops(n_in: int, n_out: int, layers: int, width: int) -> int:
    """Matmul FLOPs of one forward pass per sample (2 per multiply-add); norm/activation ignored."""
    return sum(2 * a * b for a, b in layer_dims(n_in, n_out, layers, width))


def count_flops(n_in: int, n_out: int, *, layers: int, width: int, n_train: int, n_eval: int, epochs: int) -> int:
    """Matmul FLOPs of a whole training run: forward+backward (about 3x forward) on every training
    sample each epoch, plus one forward over ``n_eval`` evaluation rows each epoch."""
    f = forward_flops(n_in, n_out, layers, width)
    return epochs * (3 * f * n_train + f * n_eval)
