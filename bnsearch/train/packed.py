"""Packed trials: many configurations trained together, one model dimension in every tensor.

Semantics (docs/design.md, Training): every member of a pack trains exactly as :func:`.solo.train`
would train it alone -- its own weights (drawn by its own generator at its true width), its own batch
order, learning rate, optimizer and state, activation, norm and norm statistics, its own divergence
check and scores -- only the arithmetic is shared: a layer of K members is one ``baddbmm`` over
(K, batch, in) x (K, in, out) weights (on a CPU one per CHUNK inputs), an activation or norm one call over the members that share it.

- Width is fused by zero-padding to the pack's widest member (rounded up to ``ALIGN``); padded weights,
  biases and norm affine parameters start at zero and their gradients are exactly zero, because the
  padded activations are masked to zero (sigmoid(0) = 0.5 would otherwise feed the next layer) and
  LayerNorm's statistics run over the true width only. A padded unit therefore has no effect at all.
- Depth, batch size and the data set cannot be fused (they change every step's shapes or inputs);
  :func:`plan_packs` groups members by them and :func:`train_packed` refuses a pack that mixes them.
- The loss is the *sum* of the members' mean batch losses (a mean over members would shrink every
  member's step by 1/K); with a hand-written backward that is simply each member's own gradient.
- No operation reduces across members, so a member that diverges (NaN, inf) cannot change another;
  it is scored as solo scores it, at the epoch it diverged, and its result is final from then on.

On a CPU a member's results are bit for bit those of the same member trained in a pack of one,
whatever else its pack holds (ALIGN, CHUNK and EDGE below say how; tests/test_packed.py checks it).
They are those of a solo run up to floating-point rounding (padded, batched GEMMs, the written-out
LayerNorm and the two-step Adam round differently from addmm and ATen's fused kernels);
tests/test_packed.py bounds that gap. On a CPU packing is about break-even at best
(benchmarks/bench_packed.py); it is for GPUs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Hashable, Sequence

import torch

from ..config import DEFAULT_METRIC
from ..data import Dataset
from ..model import _check as check_model
from ..model import build_mlp, resolve_norm
from .solo import (
    MOMENTUM, REGRESSION_FLOOR, TrainResult, _check_params, batch_bounds, check_metric, diverged_at,
    epoch_permutations, finite_loss, model_generator,
)

# Padded width is a multiple of this: 2 x 16 float32 lanes, the unroll of ATen's vectorised CPU loops
# on AVX-512, whose scalar tail can round tanh/sigmoid/gelu differently from the vector body. With
# every member's block of a hidden layer a multiple of it, no member falls in a tail wherever it sits
# or whichever members run the same activation, so changing one member leaves the others
# bit-identical. (The head's outputs go through row-wise kernels, log-softmax and its backward, whose
# rounding does not depend on where a row sits.)
ALIGN = 32
# MKL's sgemm rounds a sum differently when its contraction is longer, even by trailing zeros: it
# blocks contractions past ~192 (AVX-512), and its CNR-compatible branch (MKL_CBWR=COMPATIBLE, what
# hardware.reproducible_env sets) reorders 32 vs 64 already for 22 rows. A member padded to its pack's
# width would then depend on the pack. On a CPU every batched GEMM runs in contractions of exactly
# CHUNK (hidden widths are multiples of ALIGN = CHUNK; the inputs, padded to EDGE, are the same for
# every member), the padding's chunks adding exact zeros: a member computes the same bits whether its
# pack pads it to 32 or to 512 (1,560 shapes checked on both MKL branches; the packs' time changed by
# 1.01x). On CUDA, where one call per layer matters and bit-identity is not claimed, it is one call.
CHUNK = 32
# ATen's bmm takes a naive loop, not MKL, when rows x columns x contraction < 400 (a short last batch
# into a 3-class head), and a pack's padding can move a member across that line. The input and output
# widths are padded to EDGE (with the hidden widths' ALIGN, every product is >= 1 x 16 x 32 = 512).
EDGE = 16
BN_MOMENTUM = 0.1  # nn.BatchNorm1d's defaults, as build_mlp constructs it
NORM_EPS = 1e-5  # BatchNorm1d and LayerNorm alike
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults

_aten = torch.ops.aten
# Forward activations writing into a slice of the layer's output (runs of members share one call).
_ACT_OUT = {"relu": _aten.relu.out, "tanh": _aten.tanh.out, "sigmoid": _aten.sigmoid.out, "gelu": _aten.gelu.out}
# Backward kernels autograd uses (as in solo._ACT_BWD): relu/tanh/sigmoid need the output, gelu the input.
_ACT_BWD_OUT = {
    "relu": lambda g, x, y, out: _aten.threshold_backward.grad_input(g, y, 0.0, grad_input=out),
    "tanh": lambda g, x, y, out: _aten.tanh_backward.grad_input(g, y, grad_input=out),
    "sigmoid": lambda g, x, y, out: _aten.sigmoid_backward.grad_input(g, y, grad_input=out),
    "gelu": lambda g, x, y, out: _aten.gelu_backward.grad_input(g, x, grad_input=out),
}


@dataclass(frozen=True)
class Member:
    """One configuration of a pack: what :func:`.solo.train` takes for one run.

    ``group``: anything else that must be equal across a pack (e.g. the data set or an inputs arm);
    members of different groups are never packed together.
    """

    params: dict
    seed: int
    bn: bool | None = None
    norm: str | None = None
    placement: str = "before"
    group: Hashable = None


@dataclass(frozen=True)
class _Spec:
    width: int
    activation: str
    init: str
    norm: str
    placement: str
    optimizer: str
    lr: float
    seed: int


def _spec(m: Member) -> _Spec:
    _check_params(m.params)
    norm, placement = resolve_norm(m.bn, m.norm, m.placement)
    p = m.params
    check_model(p["activation"], p["init"], int(p["layers"]), int(p["width"]))
    return _Spec(int(p["width"]), p["activation"], p["init"], norm, placement, p["optimizer"], float(p["lr"]),
                 int(m.seed))


def _fuse_key(m: Member) -> tuple:
    return int(m.params["layers"]), int(m.params["batch_size"]), m.group


def _segment(s: _Spec) -> str:
    """How a member's hidden layer is computed: "pre" (no norm, or BN before the activation -- one
    BN computation with a per-member switch covers both arms of a pair), "post" (BN after), or
    LayerNorm before / after ("ln-pre", "ln-post")."""
    if s.norm == "layernorm":
        return "ln-pre" if s.placement == "before" else "ln-post"
    return "post" if s.norm == "batchnorm" and s.placement == "after" else "pre"


_SEGMENTS = ("pre", "post", "ln-pre", "ln-post")


def _run_key(m: Member) -> tuple:
    s = _spec(m)
    return _SEGMENTS.index(_segment(s)), s.activation, s.optimizer


def plan_packs(members: Sequence[Member], max_pack: int, *, width_ratio: float | None = None,
               max_elements: int | None = None) -> list[list[int]]:
    """Group members into packs of at most ``max_pack`` fusable ones; returns indices into ``members``.

    Members are fusable when depth, batch size and ``group`` agree. Within a group, members are
    sorted by width so a pack pads little; ``width_ratio`` (optional) caps the widest / narrowest width
    within one pack (a member pays for the padded width: on a CPU a 16-wide member padded to 512 costs
    what a 512-wide one does). ``max_elements`` (optional) caps members x batch size x padded width,
    the size of one activation tensor of the pack: on a CPU a pack pays only while its working set
    stays in cache (measured: 18 members x 256 rows x 64 units ran at half the solo speed). Each run
    of members is split into packs of near-equal size, each pack ordered so members sharing a norm,
    activation and optimizer sit side by side (one call each). Every index appears in exactly one
    pack; a pack of one is best left to :func:`.solo.train`.
    """
    if int(max_pack) < 1:
        raise ValueError(f"plan_packs: max_pack must be >= 1, got {max_pack}")
    if width_ratio is not None and not float(width_ratio) >= 1.0:
        raise ValueError(f"plan_packs: width_ratio must be >= 1 (or None for no limit), got {width_ratio}")
    if max_elements is not None and int(max_elements) < 1:
        raise ValueError(f"plan_packs: max_elements must be >= 1 (or None for no limit), got {max_elements}")
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(members):
        _spec(m)  # refuse bad params here, before any training
        groups.setdefault(_fuse_key(m), []).append(i)
    width = lambda i: int(members[i].params["width"])  # noqa: E731
    packs: list[list[int]] = []
    for idx in groups.values():
        idx = sorted(idx, key=lambda i: -width(i))
        segments, start = [], 0
        for j in range(1, len(idx) + 1):
            if j == len(idx) or (width_ratio is not None and width(idx[start]) > width_ratio * width(idx[j])):
                segments.append(idx[start:j])
                start = j
        batch = int(members[idx[0]].params["batch_size"])
        for seg in segments:
            while seg:
                # The widest member left sets the pack's padded width, hence how many fit.
                cap = int(max_pack)
                if max_elements is not None:
                    cap = max(1, min(cap, int(max_elements) // (batch * _round_up(width(seg[0]), ALIGN))))
                n_packs = -(-len(seg) // cap)
                size = -(-len(seg) // n_packs)
                packs.append(sorted(seg[:size], key=lambda i: _run_key(members[i])))
                seg = seg[size:]
    return packs


def _check_pack(members: Sequence[Member]) -> None:
    for name, pos in (("layers", 0), ("batch_size", 1), ("group", 2)):
        values = sorted({repr(_fuse_key(m)[pos]) for m in members})
        if len(values) > 1:
            what = "the data set / group" if name == "group" else name
            raise ValueError(f"train_packed: members differ in {name} ({', '.join(values)}); {what} cannot be "
                             "fused -- split the members with plan_packs(members, max_pack) and train each pack")


def _runs(keys: list) -> list[tuple[int, int, object]]:
    """(start, stop, key) of each stretch of consecutive equal keys."""
    runs, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            runs.append((start, i, keys[start]))
            start = i
    return runs


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _baddbmm(bias: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """bias + a @ b, batched, in contractions of at most ``chunk`` (None: one call; why: CHUNK)."""
    n = a.shape[-1]
    if chunk is None or n <= chunk:
        return torch.bmm(a, b) if bias is None else torch.baddbmm(bias, a, b)
    out = torch.bmm(a[..., :chunk], b[:, :chunk]) if bias is None else torch.baddbmm(bias, a[..., :chunk], b[:, :chunk])
    for s in range(chunk, n, chunk):
        out.baddbmm_(a[..., s:s + chunk], b[:, s:s + chunk])
    return out


class _Pack:
    """Parameters, optimizer state and norm statistics of K MLPs with a hand-written training step.

    Member k's parameters are row k of one (K, P) buffer, gradients row k of another that the backward
    writes in place, so each optimizer is a few calls over a contiguous stretch of rows. Weights are
    stored (in, out), the layout ``baddbmm(bias, h, W)`` takes.
    """

    def __init__(self, specs: list[_Spec], n_in: int, n_out: int, layers: int, regression: bool, device):
        self.specs = list(specs)
        self.n_in, self.n_out, self.L, self.regression, self.device = n_in, n_out, layers, regression, device
        self.wp = _round_up(max(s.width for s in specs), ALIGN)
        self.n_in_p, self.n_out_p = _round_up(n_in, EDGE), _round_up(n_out, EDGE)
        self.chunk = CHUNK if torch.device(device).type == "cpu" else None
        self.has_norm = any(s.norm != "none" for s in specs)
        K, wp = len(specs), self.wp
        # Offsets of each parameter within a member's row, in build_mlp's parameter order.
        self.layout = []
        off = 0
        for i in range(layers):
            fan_in = self.n_in_p if i == 0 else wp
            entry = {"W": (off, (fan_in, wp))}
            off += fan_in * wp
            names = ("b", "gamma", "beta") if self.has_norm else ("b",)
            for name in names:
                entry[name] = (off, (1, wp))
                off += wp
            self.layout.append(entry)
        no = self.n_out_p
        self.head_layout = {"W": (off, (wp, no)), "b": (off + wp * no, (1, no))}
        self.P = _round_up(off + wp * no + no, ALIGN)

        flat = torch.zeros(K, self.P)
        for k, s in enumerate(specs):
            model = build_mlp(n_in, n_out, layers=layers, width=s.width, activation=s.activation, init=s.init,
                              norm=s.norm, placement=s.placement, generator=model_generator(s.seed))
            self._write_member(flat[k], model, s)
        self.flat = flat.to(device)
        self.grad = torch.zeros_like(self.flat)
        self.rmean = [torch.zeros(K, 1, wp, device=device) for _ in range(layers)]
        self.rvar = [torch.ones(K, 1, wp, device=device) for _ in range(layers)]
        self.adam_m = torch.zeros_like(self.flat) if any(s.optimizer == "adam" for s in specs) else None
        self.adam_v = torch.zeros_like(self.flat) if self.adam_m is not None else None
        self.sgd_buf = torch.zeros_like(self.flat) if any(s.optimizer == "sgd" for s in specs) else None
        self.scratch = torch.empty_like(self.flat) if self.adam_m is not None else None
        self.adam_step = torch.zeros((), dtype=torch.float32, device=device)
        self.n_steps = 0
        self._index()

    # -- layout ---------------------------------------------------------------------------------------
    def _member_views(self, row: torch.Tensor):
        layers = [{name: row[o:o + r * c].view(r, c) for name, (o, (r, c)) in e.items()} for e in self.layout]
        head = {name: row[o:o + r * c].view(r, c) for name, (o, (r, c)) in self.head_layout.items()}
        return layers, head

    def _write_member(self, row: torch.Tensor, model: torch.nn.Sequential, s: _Spec) -> None:
        lins = [m for m in model if isinstance(m, torch.nn.Linear)]
        norms = [m for m in model if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.LayerNorm))]
        layers, head = self._member_views(row)
        with torch.no_grad():
            for i, lin in enumerate(lins[:-1]):
                w = lin.weight.t()  # (fan_in, width): the true fan-in, as the solo run draws it
                layers[i]["W"][: w.shape[0], : s.width].copy_(w)
                layers[i]["b"][0, : s.width].copy_(lin.bias)
                if norms:
                    layers[i]["gamma"][0, : s.width].copy_(norms[i].weight)
                    layers[i]["beta"][0, : s.width].copy_(norms[i].bias)
            head["W"][: s.width, : self.n_out].copy_(lins[-1].weight.t())
            head["b"][0, : self.n_out].copy_(lins[-1].bias)

    def _view(self, buf: torch.Tensor, off: int, shape: tuple[int, int]) -> torch.Tensor:
        r, c = shape
        return buf[:, off:off + r * c].view(buf.shape[0], r, c)

    def _index(self) -> None:
        """Build every view and per-member tensor from self.specs."""
        specs, dev = self.specs, self.device
        self.layers = []
        for e in self.layout:
            p = {name: self._view(self.flat, o, shape) for name, (o, shape) in e.items()}
            g = {name: self._view(self.grad, o, shape) for name, (o, shape) in e.items()}
            self.layers.append((p, g))
        self.head = ({n: self._view(self.flat, o, s) for n, (o, s) in self.head_layout.items()},
                     {n: self._view(self.grad, o, s) for n, (o, s) in self.head_layout.items()})
        widths = torch.tensor([s.width for s in specs], dtype=torch.float32)
        self.mask = (torch.arange(self.wp, dtype=torch.float32) < widths[:, None]).to(torch.float32)[:, None, :].to(dev)
        self.width_t = widths.view(-1, 1, 1).to(dev)
        self.lr = torch.tensor([s.lr for s in specs], dtype=torch.float32).view(-1, 1).to(dev)
        is_bn = torch.tensor([s.norm == "batchnorm" for s in specs]).view(-1, 1, 1).to(dev)
        # Segments: stretches of members computed alike; inside each, runs of one activation.
        self.segments = []
        for a, b, kind in _runs([_segment(s) for s in specs]):
            acts = [(ra + a, rb + a, act) for ra, rb, act in _runs([s.activation for s in specs[a:b]])]
            norm = kind != "pre" or any(s.norm == "batchnorm" for s in specs[a:b])
            all_bn = kind == "post" or all(s.norm == "batchnorm" for s in specs[a:b])
            self.segments.append((a, b, kind, acts, norm, is_bn[a:b], all_bn))
        self.opt_runs = _runs([s.optimizer for s in specs])
        self.needs_mid = any(seg[4] for seg in self.segments)

    def member_state(self, k: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Member k's parameters and gradients in build_mlp's parameter order and shapes (nn.Linear's
        (out, in) weights, true width), and its BN running statistics (mean, var per layer)."""
        s = self.specs[k]
        out = []
        for buf in (self.flat, self.grad):
            tensors = []
            layers, head = self._member_views(buf[k])
            for i, e in enumerate(layers):
                fan_in = self.n_in if i == 0 else s.width
                tensors.append(e["W"][:fan_in, : s.width].t())
                tensors.append(e["b"][0, : s.width])
                if s.norm != "none":
                    tensors += [e["gamma"][0, : s.width], e["beta"][0, : s.width]]
            tensors += [head["W"][: s.width, : self.n_out].t(), head["b"][0, : self.n_out]]
            out.append(tensors)
        stats = [t[k, 0, : s.width] for pair in zip(self.rmean, self.rvar) for t in pair] if s.norm == "batchnorm" else []
        return out[0], out[1], stats

    # -- norms ----------------------------------------------------------------------------------------
    def _bn_train(self, x, out, a: int, b: int, i: int, gamma, beta, is_bn, all_bn: bool):
        """Train-mode BatchNorm of members a:b into ``out``; the identity for members without a norm.

        ATen's kernel on a (batch, members x width) copy: every member's feature is a channel, so its
        statistics are its own, computed as the solo run's BatchNorm1d computes them (and 15 small
        operations written out cost 3x these few). Returns what the backward needs."""
        k, n, w = x.shape
        xt = x.transpose(0, 1).reshape(n, k * w)
        g = gamma.reshape(-1)
        y, smean, sinvstd = torch.native_batch_norm(xt, g, beta.reshape(-1), self.rmean[i][a:b].view(-1),
                                                    self.rvar[i][a:b].view(-1), True, BN_MOMENTUM, NORM_EPS)
        y = y.view(n, k, w).transpose(0, 1)
        if all_bn:
            out.copy_(y)
        else:
            torch.where(is_bn, y, x, out=out)
        return xt, g, smean, sinvstd

    def _bn_eval(self, x, out, a: int, b: int, i: int, gamma, beta, is_bn, all_bn: bool) -> None:
        """Eval-mode BatchNorm (running statistics), the same kernel and layout as :meth:`_bn_train`."""
        k, n, w = x.shape
        y = torch.batch_norm(x.transpose(0, 1).reshape(n, k * w), gamma.reshape(-1), beta.reshape(-1),
                             self.rmean[i][a:b].view(-1), self.rvar[i][a:b].view(-1), False, 0.0, NORM_EPS, False)
        y = y.view(n, k, w).transpose(0, 1)
        if all_bn:
            out.copy_(y)
        else:
            torch.where(is_bn, y, x, out=out)

    def _bn_backward(self, dy, saved, ggamma, gbeta, out, i: int, a: int, b: int, is_bn, all_bn: bool) -> None:
        """Gradient w.r.t. the norm's input into ``out`` (dy itself for members without a norm);
        gamma/beta gradients into the grad buffer (zero for members without a norm)."""
        xt, g, smean, sinvstd = saved
        k, n, w = dy.shape
        dyt = dy.transpose(0, 1).reshape(n, k * w)
        dx, dgamma, dbeta = _aten.native_batch_norm_backward.default(
            dyt, xt, g, self.rmean[i][a:b].view(-1), self.rvar[i][a:b].view(-1), smean, sinvstd, True, NORM_EPS,
            [True, True, True])
        dx = dx.view(n, k, w).transpose(0, 1)
        if all_bn:
            out.copy_(dx)
            ggamma.copy_(dgamma.view(k, 1, w))
            gbeta.copy_(dbeta.view(k, 1, w))
        else:
            torch.where(is_bn, dx, dy, out=out)
            torch.mul(dgamma.view(k, 1, w), is_bn, out=ggamma)
            torch.mul(dbeta.view(k, 1, w), is_bn, out=gbeta)

    def _ln_train(self, x, out, a: int, b: int, gamma, beta):
        """LayerNorm of members a:b over each member's true width (padded inputs are zero, so the sum
        over the padded width is the true sum); padded outputs are zero (gamma, beta are zero there)."""
        mask, w = self.mask[a:b], self.width_t[a:b]
        mean = x.sum(2, keepdim=True).div_(w)
        xc = (x - mean).mul_(mask)
        var = (xc * xc).sum(2, keepdim=True).div_(w)
        rstd = torch.rsqrt(var + NORM_EPS)
        xhat = xc.mul_(rstd)
        torch.addcmul(beta, xhat, gamma, out=out)
        return xhat, rstd

    def _ln_backward(self, dy, xhat, rstd, gamma, ggamma, gbeta, out, a: int, b: int) -> None:
        """dx = rstd * (dxh - (sum dxh + xhat * sum dxh.xhat) / w), sums over the true width, dxh = dy * gamma."""
        torch.sum(dy * xhat, 1, keepdim=True, out=ggamma)
        torch.sum(dy, 1, keepdim=True, out=gbeta)
        dxh = dy * gamma
        s1 = dxh.sum(2, keepdim=True)
        s2 = (dxh * xhat).sum(2, keepdim=True)
        t = torch.addcmul(s1, xhat, s2).div_(self.width_t[a:b])
        torch.sub(dxh, t, out=out).mul_(rstd).mul_(self.mask[a:b])

    # -- forward / backward -----------------------------------------------------------------------------
    def _acts(self, runs, a: int, src, dst) -> None:
        """Each run's activation from ``src`` into ``dst`` (slices of the segment starting at member a)."""
        for ra, rb, act in runs:
            d = dst[ra - a:rb - a]
            _ACT_OUT[act](src[ra - a:rb - a], out=d)
            if act == "sigmoid":
                d.mul_(self.mask[ra:rb])  # sigmoid(0) = 0.5: padded units must stay zero

    def _acts_backward(self, runs, a: int, dy, act_in, act_out, dst) -> None:
        for ra, rb, act in runs:
            r = slice(ra - a, rb - a)
            _ACT_BWD_OUT[act](dy[r], act_in[r], act_out[r], dst[r])

    def _hidden(self, h: torch.Tensor, train: bool):
        """All hidden layers; returns the last hidden output and (train) what the backward needs."""
        saved = []
        for i, (p, _g) in enumerate(self.layers):
            z = _baddbmm(p["b"], h, p["W"], self.chunk)
            out = torch.empty_like(z)
            mid = torch.empty_like(z) if self.needs_mid else None
            segs = []
            for a, b, kind, runs, norm, is_bn, all_bn in self.segments:
                zs, outs = z[a:b], out[a:b]
                mids = mid[a:b] if norm else None
                gamma, beta = (p["gamma"][a:b], p["beta"][a:b]) if norm else (None, None)
                nsave = None
                if not norm:
                    self._acts(runs, a, zs, outs)
                    act_io = (zs, outs)
                elif kind in ("pre", "ln-pre"):
                    if kind == "ln-pre":
                        nsave = self._ln_train(zs, mids, a, b, gamma, beta)
                    elif train:
                        nsave = self._bn_train(zs, mids, a, b, i, gamma, beta, is_bn, all_bn)
                    else:
                        self._bn_eval(zs, mids, a, b, i, gamma, beta, is_bn, all_bn)
                    self._acts(runs, a, mids, outs)
                    act_io = (mids, outs)
                else:
                    self._acts(runs, a, zs, mids)  # masked before the norm: LayerNorm's sums see zeros
                    if kind == "ln-post":
                        nsave = self._ln_train(mids, outs, a, b, gamma, beta)
                    elif train:
                        nsave = self._bn_train(mids, outs, a, b, i, gamma, beta, is_bn, all_bn)
                    else:
                        self._bn_eval(mids, outs, a, b, i, gamma, beta, is_bn, all_bn)
                    act_io = (zs, mids)
                segs.append((act_io, nsave))
            if train:
                saved.append((h, segs))
            h = out
        return h, saved

    def _norm_backward(self, kind, dy, nsave, p, g, out, i: int, a: int, b: int, is_bn, all_bn: bool) -> None:
        ggamma, gbeta = g["gamma"][a:b], g["beta"][a:b]
        if kind.startswith("ln"):
            self._ln_backward(dy, *nsave, p["gamma"][a:b], ggamma, gbeta, out, a, b)
        else:
            self._bn_backward(dy, nsave, ggamma, gbeta, out, i, a, b, is_bn, all_bn)

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """(K, n, n_out) eval-mode outputs (BN running statistics) of every member on the same rows."""
        h = self.pad_inputs(X).expand(len(self.specs), X.shape[0], self.n_in_p)
        h, _ = self._hidden(h, train=False)
        p, _ = self.head
        return _baddbmm(p["b"], h, p["W"], self.chunk)[..., : self.n_out]

    def pad_inputs(self, X: torch.Tensor) -> torch.Tensor:
        """X with zero columns up to n_in_p (the first layer's padded fan-in, see EDGE)."""
        return torch.nn.functional.pad(X, (0, self.n_in_p - self.n_in)) if self.n_in_p != self.n_in else X

    def step(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One optimizer step of every member on its batch x[k] (K, B, n_in); returns the (K,) losses.

        ``t`` as in solo._FastMLP.step, with a leading member dimension: -onehot/B rows
        (classification) or the targets (regression, the loss then being 2 x the MSE)."""
        h, saved = self._hidden(x, train=True)
        (p, g) = self.head
        out = _baddbmm(p["b"], h, p["W"], self.chunk)[..., : self.n_out]
        d_pad = torch.zeros(out.shape[0], out.shape[1], self.n_out_p, device=out.device)
        if self.regression:
            diff = out.reshape(out.shape[0], -1) - t
            d = torch.mul(diff, 2.0 / diff.shape[1])
            loss = (diff * d).sum(1)
            d = d.unsqueeze(2)
        else:
            # ATen's row-wise kernels, not the few passes written out over the whole tensor (5x faster
            # for a short last dimension): an elementwise exp rounds its tensor's tail with the scalar
            # exp, and which member's rows form the tail depends on the pack.
            ls = torch._log_softmax(out, 2, False)
            loss = (ls * t).sum((1, 2))
            d = torch._log_softmax_backward_data(t, ls, 2, torch.float32)
        d_pad[..., : self.n_out] = d
        d = d_pad
        torch.bmm(h.transpose(1, 2), d, out=g["W"])
        torch.sum(d, 1, keepdim=True, out=g["b"])
        dh = _baddbmm(None, d, p["W"].transpose(1, 2), self.chunk)
        for i in range(self.L - 1, -1, -1):
            (p, g) = self.layers[i]
            h_in, segs = saved[i]
            dz = torch.empty_like(dh)
            for (a, b, kind, runs, norm, is_bn, all_bn), ((act_in, act_out), nsave) in zip(self.segments, segs):
                dhs, dzs = dh[a:b], dz[a:b]
                if not norm:
                    self._acts_backward(runs, a, dhs, act_in, act_out, dzs)
                elif kind in ("pre", "ln-pre"):
                    dmid = torch.empty_like(dhs)
                    self._acts_backward(runs, a, dhs, act_in, act_out, dmid)
                    self._norm_backward(kind, dmid, nsave, p, g, dzs, i, a, b, is_bn, all_bn)
                else:
                    dmid = torch.empty_like(dhs)
                    self._norm_backward(kind, dhs, nsave, p, g, dmid, i, a, b, is_bn, all_bn)
                    self._acts_backward(runs, a, dmid, act_in, act_out, dzs)
            torch.bmm(h_in.transpose(1, 2), dz, out=g["W"])
            torch.sum(dz, 1, keepdim=True, out=g["b"])
            if i:
                dh = _baddbmm(None, dz, p["W"].transpose(1, 2), self.chunk)
        self._update()
        return loss

    def _update(self) -> None:
        """Each member's own optimizer at its own learning rate (torch.optim's Adam / SGD formulas)."""
        self.n_steps += 1
        t = self.n_steps
        if self.adam_m is not None:
            self.adam_step.add_(1.0)
        for a, b, opt in self.opt_runs:
            p, g, lr = self.flat[a:b], self.grad[a:b], self.lr[a:b]
            if opt == "adam":
                # torch's fused Adam at lr 1 on a zeroed buffer gives -m_hat / (sqrt(v_hat) + eps), the
                # step of every member at once; each member then takes it at its own rate (3 passes
                # instead of the 8 of the update written out with broadcast rates).
                u = self.scratch[a:b]
                u.zero_()
                torch._fused_adam_([u], [g], [self.adam_m[a:b]], [self.adam_v[a:b]], [], [self.adam_step], lr=1.0,
                                   beta1=ADAM_BETA1, beta2=ADAM_BETA2, weight_decay=0.0, eps=ADAM_EPS,
                                   amsgrad=False, maximize=False)
                p.addcmul_(u, lr)
            else:
                buf = self.sgd_buf[a:b]
                if t == 1:
                    buf.copy_(g)
                else:
                    buf.mul_(MOMENTUM).add_(g)
                p.addcmul_(buf, lr, value=-1.0)


def _scores(out: torch.Tensor, y: torch.Tensor, task: str, metric: str) -> torch.Tensor:
    """(K,) float64 scores of (K, n, n_out) outputs: :func:`.solo.score` for every member at once."""
    K = out.shape[0]
    if y.numel() == 0:
        return torch.zeros(K, dtype=torch.float64, device=out.device)
    finite = torch.isfinite(out).flatten(1).all(1)
    if task == "classification":
        counts = torch.bincount(y, minlength=out.shape[2])
        present = counts > 0
        hit = out.argmax(2) == y
        if metric == "balanced_accuracy":
            hits = torch.zeros(K, counts.numel(), dtype=torch.float64, device=out.device)
            hits.scatter_add_(1, y.expand(K, -1), hit.double())
            recall = hits[:, present] / counts[present].double()
            s = recall.mean(1)
            chance = 1.0 / present.sum().double()
        else:
            s = hit.sum(1).double() / y.numel()
            chance = counts.max().double() / y.numel()
        return torch.where(finite, s, chance)
    pred = out.reshape(K, -1).double()
    yd = y.double()
    sse = ((pred - yd) ** 2).sum(1)
    sst = ((yd - yd.mean()) ** 2).sum()
    r2 = torch.where(sst > 0, 1.0 - sse / sst, torch.where(sse == 0, 1.0, REGRESSION_FLOOR))
    r2 = torch.where(torch.isfinite(r2), r2, REGRESSION_FLOOR)
    return r2.clamp_min(REGRESSION_FLOOR)


class _Batches:
    """Every member's mini-batches of one epoch, each from that member's own permutation."""

    def __init__(self, data: Dataset, seeds: list[int], epochs: int, batch_size: int, regression: bool, device):
        n = data.X_train.shape[0]
        self.sizes = [e - s for s, e in batch_bounds(n, batch_size)]
        self.used = sum(self.sizes)
        self.perms = torch.stack([epoch_permutations(n, epochs, s) for s in seeds]).to(device)  # (K, epochs, n)
        self.X, self.regression = data.X_train, regression  # inputs padded by _build
        if regression:
            self.targets = data.y_train
        else:
            self.targets = torch.zeros(n, data.n_outputs, device=device)
            self.targets[torch.arange(n, device=device), data.y_train] = -1.0
            # Each row scaled by 1/B of its batch: the per-batch NLL becomes a dot product.
            self.scale = torch.cat([torch.full((b,), 1.0 / b, device=device) for b in self.sizes]).view(1, -1, 1)

    def epoch(self, epoch: int):
        perm = self.perms[:, epoch, : self.used]
        K = perm.shape[0]
        flat = perm.reshape(-1)
        xs = self.X.index_select(0, flat).view(K, self.used, -1).split(self.sizes, 1)
        if self.regression:
            ts = self.targets.index_select(0, flat).view(K, self.used).split(self.sizes, 1)
        else:
            ts = self.targets.index_select(0, flat).view(K, self.used, -1).mul_(self.scale).split(self.sizes, 1)
        return zip(xs, ts)


def _build(members: Sequence[Member], data: Dataset, epochs: int, device):
    """Validated pack and batch source; ``data`` already on ``device``."""
    specs = [_spec(m) for m in members]
    layers, batch_size, _ = _fuse_key(members[0])
    regression = data.task == "regression"
    pack = _Pack(specs, data.n_features, data.n_outputs, layers, regression, device)
    batches = _Batches(data, [s.seed for s in specs], epochs, batch_size, regression, device)
    batches.X = pack.pad_inputs(batches.X)
    return pack, batches


def train_packed(members: Sequence[Member], data: Dataset, *, epochs: int, device: str = "cpu",
                 metric: str = DEFAULT_METRIC) -> list[TrainResult]:
    """Train every member together; one :class:`TrainResult` per member, in the order given.

    Each result has the fields a solo :func:`.solo.train` run gives (scores, per-epoch curves,
    divergence); ``seconds`` is the member's share of the pack's wall time (each epoch's time split
    evenly over the members still training in it), so the seconds of a pack add up to its wall time.
    Raises ValueError, before any training, for bad params or members that cannot share a pack.
    """
    t0 = time.perf_counter()
    members = list(members)
    if not members:
        return []
    for m in members:
        _spec(m)
    _check_pack(members)
    check_metric(data.task, metric)
    K = len(members)
    regression = data.task == "regression"
    scale = 0.5 if regression else 1.0  # the step returns 2 x the MSE (see solo._FastMLP.step)
    losses: list[list[float]] = [[] for _ in range(K)]
    curves: list[list[float]] = [[] for _ in range(K)]
    init = [math.nan] * K
    results: list[TrainResult | None] = [None] * K
    with torch.inference_mode():
        data = data.to(device)
        pack, batches = _build(members, data, epochs, device)
        # A member whose run has ended (diverged) keeps its rows in the pack: dropping them would
        # change the shapes the others compute with, and so their rounding. Nothing of it reaches the
        # others (no operation mixes members), and its result is final from the epoch it diverged.
        active = list(range(K))
        seconds = [(time.perf_counter() - t0) / K] * K
        for epoch in range(epochs):
            t_epoch = time.perf_counter()
            step_losses = [pack.step(x, t) for x, t in batches.epoch(epoch)]
            stacked = torch.stack(step_losses)
            val = _scores(pack.predict(data.X_val), data.y_val, data.task, metric)
            # One host transfer per epoch: loss totals, the first step's losses, validation scores.
            # Each member's losses summed as one contiguous row: summing down the (steps, K) columns
            # rounds differently for K = 1 (a full reduction) and K > 1.
            rows = torch.stack([stacked.t().contiguous().sum(1).double(), stacked[0].double(), val]).tolist()
            finished = []
            for k in active:
                if epoch == 0:
                    init[k] = rows[1][k] * scale  # the first step's forward ran before its update
                losses[k].append(rows[0][k] * scale / len(step_losses))
                curves[k].append(rows[2][k])
                if diverged_at(losses[k], init[k]):
                    finished.append(k)
            if finished:
                # Scored as the solo run scores it: the model as it is when it diverged.
                test = _scores(pack.predict(data.X_test), data.y_test, data.task, metric).tolist()
                for k in finished:
                    results[k] = TrainResult(curves[k][-1], test[k], True, len(losses[k]), [], [], 0.0)
            share = (time.perf_counter() - t_epoch) / len(active)
            for k in active:
                seconds[k] += share
            active = [k for k in active if results[k] is None]
            if not active:
                break
        if active:
            t_end = time.perf_counter()
            test = _scores(pack.predict(data.X_test), data.y_test, data.task, metric).tolist()
            val = _scores(pack.predict(data.X_val), data.y_val, data.task, metric).tolist() if epochs == 0 else None
            for k in active:
                v = curves[k][-1] if curves[k] else val[k]
                results[k] = TrainResult(v, test[k], False, len(losses[k]), [], [], 0.0)
            share = (time.perf_counter() - t_end) / len(active)
            for k in active:
                seconds[k] += share
    for k, r in enumerate(results):
        r.train_loss = [finite_loss(x) for x in losses[k]]
        r.val_curve = curves[k]
        r.seconds = seconds[k]
    return results
