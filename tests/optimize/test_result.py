"""OptimizeResult: Pareto front (against brute force), best within a budget, reports."""

import json

import numpy as np
import pytest

from keras_nna.optimize import Budget, OptimizeResult, Point


def _points(seed, n=40):
    rng = np.random.default_rng(seed)
    acc = np.round(rng.uniform(0.5, 0.95, n), 3)   # rounded: ties happen
    events = np.round(rng.uniform(500, 5000, n), -2)
    energy = rng.uniform(0.5, 3.0, n)
    return [Point({"width": float(i)}, float(a), {"events": float(e), "energy_uj": float(u)},
                  feasible=bool(e <= 2500), number=i)
            for i, (a, e, u) in enumerate(zip(acc, events, energy))]


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_front_is_the_brute_force_pareto_set(seed):
    points = _points(seed)
    result = OptimizeResult(points, Budget(events=2500), "events")
    brute = [p for p in points if not any(
        q.accuracy >= p.accuracy and q.costs["events"] <= p.costs["events"]
        and (q.accuracy, q.costs["events"]) != (p.accuracy, p.costs["events"]) for q in points)]
    front = result.front()
    assert {p.number for p in front} == {p.number for p in brute}
    costs = [p.costs["events"] for p in front]
    assert costs == sorted(costs)
    assert [p.accuracy for p in front] == sorted(p.accuracy for p in front)  # cheaper = less accurate
    # The best within the budget is on the front and is the most accurate feasible point.
    best = result.best_within()
    assert best.accuracy == max(p.accuracy for p in points if p.costs["events"] <= 2500)
    assert best.number in {p.number for p in front}
    # Another objective gives another front.
    assert result.front("energy_uj") != front or len(front) == 1


def test_no_point_meets_the_budget_says_so_and_shows_the_cheapest():
    points = _points(0)
    result = OptimizeResult(points, Budget(events=100), "events")
    assert result.best_within() is None
    cheapest = result.cheapest()
    assert cheapest.costs["events"] == min(p.costs["events"] for p in points)
    text = result.summary()
    assert "No candidate met the budget" in text and f"trial {cheapest.number}" in text
    assert "events +" in text  # by how much it is over
    from keras_nna.optimize import refit

    with pytest.raises(ValueError, match="no candidate met the budget"):
        refit(result.best_within(), None, None, result.budget)


def test_json_round_trip_table_and_plot(tmp_path):
    result = OptimizeResult(_points(1), Budget("nna-8core", events=2500), "events",
                            failed=[{"number": 99, "error": "ExportError: x"}], out_dir="d")
    path = tmp_path / "r.json"
    result.save(path)
    data = json.loads(path.read_text())
    assert data["best_within_budget"] == result.best_within().number
    assert data["front"] == [p.number for p in result.front()]
    again = OptimizeResult.load(path)
    assert [p.to_attrs() for p in again.points] == [p.to_attrs() for p in result.points]
    assert again.budget.limits == result.budget.limits and again.failed == result.failed
    table = result.table()
    assert table.count("\n") == len(result.points) + 1
    assert table.count("| * |") == len(result.front())
    png = result.plot(str(tmp_path / "front.png"), reference=[("hand", 1000.0, 0.8)])
    assert (tmp_path / "front.png").stat().st_size > 10_000 and png.endswith("front.png")
