"""Cost model: time, memory traffic and energy of a program on an NNA.

The emulator counts what an event-based engine does per image and per layer
(`docs/bytecode.md`, "Statistics"). This module turns those counts into
estimates for a hardware configuration (a `HardwareProfile`):

    report = cost_report(program, images, profile="nna-1core")  # runs the emulator
    report = estimate_cost(program, stats, "nna-8core")        # or: stats you have
    print(report.table())            # one row per layer + totals
    report.total["time_s"], report.total["energy_j"]
    report.save("cost.json")         # or report.to_json() / report.to_markdown()

**Profiles.** `"nna-1core"` (1 MB on-chip memory, 12 GB/s external bandwidth)
and `"nna-8core"` (88 MB, 115 GB/s) are the two accelerator configurations of
Imagination's Series4 QAT study ("Efficient inference on IMG Series4 NNAs",
2023), the only figures that article gives. Clock, throughput, energies and
static power are stated assumptions (see `HardwareProfile`); override any of
them: `get_profile("nna-1core").replace(clock_hz=500e6)` or
`get_profile({"base": "nna-8core", "static_power_w": 0.2})`.

**Rules, per inference** (statistics are averaged over the batch axis):

- *Residency*: weights stay on-chip when all constants plus the largest
  activation pair of one layer (dense input + output bytes) fit
  `sram_bytes`; otherwise all constants are re-read from DRAM every inference.
- *DRAM bytes*: constants when not resident; the input image and the program
  output; input and output of any layer whose pair alone exceeds
  `sram_bytes`. Activations move as `min(dense, sparse)` bytes (raw outputs:
  32 bits a value). *On-chip bytes*: each layer's constants, input, output.
- *Time*: `compute = (synops / synops_per_cycle_per_core + events_in ·
  event_overhead_cycles) / cores / clock_hz`, `memory = dram_bytes /
  dram_bandwidth_bytes_per_s`; a layer takes the max (they overlap), the
  program the sum.
- *Energy*: `synops · energy_per_synop_j + on_chip_bytes · energy_per_sram_byte_j
  + dram_bytes · energy_per_dram_byte_j + static_power_w · time`.

Absolute numbers are estimates to compare models on a profile, not measurements.
"""

import dataclasses
import json
import math

import numpy as np

from keras_nna.export.format import STAT_NAMES

__all__ = [
    "CostReport",
    "HardwareProfile",
    "PROFILES",
    "cost_report",
    "estimate_cost",
    "get_profile",
]

MB = 1 << 20


@dataclasses.dataclass(frozen=True)
class HardwareProfile:
    """Constants of one accelerator configuration (all overridable).

    Defaults are those of `"nna-1core"`. Source of each constant: [S] the
    Series4 article of the seeds (1 MB / 12 GB/s single core; 88 MB /
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


def _dense_bytes(shape, bits):
    return -(-int(np.prod(shape)) * bits // 8)


def _act_bytes(shape, bits, events):
    """Bytes to move an activation: min(dense, sparse) as in the statistics."""
    return min(float(_dense_bytes(shape, bits)), math.ceil(events * (bits + 16) / 8))


def estimate_cost(program, stats, profile="nna-1core"):
    """Estimates time, traffic and energy of one inference from statistics.

    Args:
        program: A `keras_nna.export.Program`, its bytecode or a path to it.
        stats: int array `[N, n_layers, 6]` (or `[n_layers, 6]`) from
            `Emulator.run_with_stats` or `run_reference`; averaged over `N`.
        profile: Profile name, `HardwareProfile` or `dict` (`get_profile`).
            Defaults to `"nna-1core"`.

    Returns:
        A `CostReport`.

    Raises:
        ValueError: If `stats` does not match the program, or for an
            unknown profile.

    Example:

    >>> from keras_nna.export import LayerRecord, Program, run_reference
    >>> rec = LayerRecord(kind="dense", in_shape=(1, 1, 3), out_shape=(1, 1, 2), in_bits=8,
    ...                   out_bits=0, w_bits=4, weights=np.array([[1, -7], [0, 0], [3, 2]]),
    ...                   m=np.array([1, 1]), n=np.array([0, 0]), sh=np.array([1, 1]))
    >>> program = Program((1, 1, 3), 8, [rec])
    >>> _, stats = run_reference(program, np.array([[[[2, 9, 0]]]], np.uint8))
    >>> report = estimate_cost(program, stats, "nna-1core")
    >>> report.total["synops"], report.total["dram_bytes"], report.total["weights_resident"]
    (2.0, 11.0, True)
    """
    program = _as_program(program)
    p = get_profile(profile)
    stats = np.asarray(stats)
    stats = stats[None] if stats.ndim == 2 else stats
    n_layers = len(program.layers)
    width = len(STAT_NAMES)
    if stats.ndim != 3 or stats.shape[1:] != (n_layers, width) or stats.shape[0] < 1:
        raise ValueError(f"Expected statistics of shape (N, {n_layers}, {width}) for this "
                         f"{n_layers}-layer program, received {stats.shape}. Pass the "
                         "stats returned by run_with_stats / run_reference for this program.")
    mean = stats.astype(np.float64).mean(axis=0)
    pairs = [_dense_bytes(r.in_shape, r.in_bits) + _dense_bytes(r.out_shape, r.out_bits or 32)
             for r in program.layers]
    resident = float(mean[:, STAT_NAMES.index("weight_bytes")].sum()) + max(pairs) <= p.sram_bytes
    layers = []
    for i, rec in enumerate(program.layers):
        # in the order of STAT_NAMES
        events_in, synops, macs, wbytes, act_in, events_out = (float(v) for v in mean[i])
        act_out = _act_bytes(rec.out_shape, rec.out_bits or 32, events_out)
        spill = pairs[i] > p.sram_bytes
        dram = (0.0 if resident else wbytes)
        dram += act_in if (i == 0 or spill) else 0.0
        dram += act_out if (i == n_layers - 1 or spill) else 0.0
        onchip = wbytes + act_in + act_out
        cycles = synops / p.synops_per_cycle_per_core + events_in * p.event_overhead_cycles
        compute_s = cycles / p.cores / p.clock_hz
        memory_s = dram / p.dram_bandwidth_bytes_per_s
        time_s = max(compute_s, memory_s)
        layers.append(dict(
            name=rec.name or f"{rec.kind}_{i}", kind=rec.kind, output_shape=list(rec.out_shape),
            w_bits=f"{rec.w_bits}/{rec.w2_bits}" if rec.kind == "separable" else (rec.w_bits or ""),
            params=int(rec.n_weights), events_in=events_in, synops=synops, dense_macs=macs,
            sparsity_ratio=synops / macs if macs else None, weight_bytes=wbytes,
            act_bytes_in=act_in, act_bytes_out=act_out, events_out=events_out,
            onchip_bytes=onchip, dram_bytes=dram, act_spill=spill, compute_s=compute_s,
            memory_s=memory_s, time_s=time_s, bound="memory" if memory_s > compute_s else "compute",
            energy_j=(synops * p.energy_per_synop_j + onchip * p.energy_per_sram_byte_j
                      + dram * p.energy_per_dram_byte_j + p.static_power_w * time_s)))
    total = {key: float(sum(row[key] for row in layers)) for key in (
        "events_in", "synops", "dense_macs", "weight_bytes", "act_bytes_in", "onchip_bytes",
        "dram_bytes", "compute_s", "memory_s", "time_s", "energy_j")}
    total["params"] = int(sum(row["params"] for row in layers))
    total["sparsity_ratio"] = total["synops"] / total["dense_macs"] if total["dense_macs"] else None
    total["weights_resident"] = bool(resident)
    total["inferences_per_s"] = 1.0 / total["time_s"] if total["time_s"] > 0 else None
    return CostReport(profile=p, layers=layers, total=total, batch_size=int(stats.shape[0]))


def _as_program(program):
    from keras_nna.export.bytecode import load_program

    return load_program(program)


def _num(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


@dataclasses.dataclass
class CostReport:
    """Per-layer and total cost estimates of one inference.

    Attributes:
        profile: The `HardwareProfile` used.
        layers: One `dict` per layer: `name`, `kind`, `output_shape`,
            `w_bits`, `params`, `events_in`, `synops`, `dense_macs`,
            `sparsity_ratio` (synops / dense MACs, `None` without MACs),
            `weight_bytes`, `act_bytes_in`, `act_bytes_out`, `events_out`,
            `onchip_bytes`, `dram_bytes`, `act_spill`, `compute_s`,
            `memory_s`, `time_s`, `bound`, `energy_j`.
        total: Sums of the numeric columns plus `params`,
            `sparsity_ratio`, `weights_resident`, `inferences_per_s`.
        batch_size: Images the statistics were averaged over.

    Example:

    >>> from keras_nna.export import LayerRecord, Program
    >>> report = estimate_cost(Program((2, 2, 1), 8, [LayerRecord(
    ...     "maxpool", (2, 2, 1), (1, 1, 1), 8, 8, pool=(2, 2), strides=(2, 2))]),
    ...     [[4, 4, 0, 0, 4, 1]])
    >>> CostReport.from_json(report.to_json()).table().splitlines()[5].split()[:3]
    ['Total', '0', '4']
    """

    profile: HardwareProfile
    layers: list
    total: dict
    batch_size: int = 1

    def to_dict(self):
        """Returns the report as a JSON-compatible `dict`."""
        return {"profile": self.profile.to_dict(), "batch_size": self.batch_size,
                "layers": self.layers, "total": self.total}

    @classmethod
    def from_dict(cls, data):
        """Inverse of `to_dict`."""
        return cls(HardwareProfile.from_dict(data["profile"]), list(data["layers"]),
                   dict(data["total"]), int(data.get("batch_size", 1)))

    def to_json(self, indent=2):
        """Returns the report as a JSON string (see `from_json`)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text):
        """Parses `to_json` output back into a `CostReport`."""
        return cls.from_dict(json.loads(text))

    def save(self, path):
        """Writes `to_json()` to `path`."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    def _rows(self):
        total = dict(self.total, name="Total", kind="", output_shape=[], w_bits="")
        return [[str(r["name"]), r["kind"], "x".join(map(str, r["output_shape"])),
                 str(r["w_bits"]), *(_num(r[k]) for k in ("params", "events_in", "synops",
                                                          "dense_macs")),
                 "-" if r["sparsity_ratio"] is None else f"{100 * (1 - r['sparsity_ratio']):.1f}%",
                 _num(r["onchip_bytes"]), _num(r["dram_bytes"]), _num(r["time_s"] * 1e6, 3),
                 _num(r["energy_j"] * 1e6, 3)] for r in self.layers + [total]]

    _HEADERS = ["Layer", "Kind", "Output", "W bits", "Params", "Events in", "Synops",
                "Dense MACs", "Saved", "Bytes", "DRAM B", "Time us", "Energy uJ"]

    def _footer(self):
        t, ips = self.total, self.total["inferences_per_s"]
        return [f"Profile {self.profile.name}: {self.profile.cores} core(s), "
                f"{self.profile.sram_bytes / MB:g} MB on-chip, "
                f"{self.profile.dram_bandwidth_bytes_per_s / 1e9:g} GB/s; averaged over "
                f"{self.batch_size} image(s).",
                f"Weights {'on-chip' if t['weights_resident'] else 're-read from DRAM'}; "
                f"{_num(ips) if ips else '-'} inferences/s; Bytes = on-chip traffic."]

    def table(self):
        """Returns a fixed-width text table: one row per layer, totals, notes."""
        rows = self._rows()
        widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(self._HEADERS)]

        def line(cells):
            return "  ".join(c.ljust(w) if j < 4 else c.rjust(w)
                             for j, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "-" * len(line(self._HEADERS))
        body = [line(r) for r in rows[:-1]]
        return "\n".join([rule, line(self._HEADERS), rule, *body, rule, line(rows[-1]), rule,
                          *self._footer()])

    def to_markdown(self):
        """Returns the table as a Markdown pipe table (totals in bold)."""
        rows = self._rows()
        rows[-1] = [f"**{c}**" if c else c for c in rows[-1]]
        out = ["| " + " | ".join(self._HEADERS) + " |",
               "|" + "|".join(["---"] * 4 + ["---:"] * (len(self._HEADERS) - 4)) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out + [""] + self._footer())

    def __str__(self):
        return self.table()


def cost_report(program, images, profile="nna-1core", executor=None):
    """Runs a program on images and estimates its cost per inference.

    Args:
        program: A `keras_nna.export.Program`, its bytecode, or a path to a
            bytecode file.
        images: uint8 batch `[N, H, W, C]` (a single `[H, W, C]` image is
            accepted).
        profile: Profile name, `HardwareProfile` or `dict`. Defaults to
            `"nna-1core"`.
        executor: `"emulator"` (the compiled op), `"reference"` (numpy
            `run_reference`), or `None`/`"auto"`: the emulator, falling back
            to the reference when the op cannot be loaded. Defaults to `None`.

    Returns:
        A `CostReport`.

    Raises:
        ValueError: For an unknown executor or profile, or images that do not
            match the program.
        RuntimeError: With `executor="emulator"` when the op cannot be loaded.

    Example:

    >>> from keras_nna.export import LayerRecord, Program
    >>> rec = LayerRecord(kind="maxpool", in_shape=(2, 2, 1), out_shape=(1, 1, 1), in_bits=8,
    ...                   out_bits=8, pool=(2, 2), strides=(2, 2))
    >>> images = np.array([[[[0], [3]], [[0], [0]]]], np.uint8)
    >>> cost_report(Program((2, 2, 1), 8, [rec]), images, executor="reference").total["synops"]
    1.0
    """
    if executor not in (None, "auto", "emulator", "reference"):
        raise ValueError(f"executor must be 'emulator', 'reference', 'auto' or None. "
                         f"Received: executor={executor!r}.")
    get_profile(profile)  # fail fast on a bad profile, before running anything
    program = _as_program(program)
    from keras_nna.runtime.emulator import run_program

    stats = run_program(program, images, executor or "auto")[1]
    return estimate_cost(program, stats, profile)
