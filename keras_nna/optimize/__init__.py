"""Optimize to a budget (work in progress: see issue 13)."""

from keras_nna.optimize.budget import COSTS, Budget, CandidateCost, measure_cost

__all__ = ["Budget", "COSTS", "CandidateCost", "measure_cost"]
