"""Hardware profiles: the accelerator configurations the cost model prices a program on.

`"nna-1core"` (1 MB on-chip memory, 12 GB/s external bandwidth)
and `"nna-8core"` (88 MB, 115 GB/s) are the two accelerator configurations of a
published study of quantization-aware training for NPUs ("Efficient inference
on IMG Series4 NNAs", 2023), the only figures it gives; keras_nna's NNA is its
own design and claims no compatibility with that or any vendor's chip.
Clock, throughput, energies and static power are stated assumptions (see `HardwareProfile`); override any of
them: `get_profile("nna-1core").replace(clock_hz=500e6)` or
`get_profile({"base": "nna-8core", "static_power_w": 0.2})`.

Example:

>>> get_profile("nna-8core").cores
8
"""

import dataclasses
import math

__all__ = ["HardwareProfile", "MB", "PROFILES", "get_profile"]

MB = 1 << 20


@dataclasses.dataclass(frozen=True)
class HardwareProfile:
    """Constants of one accelerator configuration (all overridable).

    Defaults are those of `"nna-1core"`. Source of each constant: [S] the
    published NPU study named above (1 MB / 12 GB/s single core; 88 MB /
    115 GB/s eight cores); [A] a stated assumption; [H] Horowitz, "Computing's
    energy problem", ISSCC 2014 (45 nm figures, conservative for newer nodes).

    Attributes:
        name: Profile name. Defaults to `"custom"`.
        cores: Parallel event engines; events and synops split evenly [S].
            Defaults to `1`.
        clock_hz: Engine clock [A: 1 GHz, typical of edge NPUs]. Defaults to
            `1e9`.
        synops_per_cycle_per_core: Synaptic operations (event x non-zero
            weight MACs, or pool window reads) one core retires per cycle
            [A: 256]. Defaults to `256`.
        event_overhead_cycles: Cycles one core spends per input event to
            decode its address and fetch its weight row, on top of its synops
            [A: 1]. Defaults to `1.0`.
        sram_bytes: On-chip memory, bytes [S: 1 MB = 2**20]. Defaults to
            `1048576`.
        dram_bandwidth_bytes_per_s: External bandwidth [S: 12 GB/s].
            Defaults to `12e9`.
        energy_per_synop_j: One synop, an 8-bit multiply (0.2 pJ) plus a
            32-bit add (0.1 pJ) [H]. Defaults to `0.3e-12`.
        energy_per_sram_byte_j: One byte read or written on-chip, banked
            32 KB SRAM, 20 pJ per 64-bit access [H]. Defaults to `2.5e-12`.
        energy_per_dram_byte_j: One byte of DRAM traffic, 1.3 nJ per 64-bit
            access [H]. Defaults to `160e-12`.
        static_power_w: Leakage and clock power while running, charged for
            the estimated time [A: 0.1 W per core]. Defaults to `0.1`.
        description: Free text. Defaults to `""`.

    Raises:
        ValueError: If a numeric constant is not positive (energies and
            static power may be 0), naming the field.

    Example:

    >>> p = HardwareProfile(name="half-clock", clock_hz=5e8)
    >>> p.replace(cores=2).cores, p.sram_bytes
    (2, 1048576)
    """

    name: str = "custom"
    cores: int = 1
    clock_hz: float = 1.0e9
    synops_per_cycle_per_core: float = 256.0
    event_overhead_cycles: float = 1.0
    sram_bytes: int = MB
    dram_bandwidth_bytes_per_s: float = 12.0e9
    energy_per_synop_j: float = 0.3e-12
    energy_per_sram_byte_j: float = 2.5e-12
    energy_per_dram_byte_j: float = 160.0e-12
    static_power_w: float = 0.1
    description: str = ""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            name, value = field.name, getattr(self, field.name)
            if name in ("name", "description"):
                ok, need = isinstance(value, str), "a string"
            elif name == "cores":
                ok, need = type(value) is int and value >= 1, "an integer >= 1"
            else:
                strict = name in ("clock_hz", "synops_per_cycle_per_core", "sram_bytes",
                                  "dram_bandwidth_bytes_per_s")
                ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                      and math.isfinite(value) and (value > 0 if strict else value >= 0))
                need = "a finite number " + ("> 0" if strict else ">= 0")
            if not ok:
                raise ValueError(f"HardwareProfile.{name} must be {need}. Received: "
                                 f"{name}={value!r}. Pass e.g. {name}={field.default!r}.")

    def replace(self, **changes):
        """Returns a copy with some constants changed.

        Args:
            **changes: Field names and their new values.

        Returns:
            A new `HardwareProfile`.

        Raises:
            ValueError: For an unknown field or an invalid value.

        Example:

        >>> get_profile("nna-8core").replace(clock_hz=8e8).clock_hz
        800000000.0
        """
        _check_keys(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """Returns `{field: value}`, JSON-compatible (inverse of `from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config):
        """Builds a profile from a `dict`; missing fields take the defaults.

        Args:
            config: `dict` of field names to values (e.g. `to_dict()` output).

        Returns:
            A `HardwareProfile`.

        Raises:
            ValueError: For an unknown field or an invalid value.

        Example:

        >>> HardwareProfile.from_dict(get_profile("nna-8core").to_dict()).cores
        8
        """
        _check_keys(config)
        return cls(**config)


def _check_keys(config):
    fields = [f.name for f in dataclasses.fields(HardwareProfile)]
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ValueError(f"Unknown HardwareProfile field(s) {unknown}. Expected some of: "
                         f"{', '.join(fields)}.")


PROFILES = {p.name: p for p in (
    HardwareProfile(name="nna-1core", description="Single core, 1 MB on-chip memory, 12 GB/s "
                    "external bandwidth (Series4 study)."),
    HardwareProfile(name="nna-8core", cores=8, sram_bytes=88 * MB,
                    dram_bandwidth_bytes_per_s=115.0e9, static_power_w=0.8,
                    description="Eight cores, 88 MB on-chip memory, 115 GB/s external "
                    "bandwidth (Series4 study)."),
)}
"""Registered profiles by name; add one with `PROFILES[profile.name] = profile`."""


def get_profile(profile):
    """Resolves a profile name, a `HardwareProfile` or a `dict`.

    Args:
        profile: A registered name (`"nna-1core"`, `"nna-8core"`, ...), a
            `HardwareProfile` (returned as is), or a `dict`: with a `"base"`
            key, that registered profile with the other keys overridden;
            otherwise `HardwareProfile.from_dict`.

    Returns:
        A `HardwareProfile`.

    Raises:
        ValueError: For an unknown name (the message lists valid names) or
            an unknown field.
        TypeError: For any other type.

    Example:

    >>> get_profile({"base": "nna-1core", "cores": 2}).cores
    2
    """
    if isinstance(profile, HardwareProfile):
        return profile
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"Unknown hardware profile {profile!r}. Expected one of: "
                             f"{', '.join(sorted(PROFILES))} (or a HardwareProfile / dict).")
        return PROFILES[profile]
    if isinstance(profile, dict):
        config = dict(profile)
        if "base" in config:
            return get_profile(config.pop("base")).replace(**config)
        return HardwareProfile.from_dict(config)
    raise TypeError("profile must be a registered name, a HardwareProfile or a dict. "
                    f"Received: {type(profile).__name__}.")
