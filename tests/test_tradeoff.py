"""Fig. 8's accuracy-vs-cost points and Pareto front (snn_lightning.tradeoff)."""
from __future__ import annotations

import math
from types import SimpleNamespace

from snn_lightning.sweeps.tradeoff import TradeoffPoint, pareto_front, plot_tradeoff, tradeoff_markdown, tradeoff_points


def _p(cost, acc, line="on"):
    return TradeoffPoint(setting={"w": str(cost), "mp_init": line}, line=line, acc=(acc, 0.1, 3), cost=(cost, 0.01, 3))


def test_pareto_front_by_hand():
    pts = [_p(0.10, 80), _p(0.05, 70), _p(0.12, 79), _p(0.05, 72), _p(0.20, 85), _p(0.20, 85), _p(math.nan, 99)]
    # (0.05, 72) beats (0.05, 70); (0.10, 80) beats (0.12, 79); equal points do not dominate each other
    assert pareto_front(pts) == [3, 0, 4, 5]


def test_tradeoff_points_mean_and_std_over_seeds():
    jobs = [SimpleNamespace(metrics={"test/acc": a, "test/fr_mean": f}) for a, f in ((0.8, 0.1), (0.9, 0.2))]
    (pt,) = tradeoff_points([({"mp_init": "on"}, jobs)], "mp_init", "test/acc", "test/fr_mean")
    assert pt.line == "on" and pt.acc[0] == 85.0 and pt.acc[2] == 2
    assert abs(pt.cost[0] - 0.15) < 1e-12
    assert abs(pt.acc[1] - math.sqrt(50)) < 1e-9


def test_plot_and_markdown(tmp_path):
    series = {"test/fr_mean": [_p(0.1, 80), _p(0.05, 75, "off"), _p(0.2, 82, "off")]}
    fig = plot_tradeoff(series, "mp_init", title="fig8")
    ax = fig.axes[0]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"mp_init=on", "mp_init=off", "Pareto front"}
    md = tradeoff_markdown(series, ["w", "mp_init"])
    assert md.count("| yes |") == 3 and "mean firing rate" in md
