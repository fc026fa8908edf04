"""The committed sample reports never put a direction beside an interval that includes 0.

Every report.md (the verdicts, the Answer lines, the budget and panel sentences, every table cell) and
every CSV in docs/samples is parsed: each directional word ("easier", "harder", "raised", "lowered",
"sooner", "faster", "slower") that makes a claim must be followed, before the next claim or the end of
its sentence or table cell, by an interval, and that interval must exclude 0 on the claimed side.
In the CSVs each row with a direction must carry the level it rests on, with an interval that excludes
0 on the side of the direction (summary.csv's outcome_*, budget.csv's quoted_delta, panel.csv's focus_*).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "docs" / "samples"
REPORTS = sorted(SAMPLES.glob("*/report.md"))

NUM = r"[+\-−]?\d+(?:\.\d+)?"
INTERVAL = re.compile(rf"(?:95% CI|95% interval|CI)[^0-9+\-−]{{0,40}}?({NUM})\s*(?:to|\.\.|–|,)\s*({NUM})")
POSITIVE = {"easier", "raised", "sooner", "faster"}  # sooner/faster: fewer trials, a negative difference
CLAIM = re.compile(r"\b(easier|harder|raised|lowered|sooner|faster|slower)\b")
# a directional word that claims nothing: a question, a negation, a noun phrase about training speed
NOT_A_CLAIM = re.compile(r"((whether|cannot tell|not shown|neither|would be|if it|no direction)[^.;:]*"
                         r"|\d+ repeats? reached it)\s*$")
NOT_A_CLAIM_AFTER = re.compile(r"^\s*(training|to train|or |than|and |,\s*later)")


def _num(text: str) -> float:
    return float(text.replace("−", "-"))


def _chunks(text: str) -> list[str]:
    """Sentences of prose, and cells of markdown tables."""
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            out += [c.strip() for c in line.strip().strip("|").split("|")]
        else:
            out += re.split(r"(?<=[.!?])\s+(?=[A-Z*>(])", line)
    return [c for c in out if c]


def directional_claims(text: str) -> list[tuple[str, str, tuple[float, float] | None]]:
    """(word, context, the interval that follows it or None) for every directional claim in text."""
    found = []
    for chunk in _chunks(text):
        words = list(CLAIM.finditer(chunk))
        for k, m in enumerate(words):
            before, after = chunk[:m.start()], chunk[m.end():]
            if NOT_A_CLAIM.search(before[-80:]) or NOT_A_CLAIM_AFTER.match(after):
                continue
            end = words[k + 1].start() if k + 1 < len(words) else len(chunk)
            span = chunk[m.end():end]
            ci = INTERVAL.search(span)
            found.append((m.group(1), chunk[max(0, m.start() - 60):end][:300],
                          (_num(ci.group(1)), _num(ci.group(2))) if ci else None))
    return found


def _excludes_zero(word: str, lo: float, hi: float, text: str = "") -> bool:
    if word in ("sooner", "faster", "slower"):  # differences of trials-to-target: either sign may be quoted
        return lo > 0 or hi < 0
    return (lo > 0) if word in POSITIVE else (hi < 0)


def test_the_parser_catches_the_old_contradictions():
    """The checker itself, on sentences of the kind the samples printed before: it must fail them."""
    old = [
        "The search was easier with BN than without BN (test over 13 quality levels, p < 0.001). Of the 99 "
        "configurations, 54 (55%) reach within 3.89 pts: difference +8 pts (95% CI -3 to +20).",
        "bn-on vs bn-off by epoch budget: after 2 epochs easier (+6 pts (95% CI −3 to +17) at the declared δ; p = 0.004)",
        "| r:ISLR/OJ | standardize | 99 | 79% | 66% | 21 | 8 | +13.1 | -1.4 to +27.7 | 0.00825 | easier |",
    ]
    for text in old:
        claims = directional_claims(text)
        assert claims and not all(ci is not None and _excludes_zero(w, *ci) for w, _, ci in claims), text
    good = ("The search was easier with BN than without BN: of the 99 configurations, 72% reach a score of at "
            "least 0.897 with BN and 40% without BN: +31 pts (95% CI +18 to +46, simultaneous; p < 0.001). "
            "The data cannot tell whether the search is easier with BN than without BN (p = 0.2).")
    claims = directional_claims(good)
    assert len(claims) == 1 and claims[0][2] == (18.0, 46.0)


@pytest.mark.parametrize("report", REPORTS, ids=[p.parent.name for p in REPORTS])
def test_every_direction_in_a_report_quotes_an_interval_that_excludes_0(report):
    text = report.read_text(encoding="utf-8")
    claims = directional_claims(text)
    bad = [(w, ctx) for w, ctx, ci in claims if ci is None or not _excludes_zero(w, *ci)]
    assert not bad, "\n".join(f"{w}: {ctx}" for w, ctx in bad)
    assert not re.search(r"[\-−]0(\.0+)?(?![\d.])", text), re.search(r".{40}[\-−]0(\.0+)?(?![\d.]).{20}", text)
    assert "+-" not in text


def test_every_sample_report_has_its_answer_line():
    for report in REPORTS:
        text = report.read_text(encoding="utf-8")
        if text.startswith("# Panel "):  # a panel's page: its pooled paragraph is the answer
            continue
        assert "**Answer:**" in text, report


def _direction_rows(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame[frame[column].astype(str).isin(["easier", "harder"])]


@pytest.mark.parametrize("csv", sorted(SAMPLES.glob("*/summary.csv")), ids=lambda p: p.parent.name)
def test_summary_csv_outcome_carries_its_level(csv):
    frame = pd.read_csv(csv)
    rows = _direction_rows(frame, "outcome")
    if not len(rows):
        pytest.skip(f"{csv.parent.name}: no directional outcome")
    for _, r in rows.drop_duplicates(["treatment", "reference"]).iterrows():
        lo, hi = r["outcome_lo"], r["outcome_hi"]
        assert math.isfinite(lo) and math.isfinite(hi), r.to_dict()
        # adaptive samplers quote trials to the target: easier is fewer trials, a negative difference
        easier_sign = -1 if r["sampler"] in ("tpe", "gp") else 1
        sign = easier_sign if r["outcome"] == "easier" else -easier_sign
        assert (lo > 0) if sign > 0 else (hi < 0), r.to_dict()


@pytest.mark.parametrize("csv", sorted(SAMPLES.glob("*/budget.csv")), ids=lambda p: p.parent.name)
def test_budget_csv_directions_carry_their_level(csv):
    b = pd.read_csv(csv)
    directions = b[(b["metric"] == "direction") & (b["value"] != 0)]
    assert len(b[b["metric"] == "quoted_delta"]) == len(b[b["metric"] == "direction"])
    for _, d in directions.iterrows():
        q = b[(b["epochs"] == d["epochs"]) & (b["arm"] == d["arm"]) & (b["versus"] == d["versus"])
              & (b["metric"] == "quoted_delta")].iloc[0]
        assert (q["lo"] > 0) if d["value"] > 0 else (q["hi"] < 0), (d.to_dict(), q.to_dict())


def test_panel_csv_directions_carry_their_level():
    csv = SAMPLES / "panel" / "panel.csv"
    frame = pd.read_csv(csv)
    rows = _direction_rows(frame, "outcome")
    assert len(rows)
    for _, r in rows.iterrows():
        assert (r["focus_lo"] > 0) if r["outcome"] == "easier" else (r["focus_hi"] < 0), r.to_dict()


def test_no_negative_zero_in_any_csv():
    for csv in SAMPLES.glob("*/*.csv"):
        text = csv.read_text(encoding="utf-8")
        assert not re.search(r"(^|[,\s(\[])[\-−]0\.0+([,\s)\]]|$)", text, re.M), csv
