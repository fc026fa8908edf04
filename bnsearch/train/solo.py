"""One training run of one configuration -> TrainResult.

Semantics (docs/design.md, Training), defined by :func:`train_reference`:

- The whole data set lives in memory as tensors; every epoch draws a fresh permutation from a
  ``torch.Generator`` seeded with ``seed`` and walks it in mini-batches of ``batch_size``. The last
  partial batch is kept unless it holds a single row (train-mode BatchNorm cannot normalise one row;
  both arms drop it so they see the same batches).
- The model's weights come from the same seed (see :func:`bnsearch.model.build_mlp`), so the BN-on and
  BN-off arms start from identical weights, and the same seed and params give a bit-identical result
  on CPU.
- SGD with momentum 0.9 or Adam (torch defaults otherwise); cross-entropy or MSE loss.
- After each epoch: the epoch's mean training loss, and the validation score with ``model.eval()``
  (BN running statistics). The run **diverges** when that mean loss is non-finite or above
  1e3 x the loss at initialisation (the first mini-batch's loss, computed by the first step's
  forward pass before any update): it stops and is scored as it is. Anchoring on the first
  epoch's mean instead missed runs that had already exploded within epoch 1. A non-finite loss
  mid-epoch only wastes the rest of that epoch; checking once per epoch avoids a host sync every step.
- Scores are "higher is better": accuracy or balanced accuracy (``metric``, the config's data.metric),
  or R^2 clipped to >= -1. A model whose outputs are not all finite scores at chance level -- the
  best constant predictor of the split: the share of its most frequent class, 1/K for balanced
  accuracy (K classes present) -- or R^2 = -1, so a diverged run is never scored below a constant
  predictor. Every number returned is a finite Python float;
  a non-finite epoch loss is recorded as ``DIVERGED_LOSS`` so curves stay JSON-safe.

Worker processes should call :func:`set_threads` (1 thread per process is fastest for these small nets).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..config import DEFAULT_METRIC, METRICS, OPTIMIZERS, PARAM_TYPES
from ..data import Dataset
from ..model import build_mlp, resolve_norm

DIVERGE_FACTOR = 1e3
REGRESSION_FLOOR = -1.0
DIVERGED_LOSS = float(torch.finfo(torch.float32).max)
MOMENTUM = 0.9

PARAM_KEYS = tuple(PARAM_TYPES)


@dataclass
class TrainResult:
    val_score: float  # higher is better: val (balanced) accuracy, or val R^2 clipped to >= -1 (regression)
    test_score: float  # same metric on the test split
    diverged: bool
    epochs_run: int
    train_loss: list[float] = field(default_factory=list)  # mean training loss per epoch run
    val_curve: list[float] = field(default_factory=list)  # val score per epoch run
    seconds: float = 0.0


def set_threads(n: int) -> None:
    """Set torch's intra-op threads for this process (bnsearch workers use 1 each)."""
    torch.set_num_threads(int(n))


def _check_params(params: dict) -> None:
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(f"train: params lacks {missing}")
    if params["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {params['optimizer']!r}")
    if int(params["batch_size"]) < 1:
        raise ValueError(f"batch_size must be >= 1, got {params['batch_size']}")


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each mini-batch within one epoch's permutation."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds.pop()
    return bounds


def epoch_permutations(n: int, epochs: int, seed: int) -> torch.Tensor:
    """(epochs, n) int64 CPU tensor: the row order of every epoch, from a generator seeded by ``seed``.

    Drawn on the CPU whatever the device, so a run's batches do not depend on where it trains.
    """
    g = torch.Generator().manual_seed(seed)
    if epochs == 0:
        return torch.empty(0, n, dtype=torch.int64)
    return torch.stack([torch.randperm(n, generator=g) for _ in range(epochs)])


def model_generator(seed: int) -> torch.Generator:
    # Separate stream from the permutations: weights must not depend on the number of epochs.
    return torch.Generator().manual_seed(seed + 1_000_003)


def check_metric(task: str, metric: str) -> None:
    """Refuse a metric the task cannot be scored by, before any training.

    The config refuses balanced accuracy on a task it knows to be regression; a CSV whose task is
    inferred from its target (or an OpenML table) is only known here, once loaded."""
    if metric not in METRICS:
        raise ValueError(f"data.metric: unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    if task == "regression" and metric != DEFAULT_METRIC:
        raise ValueError(f"data.metric = \"{metric}\" applies to classification, but this data set's target is a "
                         "quantity (regression, scored by R^2); remove data.metric, or set data.task = "
                         "\"classification\" if these are class labels")


def _balanced_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    # scikit-learn's balanced_accuracy_score, in torch: the outputs stay on the training device (no
    # copy to the host every epoch) and workers need not import scikit-learn (~1 s each). Classes
    # absent from y have no recall and are skipped, as scikit-learn skips them.
    counts = torch.bincount(y)
    hits = torch.bincount(y[pred == y], minlength=counts.numel())
    present = counts > 0
    return float((hits[present].double() / counts[present].double()).mean())


def score(out: torch.Tensor, y: torch.Tensor, task: str, metric: str = DEFAULT_METRIC) -> float:
    """Finite, higher-is-better score of model outputs ``out`` against targets ``y``.

    ``metric`` (classification only): "accuracy" or "balanced_accuracy", the mean recall over the
    classes present in ``y``."""
    if y.numel() == 0:
        return 0.0
    if task == "classification":
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        balanced = metric == "balanced_accuracy"
        if not bool(torch.isfinite(out).all()):
            # Chance level, the best constant predictor: it recalls all of one class and none of the
            # others, so its balanced accuracy is 1/K whichever class it predicts.
            counts = torch.bincount(y)
            if balanced:
                return 1.0 / int((counts > 0).sum())
            return float(counts.max()) / y.numel()
        pred = out.argmax(dim=1)
        if balanced:
            return _balanced_accuracy(pred, y)
        return float((pred == y).double().mean())
    pred = out.reshape(-1).double()
    yd = y.double()
    sse = torch.sum((pred - yd) ** 2)
    sst = torch.sum((yd - yd.mean()) ** 2)
    r2 = float(1.0 - sse / sst) if float(sst) > 0 else (1.0 if float(sse) == 0 else REGRESSION_FLOOR)
    if not math.isfinite(r2):
        return REGRESSION_FLOOR
    return max(r2, REGRESSION_FLOOR)


def diverged_at(losses: list[float], init_loss: float) -> bool:
    """True when the latest epoch mean loss is non-finite or 1e3 x above the loss at initialisation."""
    last = losses[-1]
    if not math.isfinite(last):
        return True
    return math.isfinite(init_loss) and last > DIVERGE_FACTOR * init_loss


def finite_loss(x: float) -> float:
    return x if math.isfinite(x) else DIVERGED_LOSS


def train_reference(params: dict, data: Dataset, *, bn: bool | None = None, epochs: int, seed: int,
                    device: str = "cpu", norm: str | None = None, placement: str = "before",
                    metric: str = DEFAULT_METRIC) -> TrainResult:
    """Plain autograd + nn.Module + torch.optim training: the definition :func:`train` must match."""
    return _train_reference(params, data, bn=bn, epochs=epochs, seed=seed, device=device, norm=norm,
                            placement=placement, metric=metric)[0]


def _train_reference(params: dict, data: Dataset, *, bn: bool | None = None, epochs: int, seed: int,
                     device: str = "cpu", norm: str | None = None, placement: str = "before",
                     metric: str = DEFAULT_METRIC):
    t0 = time.perf_counter()
    _check_params(params)
    check_metric(data.task, metric)
    data = data.to(device)
    regression = data.task == "regression"
    model = build_mlp(
        data.n_features, data.n_outputs, layers=int(params["layers"]), width=int(params["width"]),
        activation=params["activation"], init=params["init"], bn=bn, norm=norm, placement=placement,
        generator=model_generator(seed),
    ).to(device)
    lr = float(params["lr"])
    if params["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM)
    n = data.X_train.shape[0]
    bounds = batch_bounds(n, int(params["batch_size"]))
    perms = epoch_permutations(n, epochs, seed).to(device)

    def predict(X: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.inference_mode():
            return model(X)

    losses: list[float] = []
    curve: list[float] = []
    diverged = False
    init_loss = math.nan
    for epoch in range(epochs):
        model.train()
        total = torch.zeros((), device=device)
        for s, e in bounds:
            idx = perms[epoch, s:e]
            out = model(data.X_train[idx])
            if regression:
                loss = F.mse_loss(out.squeeze(1), data.y_train[idx])
            else:
                loss = F.cross_entropy(out, data.y_train[idx])
            if epoch == 0 and s == 0:
                init_loss = float(loss.detach())  # before the first update: the divergence anchor
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        losses.append(float(total) / len(bounds))
        curve.append(score(predict(data.X_val), data.y_val, data.task, metric))
        if diverged_at(losses, init_loss):
            diverged = True
            break
    val = curve[-1] if curve else score(predict(data.X_val), data.y_val, data.task, metric)
    test = score(predict(data.X_test), data.y_test, data.task, metric)
    result = TrainResult(val, test, diverged, len(losses), [finite_loss(x) for x in losses], curve,
                         time.perf_counter() - t0)
    return result, model



# --------------------------------------------------------------------------------------------------
# Fast path. A trial is hundreds of steps on tiny matrices, so the per-op Python/dispatch cost, not the
# arithmetic, sets the pace. The forward and backward of this fixed MLP family are written out with the
# same ATen kernels autograd would call (addmm, native_batch/layer_norm(_backward), *_backward of the
# activations, log-softmax/NLL), on inference-mode tensors, with one fused optimizer call per step and
# no host sync inside an epoch. test_train.py checks it against train_reference.

_aten = torch.ops.aten
_ACT_FWD = {"relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_, "gelu": torch._C._nn.gelu}
# Backward kernels autograd uses; relu/tanh/sigmoid need the output, gelu the input.
_ACT_BWD = {
    "relu": lambda g, y, a: _aten.threshold_backward.default(g, a, 0.0),
    "tanh": lambda g, y, a: _aten.tanh_backward.default(g, a),
    "sigmoid": lambda g, y, a: _aten.sigmoid_backward.default(g, a),
    "gelu": lambda g, y, a: _aten.gelu_backward.default(g, y),
}
_BN_BWD_OUT = _aten.native_batch_norm_backward.out
_LN_BWD_OUT = _aten.native_layer_norm_backward.out
_LSM_BWD = torch._log_softmax_backward_data
_NORM_MASK = [True, True, True]
_BN_MASK = _NORM_MASK  # the older name, kept for callers that check the op as the fast path calls it


class _FastMLP:
    """Parameters and optimizer state of one MLP as plain tensors, with a hand-written training step.

    All parameters are views into one flat buffer, and all gradients views into another that the
    backward writes in place (``out=``), so the optimizer is one fused call on one tensor per step.
    The norm (none, batchnorm or layernorm) sits before or after the activation, as in build_mlp.
    """

    def __init__(self, model: torch.nn.Sequential, *, norm: str, placement: str, activation: str,
                 regression: bool, optimizer: str, lr: float):
        lins = [m for m in model if isinstance(m, torch.nn.Linear)]
        norms = [m for m in model if isinstance(m, torch.nn.BatchNorm1d)]
        lns = [m for m in model if isinstance(m, torch.nn.LayerNorm)]
        self.norm = norm
        self.after = placement == "after"
        self.bn = norm == "batchnorm"
        self.regression = regression
        self.act_fwd = _ACT_FWD[activation]
        self.act_bwd = _ACT_BWD[activation]
        source = list(model.parameters())
        device = source[0].device
        self.flat = torch.cat([p.detach().reshape(-1) for p in source])
        self.grad = torch.zeros_like(self.flat)
        views, gviews, offset = [], [], 0
        for p in source:
            views.append(self.flat[offset:offset + p.numel()].view(p.shape))
            gviews.append(self.grad[offset:offset + p.numel()].view(p.shape))
            offset += p.numel()
        has_norm = norm != "none"
        per = 4 if has_norm else 2  # parameters per hidden layer in model.parameters() order
        L = len(lins) - 1
        self.layers = []
        for i in range(L):
            k = i * per
            W, b, gW, gb = views[k], views[k + 1], gviews[k], gviews[k + 1]
            gamma, beta, ggamma, gbeta = (views[k + 2], views[k + 3], gviews[k + 2], gviews[k + 3]) if has_norm else (None,) * 4
            self.layers.append((W, W.t(), b, gW, gb, gamma, beta, ggamma, gbeta))
        k = L * per
        self.head = (views[k], views[k].t(), views[k + 1], gviews[k], gviews[k + 1])
        self.rmean = [m.running_mean.clone() for m in norms]
        self.rvar = [m.running_var.clone() for m in norms]
        self.bn_momentum = norms[0].momentum if norms else 0.1
        self.bn_eps = norms[0].eps if norms else 1e-5
        self.ln_eps = lns[0].eps if lns else 1e-5
        self.n_params = len(source)
        self.views = views
        self.lr = lr
        self.n_steps = 0
        self.adam = optimizer == "adam"
        if self.adam:
            self.m = torch.zeros_like(self.flat)
            self.v = torch.zeros_like(self.flat)
            self.step_t = torch.zeros((), dtype=torch.float32, device=device)
        else:
            self.buf = torch.zeros_like(self.flat)

    def load_into(self, model: torch.nn.Sequential) -> None:
        """Copy the trained state back into an nn.Module built by build_mlp (tests, export)."""
        norms = [m for m in model if isinstance(m, torch.nn.BatchNorm1d)]
        with torch.no_grad():
            for p, v in zip(model.parameters(), self.views):
                p.copy_(v)
            for m, rm, rv in zip(norms, self.rmean, self.rvar):
                m.running_mean.copy_(rm)
                m.running_var.copy_(rv)
                m.num_batches_tracked.fill_(self.n_steps)

    def _norm_eval(self, h: torch.Tensor, i: int, gamma, beta) -> torch.Tensor:
        if self.bn:
            return torch.batch_norm(h, gamma, beta, self.rmean[i], self.rvar[i], False, 0.0, self.bn_eps, False)
        return torch.layer_norm(h, (h.shape[1],), gamma, beta, self.ln_eps, False)

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        h = X
        has_norm, after = self.norm != "none", self.after
        for i, (W, Wt, b, _gW, _gb, gamma, beta, _gg, _gbt) in enumerate(self.layers):
            h = torch.addmm(b, h, Wt)
            if has_norm and not after:
                h = self._norm_eval(h, i, gamma, beta)
            h = self.act_fwd(h)
            if has_norm and after:
                h = self._norm_eval(h, i, gamma, beta)
        W, Wt, b, _, _ = self.head
        return torch.addmm(b, h, Wt)

    def _norm_train(self, x: torch.Tensor, i: int, gamma, beta):
        """Train-mode norm forward: (output, saved mean, saved inverse std)."""
        if self.bn:
            return torch.native_batch_norm(x, gamma, beta, self.rmean[i], self.rvar[i], True, self.bn_momentum,
                                           self.bn_eps)
        return torch.native_layer_norm(x, (x.shape[1],), gamma, beta, self.ln_eps)

    def _norm_backward(self, dy, x, i, gamma, beta, smean, sinvstd, ggamma, gbeta) -> torch.Tensor:
        """Gradient w.r.t. the norm's input; gamma/beta gradients go straight into the flat buffer."""
        dx = torch.empty_like(dy)
        if self.bn:
            _BN_BWD_OUT(dy, x, gamma, self.rmean[i], self.rvar[i], smean, sinvstd, True, self.bn_eps, _NORM_MASK,
                        out0=dx, out1=ggamma, out2=gbeta)
        else:
            _LN_BWD_OUT(dy, x, (x.shape[1],), smean, sinvstd, gamma, beta, _NORM_MASK, out0=dx, out1=ggamma,
                        out2=gbeta)
        return dx

    def step(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One optimizer step on batch (x, t); returns the batch loss as a 0-dim tensor (no sync).

        For classification ``t`` is -onehot/B (so the NLL is a dot product and its gradient one
        kernel); for regression ``t`` is the target vector.
        """
        has_norm, after, act_fwd = self.norm != "none", self.after, self.act_fwd
        saved = []
        h = x
        for i, (W, Wt, b, gW, gb, gamma, beta, ggamma, gbeta) in enumerate(self.layers):
            z = torch.addmm(b, h, Wt)
            if not has_norm:
                a = act_fwd(z)  # in place except gelu: relu/tanh/sigmoid backward need only the output
                saved.append((h, z, a, None, None, None))
                h = a
            elif after:
                # Linear -> activation -> norm: the norm's input is the activation's output.
                a = act_fwd(z)
                y, smean, sinvstd = self._norm_train(a, i, gamma, beta)
                saved.append((h, z, a, a, smean, sinvstd))
                h = y
            else:
                y, smean, sinvstd = self._norm_train(z, i, gamma, beta)
                a = act_fwd(y)
                saved.append((h, y, a, z, smean, sinvstd))
                h = a
        W, Wt, b, gW, gb = self.head
        out = torch.addmm(b, h, Wt)

        if self.regression:
            diff = out.view(-1) - t
            g = torch.mul(diff, 2.0 / diff.shape[0])
            loss = torch.dot(diff, g)  # 2 x the MSE; halved once per epoch
            g = g.view(-1, 1)
        else:
            ls = torch._log_softmax(out, 1, False)
            loss = torch.dot(ls.view(-1), t.view(-1))
            g = _LSM_BWD(t, ls, 1, torch.float32)

        torch.mm(g.t(), h, out=gW)
        torch.sum(g, 0, out=gb)
        dh = torch.mm(g, W)
        act_bwd = self.act_bwd
        for i in range(len(self.layers) - 1, -1, -1):
            W, Wt, b, gW, gb, gamma, beta, ggamma, gbeta = self.layers[i]
            # act_in/act_out: the activation's input and output; norm_in: the norm's input.
            h_in, act_in, act_out, norm_in, smean, sinvstd = saved[i]
            if not has_norm:
                dz = act_bwd(dh, act_in, act_out)
            elif after:
                da = self._norm_backward(dh, norm_in, i, gamma, beta, smean, sinvstd, ggamma, gbeta)
                dz = act_bwd(da, act_in, act_out)
            else:
                dy = act_bwd(dh, act_in, act_out)
                dz = self._norm_backward(dy, norm_in, i, gamma, beta, smean, sinvstd, ggamma, gbeta)
            torch.mm(dz.t(), h_in, out=gW)
            torch.sum(dz, 0, out=gb)
            if i:
                dh = torch.mm(dz, W)

        self.n_steps += 1
        if self.adam:
            self.step_t.add_(1.0)
            torch._fused_adam_([self.flat], [self.grad], [self.m], [self.v], [], [self.step_t], lr=self.lr,
                               beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
        else:
            torch._fused_sgd_([self.flat], [self.grad], [self.buf], weight_decay=0.0, momentum=MOMENTUM,
                              lr=self.lr, dampening=0.0, nesterov=False, maximize=False,
                              is_first_step=self.n_steps == 1)
        return loss


def _train_fast(params: dict, data: Dataset, *, bn: bool | None = None, epochs: int, seed: int,
                device: str = "cpu", norm: str | None = None, placement: str = "before",
                metric: str = DEFAULT_METRIC):
    t0 = time.perf_counter()
    _check_params(params)
    check_metric(data.task, metric)
    norm, placement = resolve_norm(bn, norm, placement)
    regression = data.task == "regression"
    model = build_mlp(
        data.n_features, data.n_outputs, layers=int(params["layers"]), width=int(params["width"]),
        activation=params["activation"], init=params["init"], norm=norm, placement=placement,
        generator=model_generator(seed),
    )
    n = data.X_train.shape[0]
    bounds = batch_bounds(n, int(params["batch_size"]))
    sizes = [e - s for s, e in bounds]
    used = sum(sizes)
    perms = epoch_permutations(n, epochs, seed)
    with torch.inference_mode():
        data = data.to(device)
        model = model.to(device)
        net = _FastMLP(model, norm=norm, placement=placement, activation=params["activation"], regression=regression,
                       optimizer=params["optimizer"], lr=float(params["lr"]))
        perms = perms.to(device)
        if regression:
            targets = data.y_train
        else:
            # Rows of -onehot / B: the per-batch NLL becomes a dot product with the log-softmax.
            onehot = torch.zeros(n, data.n_outputs, device=device)
            onehot[torch.arange(n, device=device), data.y_train] = -1.0
        losses: list[float] = []
        curve: list[float] = []
        diverged = False
        init_loss = math.nan
        for epoch in range(epochs):
            perm = perms[epoch, :used]
            xs = data.X_train.index_select(0, perm).split(sizes)
            if regression:
                ts = targets.index_select(0, perm).split(sizes)
            else:
                sel = onehot.index_select(0, perm)
                # Full batches share one scale; a shorter last batch gets its own.
                sel[: sizes[0] * (len(sizes) - (sizes[-1] != sizes[0]))].mul_(1.0 / sizes[0])
                if sizes[-1] != sizes[0]:
                    sel[used - sizes[-1]:].mul_(1.0 / sizes[-1])
                ts = sel.split(sizes)
            step_losses = [net.step(x, t) for x, t in zip(xs, ts)]
            scale = 0.5 if regression else 1.0
            if epoch == 0:
                init_loss = float(step_losses[0]) * scale  # the first step's forward ran before its update
            total = float(torch.stack(step_losses).sum())
            losses.append(total * scale / len(sizes))
            curve.append(score(net.predict(data.X_val), data.y_val, data.task, metric))
            if diverged_at(losses, init_loss):
                diverged = True
                break
        val = curve[-1] if curve else score(net.predict(data.X_val), data.y_val, data.task, metric)
        test = score(net.predict(data.X_test), data.y_test, data.task, metric)
    result = TrainResult(val, test, diverged, len(losses), [finite_loss(x) for x in losses], curve,
                         time.perf_counter() - t0)
    return result, net, model


def train(params: dict, data: Dataset, *, bn: bool | None = None, epochs: int, seed: int, device: str = "cpu",
          norm: str | None = None, placement: str = "before", metric: str = DEFAULT_METRIC) -> TrainResult:
    """Train one configuration with the fast hand-written path; same semantics as train_reference.

    ``bn=True``/``False`` is ``norm="batchnorm"``/``"none"``; ``norm`` also takes ``"layernorm"``, and
    ``placement="after"`` puts the norm after the activation (see :func:`bnsearch.model.build_mlp`).
    ``metric``: the classification score of every epoch and of the test split (see :func:`score`).
    """
    return _train_fast(params, data, bn=bn, epochs=epochs, seed=seed, device=device, norm=norm,
                       placement=placement, metric=metric)[0]
