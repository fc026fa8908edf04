"""Packed trials: every member of a pack trains as its solo run does (docs/design.md, Training)."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from bnsearch.config import load_config
from bnsearch.data import DataSpec, load_dataset
from bnsearch.model import build_mlp
from bnsearch.search.plan import sample_configs, trial_seed
from bnsearch.train import (
    DIVERGED_LOSS, Member, epoch_permutations, model_generator, plan_packs, score, set_threads, train, train_packed,
)
from bnsearch.train.packed import ALIGN, _build, _scores

from conftest import CONFIGS

BASE = dict(layers=2, width=40, activation="tanh", init="kaiming", lr=3e-3, optimizer="adam", batch_size=64)


def P(**kw) -> dict:
    return dict(BASE, **kw)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Workers train on one thread; bit-identity between packs is a per-thread-count property (more
    # threads split an elementwise op at places that depend on the whole tensor's size).
    threads = torch.get_num_threads()
    set_threads(1)
    yield
    set_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataSpec(dataset="digits"), 0)


@pytest.fixture(scope="module")
def diabetes():
    return load_dataset(DataSpec(dataset="diabetes"), 0)


def _same(a, b) -> bool:
    """Equal in every field but the wall time."""
    return dataclasses.replace(a, seconds=0.0) == dataclasses.replace(b, seconds=0.0)


# Every activation, norm and placement, at widths that pad differently (the pack pads to 64).
MIXED = [
    Member(P(activation="relu", width=16), 1),
    Member(P(activation="tanh", width=40), 2, norm="batchnorm"),
    Member(P(activation="sigmoid", width=23), 3, norm="batchnorm", placement="after"),
    Member(P(activation="gelu", width=64, init="xavier"), 4, norm="layernorm"),
    Member(P(activation="sigmoid", width=33, init="uniform"), 5, norm="layernorm", placement="after"),
    Member(P(activation="gelu", width=17, init="normal"), 6, norm="batchnorm"),
    Member(P(activation="sigmoid", width=50, optimizer="sgd"), 7),
]


def _reference_first_step(m: Member, data, regression: bool, dtype):
    """Loss and gradients of the first mini-batch by nn.Module + autograd (solo's definition)."""
    model = build_mlp(data.n_features, data.n_outputs, layers=m.params["layers"], width=m.params["width"],
                      activation=m.params["activation"], init=m.params["init"], norm=m.norm or "none",
                      placement=m.placement, generator=model_generator(m.seed)).to(dtype)
    model.train()
    idx = epoch_permutations(data.X_train.shape[0], 1, m.seed)[0, : m.params["batch_size"]]
    out = model(data.X_train[idx].to(dtype))
    y = data.y_train[idx]
    loss = F.mse_loss(out.squeeze(1), y.to(dtype)) if regression else F.cross_entropy(out, y)
    loss.backward()
    return float(loss.detach()), [p.grad.float() for p in model.parameters()]


def _rel(got: list, want: list) -> list[float]:
    return [float((g - w).norm() / w.norm()) for g, w in zip(got, want)]


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_first_step_loss_and_gradients_match_the_autograd_reference(task, digits, diabetes):
    data, regression = (digits, False) if task == "classification" else (diabetes, True)
    with torch.inference_mode():
        pack, batches = _build(MIXED, data, 1, "cpu")
        x, t = next(iter(batches.epoch(0)))
        losses = pack.step(x, t).tolist()
        states = [pack.member_state(k) for k in range(len(MIXED))]
    for k, m in enumerate(MIXED):
        ref_loss, ref = _reference_first_step(m, data, regression, torch.float32)
        exact_loss, exact = _reference_first_step(m, data, regression, torch.float64)
        got_loss = losses[k] * (0.5 if regression else 1.0)  # the step returns 2 x the MSE, as solo's does
        assert got_loss == pytest.approx(ref_loss, rel=1e-5) and got_loss == pytest.approx(exact_loss, rel=1e-5)
        got = states[k][1]
        assert [g.shape for g in got] == [w.shape for w in exact]
        flat = lambda ts: torch.cat([g.reshape(-1) for g in ts])  # noqa: E731
        assert _rel([flat(got)], [flat(exact)])[0] <= 1e-5, m
        # Per tensor, against the float64 gradient: within 1e-5, or within twice what float32 itself
        # costs the autograd reference there (BN after a sigmoid on a regression head is that badly
        # conditioned: the float32 reference is 1.1e-5 off). A bias right before a BatchNorm has a
        # zero gradient up to rounding, so tensors that small are judged by the total above.
        total = flat(exact).norm()
        for err, ref_err, w in zip(_rel(got, exact), _rel(ref, exact), exact):
            if w.norm() > 1e-3 * total:
                assert err <= max(1e-5, 2 * ref_err), (m, err, ref_err)


def test_final_scores_within_the_solo_seed_spread_on_the_default_space(digits):
    settings = load_config(CONFIGS / "default.toml")
    members = []
    for i, c in enumerate(sample_configs(settings, 20)):
        params = {**settings.fixed_params(), **c}
        members += [Member(params, trial_seed(settings.seed, i), norm=norm) for norm in ("none", "batchnorm")]
    epochs = 3
    packed = [None] * len(members)
    packs = plan_packs(members, 32)
    assert any(len(p) > 1 for p in packs)
    for pack in packs:
        for i, r in zip(pack, train_packed([members[i] for i in pack], digits, epochs=epochs)):
            packed[i] = r
    within = 0
    for m, r in zip(members, packed):
        nums = [r.val_score, r.test_score, r.seconds, *r.train_loss, *r.val_curve]
        assert all(type(v) is float and math.isfinite(v) for v in nums) and type(r.diverged) is bool
        assert r.epochs_run == len(r.train_loss) == len(r.val_curve) and r.val_score == r.val_curve[-1]
        solo = [train(m.params, digits, epochs=epochs, seed=m.seed + j, norm=m.norm).val_score for j in range(3)]
        within += abs(r.val_score - solo[0]) <= max(solo) - min(solo)
    assert within >= 0.95 * len(members), f"{within} of {len(members)} within the seed spread"


def test_changing_one_member_leaves_the_others_bit_identical(digits):
    others = [Member(P(activation="sigmoid", width=24), 1, norm="batchnorm"),
              Member(P(width=64), 3, norm="layernorm"),
              Member(P(activation="relu", width=33), 4, norm="batchnorm", placement="after")]
    base = train_packed([others[0], Member(P(activation="gelu", optimizer="sgd", lr=0.05), 2), *others[1:]],
                        digits, epochs=3)
    for changed in (Member(P(activation="relu", init="xavier", lr=1e-3, width=17), 9),
                    Member(P(optimizer="sgd", lr=0.05), 2, norm="layernorm"),
                    Member(P(), 2, norm="batchnorm", placement="after")):
        got = train_packed([others[0], changed, *others[1:]], digits, epochs=3)
        assert all(_same(base[i], got[i]) for i in (0, 2, 3)), changed


def _padding(pack, k: int) -> torch.Tensor:
    """Member k's parameter row with its true-width entries zeroed: what is left is the padding."""
    row = pack.flat[k].clone()
    layers, head = pack._member_views(row)
    w = pack.specs[k].width
    for i, e in enumerate(layers):
        e["W"][: (pack.n_in if i == 0 else w), :w] = 0
        for name in ("b", "gamma", "beta"):
            if name in e:
                e[name][0, :w] = 0
    head["W"][:w] = 0
    head["b"][:] = 0
    return row


def test_padded_units_have_no_effect(digits):
    # sigmoid(0) = 0.5 and LayerNorm's statistics are the two ways padding could leak.
    narrow = [Member(P(activation="sigmoid", width=16), 1), Member(P(width=20), 2, norm="layernorm"),
              Member(P(activation="sigmoid", width=18), 3, norm="layernorm", placement="after")]
    wide = Member(P(activation="relu", width=256, optimizer="sgd", lr=0.05), 4, norm="batchnorm")
    for m in narrow:
        alone = train_packed([m], digits, epochs=3)[0]
        with_wide = train_packed([m, wide], digits, epochs=3)[0]
        assert _same(with_wide, alone)
    with torch.inference_mode():
        pack, batches = _build([*narrow, wide], digits, 1, "cpu")
        assert pack.wp == 256 and pack.wp % ALIGN == 0
        for x, t in batches.epoch(0):
            pack.step(x, t)
        for k in range(len(narrow)):
            assert bool((_padding(pack, k) == 0).all()) and bool((pack.grad[k][_padding(pack, k) != 0] == 0).all())


@pytest.fixture(scope="module")
def iris():
    return load_dataset(DataSpec(dataset="iris"), 0)


@pytest.mark.parametrize("name", ["iris", "diabetes", "digits"])
def test_a_member_trains_bit_identically_whatever_its_pack(name, request):
    # What packing must not change: a member's every score, curve and loss equal its run in a pack of
    # one. The 300-wide member makes the pack's GEMMs span three CHUNKs while the others alone span one;
    # batch 32 leaves a short last batch in all three sets (26, 9 and 22 rows); iris puts 4 inputs into a
    # 3-class head (bmm's naive-loop sizes, without EDGE); diabetes is a regression head.
    data = request.getfixturevalue(name)
    members = [Member(P(width=300, activation="gelu", batch_size=32), 11, norm="batchnorm"),
               Member(P(width=17, activation="sigmoid", batch_size=32, optimizer="sgd", lr=0.1), 12),
               Member(P(width=130, activation="tanh", batch_size=32), 13, norm="layernorm", placement="after"),
               Member(P(width=40, activation="relu", batch_size=32, init="xavier"), 14, norm="batchnorm",
                      placement="after"),
               Member(P(width=64, activation="tanh", batch_size=32, lr=0.02), 15, norm="layernorm"),
               Member(P(width=200, activation="sigmoid", batch_size=32, optimizer="sgd", lr=0.05), 16)]
    packed = train_packed(members, data, epochs=4)
    for m, got in zip(members, packed):
        assert _same(got, train_packed([m], data, epochs=4)[0]), m


def test_a_diverging_member_changes_no_other(digits):
    a = Member(P(layers=3, activation="relu"), 1, norm="batchnorm")
    c = Member(P(layers=3, activation="sigmoid", width=30), 3)
    wild = Member(P(layers=3, width=64, init="xavier", optimizer="sgd", lr=1.0, activation="relu"), 0)  # NaN, epoch 1
    tame = Member(P(layers=3, width=64), 0)
    got = train_packed([a, wild, c], digits, epochs=4)
    calm = train_packed([a, tame, c], digits, epochs=4)
    assert _same(got[0], calm[0]) and _same(got[2], calm[2]) and got[0].epochs_run == 4
    solo = train(wild.params, digits, epochs=4, seed=wild.seed)
    assert got[1].diverged and got[1].epochs_run == 1 and got[1].train_loss == [DIVERGED_LOSS]
    assert _same(got[1], solo)


def test_unfusable_members_are_refused_and_planned_apart(digits):
    with pytest.raises(ValueError, match=r"differ in layers \(1, 2\).*plan_packs"):
        train_packed([Member(P(layers=1), 0), Member(P(), 1)], digits, epochs=50)
    with pytest.raises(ValueError, match=r"differ in batch_size \(32, 64\)"):
        train_packed([Member(P(batch_size=32), 0), Member(P(), 1)], digits, epochs=50)
    with pytest.raises(ValueError, match="optimizer"):
        train_packed([Member(P(optimizer="rmsprop"), 0)], digits, epochs=50)
    assert train_packed([], digits, epochs=3) == []

    members = [Member(P(layers=1 + i % 2, batch_size=(32, 64)[i % 3 == 0], width=16 + 37 * i), i,
                      norm=("none", "batchnorm")[i % 2]) for i in range(30)]
    packs = plan_packs(members, 4, width_ratio=2.0)
    assert sorted(i for p in packs for i in p) == list(range(30))
    for p in packs:
        assert len(p) <= 4 and len({(members[i].params["layers"], members[i].params["batch_size"]) for i in p}) == 1
        widths = [members[i].params["width"] for i in p]
        assert max(widths) <= 2.0 * min(widths)
    for p in plan_packs(members, 64, max_elements=64 * 128):
        wp = -(-max(members[i].params["width"] for i in p) // ALIGN) * ALIGN
        assert len(p) == 1 or len(p) * members[p[0]].params["batch_size"] * wp <= 64 * 128
    with pytest.raises(ValueError, match="max_pack"):
        plan_packs(members, 0)


def test_scores_of_a_pack_equal_solo_scores():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (50,), generator=g)  # class 3 of 4 never occurs
    out = torch.randn(5, 50, 4, generator=g)
    out[2, 7, 1] = math.nan
    out[4, 0, 0] = math.inf
    for metric in ("accuracy", "balanced_accuracy"):
        got = _scores(out, y, "classification", metric).tolist()
        assert got == pytest.approx([score(o, y, "classification", metric) for o in out], rel=1e-15)
    yr = torch.randn(50, generator=g)
    outr = yr.view(1, -1, 1) + torch.randn(4, 50, 1, generator=g) * torch.tensor([0.1, 1.0, 10.0, 1.0]).view(-1, 1, 1)
    outr[3, 5, 0] = math.inf
    got = _scores(outr, yr, "regression", "accuracy").tolist()
    assert got == pytest.approx([score(o, yr, "regression") for o in outr], rel=1e-12)
    assert got[2] == got[3] == -1.0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_pack_matches_cpu(digits):
    cpu = train_packed(MIXED, digits, epochs=3)
    gpu = train_packed(MIXED, digits, epochs=3, device="cuda")
    for c, g in zip(cpu, gpu):
        assert not g.diverged and g.train_loss == pytest.approx(c.train_loss, rel=1e-2)
        assert g.val_score == pytest.approx(c.val_score, abs=0.05)
