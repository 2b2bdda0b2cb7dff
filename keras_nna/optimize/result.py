"""Results of a search: the points, their Pareto front and the best within a budget.

An :class:`OptimizeResult` holds every finished candidate of a study as a
:class:`Point` (recipe, accuracy, every cost, whether it met the budget, where
its model and program were saved). Read it as:

- ``result.front()``: the Pareto front (accuracy up, the objective cost down),
  cheapest first;
- ``result.best_within(budget)``: the most accurate point meeting a budget
  (the search's own by default), or `None`; ``result.cheapest()`` otherwise;
- ``result.table()`` (markdown) or ``result.to_dict()`` / ``result.save(path)``
  (JSON); ``OptimizeResult.load(path)`` reads it back;
- ``result.plot(path)``: accuracy vs cost, front highlighted, budget line.

Example:

>>> from keras_nna.optimize import Budget
>>> pts = [Point({"width": w}, a, {"events": e}, e <= 3000) for w, a, e in
...        [(0.5, 0.80, 1000.0), (1.0, 0.90, 2500.0), (1.5, 0.88, 2600.0), (2.0, 0.93, 5000.0)]]
>>> r = OptimizeResult(pts, Budget(events=3000), "events")
>>> [p.recipe["width"] for p in r.front()]
[0.5, 1.0, 2.0]
>>> r.best_within().accuracy, r.best_within(Budget(events=900))
(0.9, None)
>>> r.cheapest().costs["events"]
1000.0
"""

import dataclasses
import json

from keras_nna.optimize.budget import COSTS, Budget

__all__ = ["OptimizeResult", "Point"]


@dataclasses.dataclass
class Point:
    """One finished candidate.

    Attributes:
        recipe: The recipe's knobs (`Recipe.to_dict()`).
        accuracy: Emulator top-1 accuracy on the validation images.
        costs: Cost name → value per inference (`keras_nna.optimize.COSTS`).
        feasible: Whether the costs met the search's budget.
        bit_exact: Emulator output equal to the Keras quantized model's.
            Defaults to `True` (a search never reports another).
        params: Parameters of the quantized model. Defaults to `0`.
        model_path: Saved quantized `.keras` model. Defaults to `""`.
        program_path: Saved bytecode. Defaults to `""`.
        seconds: Training and measuring time. Defaults to `0.0`.
        number: Optuna trial number (`-1` outside a study). Defaults to `-1`.
    """

    recipe: dict
    accuracy: float
    costs: dict
    feasible: bool
    bit_exact: bool = True
    params: int = 0
    model_path: str = ""
    program_path: str = ""
    seconds: float = 0.0
    number: int = -1

    def to_attrs(self):
        """JSON-native `dict` of every field."""
        return dataclasses.asdict(self)

    def dominates(self, other, objective):
        """At least as accurate and as cheap in `objective`, and better in one."""
        a, b = (self.accuracy, -self.costs[objective]), (other.accuracy, -other.costs[objective])
        return a[0] >= b[0] and a[1] >= b[1] and a != b


class OptimizeResult:
    """The finished points of a search, with its budget and objective.

    Args:
        points: List of :class:`Point`.
        budget: The search's :class:`~keras_nna.optimize.Budget`.
        objective: The cost the search minimised (a `COSTS` name).
        failed: Failed trials as `{"number": n, "error": "..."}`. Defaults to `()`.
        out_dir: Where models and programs were saved. Defaults to `""`.
    """

    def __init__(self, points, budget, objective, failed=(), out_dir=""):
        self.points = list(points)
        self.budget = budget
        self.objective = objective
        self.failed = list(failed)
        self.out_dir = out_dir

    @classmethod
    def from_study(cls, study, budget, objective, out_dir=""):
        """Builds the result from an Optuna study run by `optimize`."""
        from keras_nna.optimize.study import trial_records

        points, failed = [], []
        fields = {f.name for f in dataclasses.fields(Point)}
        for rec in trial_records(study):
            attrs = rec.get("user_attrs", {})
            if rec["state"] == "COMPLETE" and "recipe" in attrs:
                point = Point(**{k: v for k, v in attrs.items() if k in fields})
                point.number = rec["number"]
                point.feasible = budget.feasible(point.costs)
                points.append(point)
            elif rec["state"] == "FAIL":
                failed.append({"number": rec["number"], "error": attrs.get("error", "unknown")})
        return cls(points, budget, objective, failed, out_dir)

    def front(self, objective=None):
        """Points no other point dominates (accuracy vs `objective`), cheapest first."""
        objective = objective or self.objective
        front = [p for p in self.points if not any(q.dominates(p, objective) for q in self.points)]
        return sorted(front, key=lambda p: (p.costs[objective], -p.accuracy))

    def best_within(self, budget=None):
        """The most accurate point meeting `budget` (default: the search's), or `None`."""
        budget = self.budget if budget is None else budget
        ok = [p for p in self.points if budget.feasible(p.costs)]
        return max(ok, key=lambda p: (p.accuracy, -p.costs[self.objective]), default=None)

    def cheapest(self, objective=None):
        """The point with the lowest `objective` cost, or `None` without points."""
        objective = objective or self.objective
        return min(self.points, key=lambda p: (p.costs[objective], -p.accuracy), default=None)

    def summary(self):
        """One paragraph: the best point within the budget, or why there is none."""
        best = self.best_within()
        head = (f"{len(self.points)} candidates ({len(self.failed)} failed), budget: "
                f"{self.budget.describe()}.")
        if best is not None:
            return f"{head} Best within budget: trial {best.number}, {_describe(best)}."
        cheap = self.cheapest()
        if cheap is None:
            first = f" The first error: {self.failed[0]['error']}" if self.failed else ""
            return f"{head} No candidate finished.{first}"
        return (f"{head} No candidate met the budget; the cheapest found: trial {cheap.number}, "
                f"{_describe(cheap)} (over by "
                f"{', '.join(f'{k} {v:+.1%}' for k, v in self.budget.violations(cheap.costs).items() if v > 0)}"
                "). Loosen the budget, widen the search space or run more trials.")

    def table(self, points=None):
        """A markdown table of `points` (default: every point, front marked with *)."""
        points = self.points if points is None else points
        front = {id(p) for p in self.front()}
        cols = [k for k in COSTS if any(k in p.costs for p in points)]
        head = ("| trial | front | feasible | accuracy | " + " | ".join(
            f"{k} ({COSTS[k][1]})" for k in cols) + " | recipe |")
        lines = [head, "|" + "---|" * (5 + len(cols))]
        for p in sorted(points, key=lambda p: p.costs[self.objective]):
            recipe = ", ".join(f"{k}={_fmt(v)}" for k, v in p.recipe.items())
            lines.append(f"| {p.number} | {'*' if id(p) in front else ''} | "
                         f"{'yes' if p.feasible else 'no'} | {p.accuracy:.4f} | " + " | ".join(
                             _fmt(p.costs.get(k, "")) for k in cols) + f" | {recipe} |")
        return "\n".join(lines)

    def to_dict(self):
        """JSON-native `dict` (inverse: :meth:`from_dict`)."""
        best = self.best_within()
        return {"budget": self.budget.to_dict(), "objective": self.objective,
                "out_dir": self.out_dir, "summary": self.summary(),
                "best_within_budget": None if best is None else best.number,
                "front": [p.number for p in self.front()],
                "points": [p.to_attrs() for p in self.points], "failed": self.failed}

    @classmethod
    def from_dict(cls, config):
        """Rebuilds a result written by :meth:`to_dict`."""
        budget = dict(config["budget"])
        budget = Budget(budget.pop("profile"), **budget)
        return cls([Point(**p) for p in config["points"]], budget, config["objective"],
                   config.get("failed", ()), config.get("out_dir", ""))

    def save(self, path):
        """Writes :meth:`to_dict` as JSON to `path`."""
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def load(cls, path):
        """Reads a result saved by :meth:`save`."""
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def plot(self, path, objective=None, reference=None):
        """Saves a PNG: accuracy vs a cost, front highlighted, budget line.

        Args:
            path: PNG file to write.
            objective: The cost on the x axis. Defaults to the search's.
            reference: Optional `[(label, cost, accuracy), ...]` drawn as a
                dashed line (e.g. a hand-made trade-off line). Defaults to `None`.

        Returns:
            `path`.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        key = objective or self.objective
        what, unit, _ = COSTS[key]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for feasible, style in ((True, dict(c="tab:blue", marker="o", label="candidate within budget")),
                                (False, dict(c="tab:grey", marker="x", label="candidate over budget"))):
            pts = [p for p in self.points if p.feasible == feasible]
            ax.scatter([p.costs[key] for p in pts], [100 * p.accuracy for p in pts], **style)
        front = self.front(key)
        ax.plot([p.costs[key] for p in front], [100 * p.accuracy for p in front], "-",
                c="tab:orange", lw=2, label="Pareto front")
        if reference:
            ax.plot([r[1] for r in reference], [100 * r[2] for r in reference], "k--", marker="s",
                    lw=1, label="reference line")
        if key in self.budget.limits:
            ax.axvline(self.budget.limits[key], c="tab:red", ls=":",
                       label=f"budget {self.budget.limits[key]:g} {unit}")
        best = self.best_within()
        if best is not None:
            ax.scatter([best.costs[key]], [100 * best.accuracy], marker="*", s=250, c="gold",
                       edgecolors="k", zorder=5, label=f"best within budget (trial {best.number})")
        ax.set_xlabel(f"{what} ({unit}) on {self.budget.profile_name()}")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title("Accuracy vs cost of every candidate")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path


def _fmt(value):
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def _describe(p):
    costs = ", ".join(f"{k} {_fmt(v)}" for k, v in p.costs.items())
    return f"accuracy {p.accuracy:.4f}, {costs}"
