"""Budgets: what a model may cost per inference on a hardware profile.

A :class:`Budget` names a hardware profile and a limit on any of five costs per
inference:

========================  ==========================================================
``energy_uj``             estimated energy, microjoules
``time_us``               estimated time, microseconds
``events``                non-zero activation codes sent (input pixels included)
``dram_bytes``            external memory traffic, bytes
``program_bytes``         size of the exported bytecode, bytes
========================  ==========================================================

The cost of a candidate always comes from the real pipeline: the quantized
model is exported, the program runs on the emulator over calibration images
(so activation sparsity counts), and the cost model prices its statistics
(:func:`measure_cost`). A candidate over any limit is infeasible; there is no
tolerance.

Example:

>>> budget = Budget("nna-1core", energy_uj=1.5, events=4000)
>>> budget.limits
{'energy_uj': 1.5, 'events': 4000.0}
>>> {k: round(v, 6) for k, v in budget.violations(
...     {"energy_uj": 1.2, "events": 5000.0, "time_us": 9.0}).items()}
{'energy_uj': -0.2, 'events': 0.25}
>>> budget.feasible({"energy_uj": 1.2, "events": 5000.0})
False
>>> Budget.parse(["energy_uj=1.5"], profile="nna-8core")
Budget(profile='nna-8core', energy_uj=1.5)
"""

import dataclasses

from keras_nna._checks import check_number

__all__ = ["Budget", "COSTS", "CandidateCost", "measure_cost"]

# Cost name -> (what it is, unit, factor from the cost model's SI value).
COSTS = {
    "energy_uj": ("energy per inference", "µJ", 1e6),
    "time_us": ("time per inference", "µs", 1e6),
    "events": ("events per inference", "events", 1.0),
    "dram_bytes": ("external memory traffic per inference", "bytes", 1.0),
    "program_bytes": ("program size", "bytes", 1.0),
}


@dataclasses.dataclass(frozen=True, init=False)
class Budget:
    """A hardware profile and limits on the cost of one inference.

    Args:
        profile: Profile name (`"nna-1core"`, `"nna-8core"`), a
            `keras_nna.runtime.HardwareProfile` or a `dict` for
            `keras_nna.runtime.get_profile`. Defaults to `"nna-1core"`.
        **limits: One or more of `energy_uj`, `time_us`, `events`, `dram_bytes`,
            `program_bytes` (see the module docstring), each a finite number > 0.
            No limit at all is allowed (every candidate is feasible), so a
            search can map a whole trade-off line.

    Raises:
        ValueError: For an unknown profile or cost name, or a limit that is not
            a finite number > 0.

    Example:

    >>> Budget(time_us=20).limits
    {'time_us': 20.0}
    """

    profile: object
    limits: dict

    def __init__(self, profile="nna-1core", **limits):
        from keras_nna.runtime.profiles import get_profile

        get_profile(profile)  # fails now, with the profile's own message
        unknown = sorted(set(limits) - set(COSTS))
        if unknown:
            raise ValueError(f"Unknown budget cost {unknown[0]!r}. Expected one of "
                             f"{', '.join(COSTS)} (per inference), e.g. Budget('nna-1core', "
                             "energy_uj=1.5).")
        checked = {}
        for name in COSTS:  # a fixed order, whatever order the caller used
            if limits.get(name) is not None:
                checked[name] = check_number(name, limits[name], low=0.0, low_open=True,
                                             fix=f"A budget limits {COSTS[name][0]} in "
                                                 f"{COSTS[name][1]}.")
        object.__setattr__(self, "profile", profile)
        object.__setattr__(self, "limits", checked)

    @classmethod
    def parse(cls, items, profile="nna-1core"):
        """Builds a budget from `NAME=VALUE` strings (the CLI's `--budget`).

        Args:
            items: Iterable of strings such as `"energy_uj=1.5"`.
            profile: As for the constructor. Defaults to `"nna-1core"`.

        Returns:
            A `Budget`.

        Raises:
            ValueError: For a malformed item, an unknown name or a bad value.
        """
        limits = {}
        for item in items:
            name, sep, value = str(item).partition("=")
            try:
                number = float(value)
            except ValueError:
                number = None
            if not sep or number is None:
                raise ValueError(f"Expected a budget as NAME=VALUE with NAME one of "
                                 f"{', '.join(COSTS)}, e.g. energy_uj=1.5. Received: {item!r}.")
            limits[name.strip()] = number
        return cls(profile, **limits)

    def profile_name(self):
        """The profile's name (a custom profile's `name` field)."""
        from keras_nna.runtime.profiles import get_profile

        return self.profile if isinstance(self.profile, str) else get_profile(self.profile).name

    def violations(self, costs):
        """Relative excess of each limited cost: `cost / limit - 1` (> 0 is over).

        Args:
            costs: Mapping with (at least) the limited cost names.

        Returns:
            Dict cost name → relative excess (not rounded: a cost a hair over its
            limit has a positive excess, as `feasible` says).

        Raises:
            KeyError: If `costs` lacks a limited cost.
        """
        return {k: float(costs[k]) / v - 1.0 for k, v in self.limits.items()}

    def feasible(self, costs):
        """Whether `costs` meet every limit (no tolerance)."""
        return all(float(costs[k]) <= v for k, v in self.limits.items())

    def to_dict(self):
        """JSON-compatible `{"profile": ..., **limits}` (inverse: `Budget(**d)`)."""
        from keras_nna.runtime.profiles import HardwareProfile

        profile = self.profile.to_dict() if isinstance(self.profile, HardwareProfile) else self.profile
        return {"profile": profile, **self.limits}

    def describe(self):
        """One line for people, e.g. `energy ≤ 1.5 µJ on nna-1core`."""
        parts = [f"{COSTS[k][0].split(' per ')[0]} ≤ {v:g} {COSTS[k][1]}"
                 for k, v in self.limits.items()]
        return f"{' and '.join(parts) or 'no limit'} on {self.profile_name()}"

    def __repr__(self):
        limits = "".join(f", {k}={v!r}" for k, v in self.limits.items())
        return f"Budget(profile={self.profile_name()!r}{limits})"


@dataclasses.dataclass
class CandidateCost:
    """What one candidate costs and scores, measured through the real pipeline.

    Attributes:
        costs: Dict cost name (see `COSTS`) → value per inference.
        accuracy: Emulator top-1 accuracy on the labelled images, or `None`.
        bit_exact: Whether the emulator output equals the Keras quantized model's.
        program: The exported `keras_nna.export.Program`.
        images: Number of images the emulator ran.
    """

    costs: dict
    accuracy: object
    bit_exact: bool
    program: object
    images: int

    def to_dict(self):
        """JSON-compatible scalars (the program is left out)."""
        return {"costs": dict(self.costs), "accuracy": self.accuracy,
                "bit_exact": self.bit_exact, "images": self.images}


def measure_cost(qmodel, images, labels=None, profile="nna-1core", max_images=None):
    """Exports a quantized model, runs it on the emulator and prices it.

    Args:
        qmodel: A model returned by `keras_nna.quantization.quantize_model`.
        images: uint8 calibration images `[N, H, W, C]`.
        labels: Optional integer labels (for the emulator's accuracy). Defaults to `None`.
        profile: A profile (as for `Budget`) or a `Budget` (its profile). Defaults
            to `"nna-1core"`.
        max_images: Use only the first `max_images` images. Defaults to `None`.

    Returns:
        A :class:`CandidateCost` with all five costs.

    Raises:
        keras_nna.export.ExportError: If the model cannot be exported.

    Example:

    >>> import numpy as np, keras
    >>> from keras_nna.quantization import quantize_model
    >>> q = quantize_model(keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
    ...                                      keras.layers.Dense(2)]))
    >>> c = measure_cost(q, np.full((2, 4, 4, 1), 7, np.uint8))
    >>> c.costs["events"], c.bit_exact, sorted(c.costs)
    (32.0, True, ['dram_bytes', 'energy_uj', 'events', 'program_bytes', 'time_us'])
    """
    from keras_nna.deployment import deploy

    if isinstance(profile, Budget):
        profile = profile.profile
    result = deploy(qmodel, images, labels, profile=profile, max_images=max_images)
    total = result.cost.total
    costs = {"energy_uj": total["energy_j"] * 1e6, "time_us": total["time_s"] * 1e6,
             "events": float(result.events_per_image), "dram_bytes": float(total["dram_bytes"]),
             "program_bytes": float(result.program_bytes)}
    return CandidateCost(costs=costs, accuracy=result.accuracy, bit_exact=result.bit_exact,
                         program=result.program, images=result.images)
