"""Packed vs solo on whole experiments: the same verdict (its direction) and the same best configuration?

Runs `bnsearch compare CONFIG` twice on fresh SQLite files, once with --pack off and once with
--pack K, and prints per config: the Answer line of each run, each arm's best configuration, how
many trials scored differently and the largest difference. This is the experiment-level half of
the packed trainer's fidelity (tests/test_packed.py checks members against solo runs, and
tests/test_packed_search.py a whole small compare); a full default compare takes minutes, so it
lives here rather than in CI.

    python benchmarks/check_packed_verdicts.py configs/default.toml configs/skewed.toml --pack 32
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd


def run(config: str, pack: str, folder: Path) -> tuple[str, pd.DataFrame]:
    out = folder / f"out-{pack}"
    cmd = [sys.executable, "-m", "bnsearch", "compare", config, "--storage", f"sqlite:///{folder / f'{pack}.db'}",
           "--pack", pack, "--device", "cpu", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {r.stderr.strip()[-400:]}")
    answer = next(line for line in (out / "report.md").read_text().splitlines() if "Answer" in line)
    return answer, pd.read_csv(out / "trials.csv")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--pack", default="32")
    a = ap.parse_args()
    same_all = True
    for config in a.configs:
        with tempfile.TemporaryDirectory() as tmp:
            solo_answer, solo = run(config, "off", Path(tmp))
            packed_answer, packed = run(config, a.pack, Path(tmp))
        key = ["arm", "number"]
        m = solo.merge(packed, on=key, suffixes=("_solo", "_packed"))
        diff = (m["score_solo"] - m["score_packed"]).abs()
        params = [c for c in ("layers", "width", "activation", "init", "lr", "optimizer", "batch_size") if c in solo]
        best_same = True
        for arm, g in solo.groupby("arm"):
            b_solo = g.loc[g["score"].idxmax(), params].to_dict()
            gp = packed[packed["arm"] == arm]
            b_packed = gp.loc[gp["score"].idxmax(), params].to_dict()
            best_same &= b_solo == b_packed
            i_solo, i_packed = g["score"].idxmax(), gp["score"].idxmax()
            # A different best can be a near-tie reordered by rounding: each run's best, scored in the other run.
            other = m[(m["arm"] == arm)].set_index("number")
            n_solo, n_packed = int(g.loc[i_solo, "number"]), int(gp.loc[i_packed, "number"])
            print(f"{config} {arm}: best solo #{n_solo} {g.loc[i_solo, 'score']:.4f} (packed {other.loc[n_solo, 'score_packed']:.4f}); "
                  f"best packed #{n_packed} {gp.loc[i_packed, 'score']:.4f} (solo {other.loc[n_packed, 'score_solo']:.4f})")
        direction = (lambda t: t.split("(")[0])
        verdict_same = direction(solo_answer) == direction(packed_answer)
        same_all &= verdict_same and best_same
        print(f"{config}: {len(m)} trials, {int((diff > 0).sum())} scored differently ({int((diff > 0.01).sum())} by more than 0.01), "
              f"median |diff| of those {diff[diff > 0].median():.4g}, largest {diff.max():.4g}; "
              f"same verdict: {verdict_same}; same best configuration: {best_same}")
        print(f"  solo:   {solo_answer}\n  packed: {packed_answer}")
    print(f"packed_same_verdicts={same_all}")


if __name__ == "__main__":
    main()
