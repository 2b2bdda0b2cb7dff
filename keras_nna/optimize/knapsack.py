"""Exact multiple-choice knapsack: one option per group, least total value, costs within limits.

Bit allocation (:mod:`keras_nna.optimize.bits`) is a multiple-choice knapsack
problem: every group (a layer's weights, a layer's activations) takes exactly
one option (a bit width); each option has a *value* (the measured loss increase
it causes) and a vector of *costs* (program bytes, energy, ... it adds); the sum
of values is minimized with every summed cost within its limit.

Two exact solvers:

* :func:`solve_dp` — dynamic programming over one integer cost (program bytes,
  events): ``O(groups · options · capacity)`` time, exact, needs only numpy.
* :func:`solve_milp` — ``scipy.optimize.milp`` (HiGHS branch and bound) with one
  binary variable per option: any number of costs, real-valued; exact up to the
  solver's optimality gap, which is set to 0.

:func:`solve` picks the DP when there is one integer cost and a small enough
capacity, else the MILP. Every solver returns the chosen option index per group.

Example:

>>> values = [[0.0, 0.5, 2.0], [0.0, 0.1]]          # loss increase per option
>>> costs = [[[8.0], [4.0], [1.0]], [[6.0], [3.0]]]  # one cost per option
>>> solve(values, costs, [10.0])
[1, 0]
>>> solve_dp(values, costs, 10)
[1, 0]
"""

import numpy as np

__all__ = ["InfeasibleBudget", "minimum_costs", "solve", "solve_dp", "solve_milp"]

_DP_MAX_CAPACITY = 2_000_000  # DP cells per group (int8 argmins: 2 MB a group)


class InfeasibleBudget(ValueError):
    """No choice of options fits the limits (even the cheapest one per group)."""


def _arrays(values, costs, limits):
    values = [np.asarray(v, np.float64) for v in values]
    costs = [np.asarray(c, np.float64).reshape(len(v), -1) for v, c in zip(values, costs)]
    limits = np.asarray(limits, np.float64).ravel()
    for g, (v, c) in enumerate(zip(values, costs)):
        if not len(v) or c.shape[1] != len(limits):
            raise ValueError(f"group {g}: expected ≥ 1 option with {len(limits)} costs each, "
                             f"received {len(v)} options with costs of shape {c.shape}")
    return values, costs, limits


def minimum_costs(costs):
    """The smallest achievable total of each cost (each minimized on its own).

    Example:

    >>> minimum_costs([[[8.0, 1.0], [4.0, 2.0]], [[6.0, 0.0]]]).tolist()
    [10.0, 1.0]
    """
    return np.sum([np.asarray(c, np.float64).reshape(len(c), -1).min(axis=0) for c in costs],
                  axis=0)


def _check_feasible(costs, limits, names=None, shown=None):
    low = minimum_costs(costs)
    shown_low = low if shown is None else low + shown
    shown_lim = limits if shown is None else limits + shown
    bad = [k for k in range(len(limits)) if low[k] > limits[k]]
    if bad:
        names = names or [f"cost {k}" for k in range(len(limits))]
        detail = ", ".join(f"{names[k]} is {shown_low[k]:,.6g} (limit {shown_lim[k]:,.6g})"
                           for k in bad)
        raise InfeasibleBudget(
            f"The budget is below the cheapest choice of bit widths: with the fewest bits everywhere, "
            f"{detail}. "
            "Raise the limit, allow fewer bits (e.g. 1-bit weights), or shrink the model first "
            "(keras_nna.optimize.shrink / remove_pruned_filters).")


def solve_dp(values, costs, capacity):
    """Exact DP over one non-negative integer cost.

    Args:
        values: Per group, the value of each option (minimized).
        costs: Per group, one integer cost per option (`[[c], ...]` or `[c, ...]`).
        capacity: The limit on the summed cost (an integer).

    Returns:
        The chosen option index per group.

    Raises:
        InfeasibleBudget: If no choice fits `capacity`.
        ValueError: On negative or non-integer costs, or a capacity above 2,000,000
            (use `solve_milp`).
    """
    values = [np.asarray(v, np.float64) for v in values]
    costs = [np.asarray(c, np.float64).reshape(len(v)) for v, c in zip(values, costs)]
    if max(len(v) for v in values) > 127:
        raise ValueError("solve_dp takes at most 127 options per group; use solve_milp.")
    if any(np.any(c < 0) or np.any(c != np.round(c)) for c in costs):
        raise ValueError("solve_dp needs non-negative integer costs; use solve_milp for others.")
    _check_feasible([c[:, None] for c in costs], [float(capacity)])
    shift = sum(int(c.min()) for c in costs)  # pay every group's cheapest option up front
    cap = int(capacity) - shift
    if cap > _DP_MAX_CAPACITY:
        raise ValueError(f"solve_dp capacity {cap:,} above {_DP_MAX_CAPACITY:,}; use solve_milp.")
    best = np.zeros(cap + 1)  # best[c]: least value with extra cost ≤ c
    picks = []
    for v, c in zip(values, costs):
        extra = (c - c.min()).astype(np.int64)
        cand = np.full((len(v), cap + 1), np.inf)
        for o in range(len(v)):
            if extra[o] <= cap:
                cand[o, extra[o]:] = best[: cap + 1 - extra[o]] + v[o]
        pick = np.argmin(cand, axis=0).astype(np.int8)
        best = cand[pick, np.arange(cap + 1)]
        picks.append((pick, extra))
    choice, c = [], cap
    for pick, extra in reversed(picks):
        o = int(pick[c])
        choice.append(o)
        c -= int(extra[o])
    return choice[::-1]


def solve_milp(values, costs, limits):
    """Exact MILP (`scipy.optimize.milp`) over any number of real costs.

    Args:
        values: Per group, the value of each option (minimized).
        costs: Per group, per option, a cost vector as long as `limits`.
        limits: The limit on each summed cost (`inf` for none).

    Returns:
        The chosen option index per group.

    Raises:
        InfeasibleBudget: If no choice fits the limits.
        ImportError: If scipy is not installed (`pip install "keras-nna[exact]"`).
    """
    values, costs, limits = _arrays(values, costs, limits)
    _check_feasible(costs, limits)
    try:
        from scipy.optimize import Bounds, LinearConstraint, milp
    except ImportError as err:  # pragma: no cover - exercised without scipy
        raise ImportError("solve_milp needs scipy: pip install 'keras-nna[exact]' (or scipy).") \
            from err
    sizes = [len(v) for v in values]
    n, starts = sum(sizes), np.cumsum([0] + sizes)
    one = np.zeros((len(values), n))
    for g, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
        one[g, a:b] = 1.0
    cons = [LinearConstraint(one, 1.0, 1.0)]
    finite = np.isfinite(limits)
    if finite.any():
        matrix = np.concatenate(costs, axis=0).T[finite]
        cons.append(LinearConstraint(matrix, -np.inf, limits[finite]))
    res = milp(np.concatenate(values), constraints=cons, integrality=np.ones(n),
               bounds=Bounds(0, 1), options={"mip_rel_gap": 0.0})
    if res.x is None:
        raise InfeasibleBudget(f"No choice of bit widths fits the limits ({res.message}).")
    x = np.round(res.x)
    return [int(np.argmax(x[a:b])) for a, b in zip(starts[:-1], starts[1:])]


def solve(values, costs, limits, names=None, offset=None):
    """Exact solve: DP for one integer cost with a small capacity, else MILP.

    Args:
        values: Per group, the value of each option (minimized).
        costs: Per group, per option, a cost vector as long as `limits` (may be
            negative: a change relative to a reference).
        limits: The limit on each summed cost (`inf` for none).
        names: Optional cost names, used in the error message. Defaults to `None`.
        offset: Optional cost vector added to every total (the reference's
            costs when `costs` are changes). Defaults to `None` (zeros).

    Returns:
        The chosen option index per group.

    Raises:
        InfeasibleBudget: If even the cheapest choice exceeds a limit; the message
            shows that cheapest total.

    Example:

    >>> solve([[0.0, 3.0]], [[[20.0], [-5.0]]], [108.0], names=["bytes"], offset=[100.0])
    [1]
    """
    values, costs, limits = _arrays(values, costs, limits)
    offset = np.zeros(len(limits)) if offset is None else np.asarray(offset, np.float64).ravel()
    lows = [c.min(axis=0) for c in costs]
    costs = [c - low for c, low in zip(costs, lows)]  # every option ≥ 0: its group's cheapest is 0
    floor = offset + np.sum(lows, axis=0)  # the cheapest total
    _check_feasible([np.zeros((1, len(limits)))], limits - floor, names, floor)
    limits = limits - floor
    finite = np.isfinite(limits)
    if not finite.any():  # no limit: the least value of each group
        return [int(np.argmin(v)) for v in values]
    if finite.sum() == 1:
        k = int(np.flatnonzero(finite)[0])
        if (limits[k] <= _DP_MAX_CAPACITY
                and all(np.all(c[:, k] == np.round(c[:, k])) for c in costs)):
            return solve_dp(values, [c[:, k] for c in costs], int(np.floor(limits[k])))
    return solve_milp(values, costs, limits)
