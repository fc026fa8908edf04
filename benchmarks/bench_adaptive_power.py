"""Power of the adaptive samplers' paired test (docs/design.md, Adaptive samplers): the sign-flip test
paired by repeat against the unpaired log-rank, on trials-to-target drawn directly (geometric per arm,
the arms of a repeat tied by a Gaussian copula), through the product's own `primary_test`.

    python benchmarks/bench_adaptive_power.py      # about 4 minutes on 2 cores

Prints the table docs/design.md quotes and checks its shape (A/A rows at most 5% up to binomial
noise, more repeats more power, correlation within a repeat is what the pairing buys). A figure
table, so it lives here rather than in the test suite (tests/test_survival.py keeps the A/A and the
power checks that CI runs).
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_survival import ARMS, _claims_consistent_with_at_most, _geometric_draw  # noqa: E402

from bnsearch.analysis.survival import primary_test  # noqa: E402


def main() -> None:
    """The figures in docs/design.md (Adaptive samplers): power of the paired sign-flip test, budget
    30, the reference reaching the target with p = 0.1 per trial (median 7), the treatment 2x or 3x
    as likely per trial, arms of a repeat correlated (rho) through the shared seed and split; the
    unpaired log-rank on the same draws for comparison. 600 simulated experiments per cell."""
    from bnsearch.analysis.survival import logrank

    rng = np.random.default_rng(30)
    draws, budget = 600, 30
    rows = []
    for rho in (0.0, 0.8):
        for repeats in (5, 10, 15, 30):
            for p_treat in (0.1, 0.2, 0.3):
                # A/A (p_treat = p_ref): a claim in either direction is false; otherwise count 'faster'.
                right = ("faster", "slower") if p_treat == 0.1 else ("faster",)
                paired = lr = 0
                corr = []
                for _ in range(draws):
                    test = primary_test(_geometric_draw(rng, repeats, budget, 0.1, p_treat, rho), ARMS, target=1.0)
                    paired += test.outcome in right
                    pr = test.pairs.astype(float)
                    if pr["treatment"].std() > 0 and pr["reference"].std() > 0:
                        corr.append(np.corrcoef(pr["treatment"], pr["reference"])[0, 1])
                    t = test.times
                    on, off = t[t["arm"] == "bn-on"], t[t["arm"] == "bn-off"]
                    _, p, ome = logrank(on["trials"], on["reached"], off["trials"], off["reached"])
                    lr += p < 0.05 and (ome > 0 if right == ("faster",) else ome != 0)
                rows.append((rho, repeats, p_treat, paired / draws, lr / draws, float(np.mean(corr))))
    cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                if x.startswith("model name")), platform.processor())
    print(f"CPU {cpu}")
    print("\nrho  R   speed-up  sign-flip  log-rank  corr(min(T,30))   (1x: false claims either way; else: 'faster')")
    for rho, repeats, p_treat, a, b, c in rows:
        print(f"{rho:.1f} {repeats:3d}  {p_treat / 0.1:.0f}x        {a:6.1%}    {b:6.1%}    {c:.2f}")
    table = {(rho, r, p): a for rho, r, p, a, _, _ in rows}
    for rho in (0.0, 0.8):
        for repeats in (5, 10, 15, 30):  # A/A rows: at most 5% (binomial margin)
            assert _claims_consistent_with_at_most(round(table[(rho, repeats, 0.1)] * draws), draws)
        assert table[(rho, 5, 0.3)] == 0  # 5 pairs cannot reach p < 0.05 (2/32)
        for p_treat in (0.2, 0.3):  # more repeats, more power
            assert table[(rho, 30, p_treat)] > table[(rho, 10, p_treat)]
    # correlation within a repeat (shared seed and split) is what the pairing buys
    assert table[(0.8, 10, 0.3)] > table[(0.0, 10, 0.3)]



    print("shape checks passed")


if __name__ == "__main__":
    main()
