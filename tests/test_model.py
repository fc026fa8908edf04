import pytest
import torch
from torch import nn

from bnsearch.model import ACTIVATIONS, INITS, build_mlp, count_flops, forward_flops


def _build(bn, seed=0, **kw):
    args = dict(layers=3, width=32, activation="relu", init="kaiming") | kw
    return build_mlp(10, 4, bn=bn, generator=torch.Generator().manual_seed(seed), **args)


def test_bn_on_and_off_differ_only_by_norm_layers():
    on, off = _build(True), _build(False)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in on) == 3
    assert not any(isinstance(m, nn.BatchNorm1d) for m in off)
    rest = [m for m in on if not isinstance(m, nn.BatchNorm1d)]
    assert [type(m) for m in rest] == [type(m) for m in off]
    for a, b in zip(rest, off):
        for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
            assert na == nb and pa.shape == pb.shape
            assert torch.equal(pa, pb)


def test_layer_order_bn_before_activation_and_plain_head():
    m = _build(True, layers=2, activation="tanh")
    assert [type(x) for x in m] == [nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Linear]
    assert m[-1].out_features == 4 and m[0].in_features == 10


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("init", INITS)
def test_every_activation_and_init_builds_and_runs(activation, init):
    m = _build(True, activation=activation, init=init)
    for lin in (x for x in m if isinstance(x, nn.Linear)):
        assert torch.count_nonzero(lin.bias) == 0
    assert m(torch.randn(8, 10)).shape == (8, 4)


def test_init_distributions():
    w = build_mlp(400, 1, layers=1, width=400, activation="relu", init="kaiming", bn=False)[0].weight
    assert w.std().item() == pytest.approx((2 / 400) ** 0.5, rel=0.05)
    w = build_mlp(400, 1, layers=1, width=400, activation="relu", init="normal", bn=False)[0].weight
    assert w.std().item() == pytest.approx(1.0, rel=0.05)
    w = build_mlp(400, 1, layers=1, width=400, activation="relu", init="uniform", bn=False)[0].weight
    assert w.min() >= -1 and w.max() <= 1 and w.std().item() == pytest.approx(3 ** -0.5, rel=0.05)
    w = build_mlp(400, 1, layers=1, width=400, activation="tanh", init="xavier", bn=False)[0].weight
    bound = 5 / 3 * (6 / 800) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound


def test_same_seed_same_weights_and_bad_names_raise():
    a, b, c = _build(False, seed=1), _build(False, seed=1), _build(False, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[0].weight, c[0].weight)
    with pytest.raises(ValueError):
        _build(False, activation="swish")
    with pytest.raises(ValueError):
        _build(False, init="orthogonal")


def test_flop_count():
    assert forward_flops(64, 10, 2, 256) == 2 * (64 * 256 + 256 * 256 + 256 * 10)
    f = forward_flops(64, 10, 2, 256)
    assert count_flops(64, 10, layers=2, width=256, n_train=100, n_eval=50, epochs=3) == 3 * (300 * f + 50 * f)


def test_norm_variants_and_placement():
    def types(**kw):
        return [type(x) for x in build_mlp(10, 4, layers=1, width=8, activation="tanh", init="kaiming", **kw)]

    assert types(norm="layernorm") == [nn.Linear, nn.LayerNorm, nn.Tanh, nn.Linear]
    assert types(norm="batchnorm", placement="after") == [nn.Linear, nn.Tanh, nn.BatchNorm1d, nn.Linear]
    assert types(norm="layernorm", placement="after") == [nn.Linear, nn.Tanh, nn.LayerNorm, nn.Linear]
    assert types(norm="none") == types(bn=False) == types() == [nn.Linear, nn.Tanh, nn.Linear]
    assert types(norm="batchnorm") == types(bn=True)
    # Norm layers draw nothing from the generator: every variant starts from the same Linear weights.
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    base = [m.weight for m in build_mlp(10, 4, layers=2, width=8, activation="relu", init="xavier", generator=g())
            if isinstance(m, nn.Linear)]
    for kw in (dict(norm="layernorm"), dict(norm="batchnorm", placement="after")):
        other = [m.weight for m in build_mlp(10, 4, layers=2, width=8, activation="relu", init="xavier",
                                             generator=g(), **kw) if isinstance(m, nn.Linear)]
        assert all(torch.equal(a, b) for a, b in zip(base, other))
    with pytest.raises(ValueError, match="placement"):
        build_mlp(10, 4, layers=1, width=8, activation="relu", init="kaiming", norm="batchnorm", placement="middle")
