"""Cost model: time, memory traffic and energy of a program on an NNA.

The emulator counts what an event-based engine does per image and per layer
(`docs/bytecode.md`, "Statistics"). This module turns those counts into
estimates for a hardware configuration (a `HardwareProfile`):

    report = cost_report(program, images, profile="nna-1core")  # runs the emulator
    report = estimate_cost(program, stats, "nna-8core")        # or: stats you have
    print(report.table())            # one row per layer + totals
    report.total["time_s"], report.total["energy_j"]
    report.save("cost.json")         # or report.to_json() / report.to_markdown()

**Profiles** (`keras_nna.runtime.profiles`): `"nna-1core"` and `"nna-8core"`, or
your own `HardwareProfile`; `get_profile(...)` resolves names and dicts.

**Rules, per inference** (statistics are averaged over the batch axis):

- *Residency*: weights stay on-chip when all constants plus the largest
  activation pair of one layer (dense input(s) + output bytes) plus the outputs
  held for a later residual Add fit `sram_bytes`; otherwise all constants are
  re-read from DRAM every inference.
- *DRAM bytes*: constants when not resident; the input image (read by every
  layer whose input is the image) and the program
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
from keras_nna.export.limits import held_bytes
from keras_nna.export.program import sources
from keras_nna.runtime.profiles import MB, PROFILES, HardwareProfile, get_profile

__all__ = [
    "CostReport",
    "HardwareProfile",  # re-exported from keras_nna.runtime.profiles
    "PROFILES",
    "cost_report",
    "estimate_cost",
    "get_profile",
]

def _dense_bytes(shape, bits):
    return -(-int(np.prod(shape)) * bits // 8)


def _act_bytes(shape, bits, events):
    """Bytes to move an activation: min(dense, sparse) as in the statistics."""
    return min(float(_dense_bytes(shape, bits)), math.ceil(events * (bits + 16) / 8))


def _pair_bytes(program, rec):
    """Dense bytes of a layer's inputs (both for ADD) and output: what must sit in SRAM at once."""
    total = _dense_bytes(rec.in_shape, rec.in_bits) + _dense_bytes(rec.out_shape, rec.out_bits or 32)
    if rec.kind == "add":
        src2 = getattr(rec, "src2", 0)
        bits2 = program.layers[src2 - 1].out_bits if src2 else program.input_bits
        total += _dense_bytes(rec.in_shape, bits2)
    return total


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
    held = held_bytes(program.layers)  # residual outputs kept for a later Add
    pairs = [_pair_bytes(program, r) for r in program.layers]
    reads_image = [0 in (pair if rec.kind == "add" else pair[:1])
                   for rec, pair in zip(program.layers, sources(program.layers))]
    resident = (float(mean[:, STAT_NAMES.index("weight_bytes")].sum()) + max(pairs) + held
                <= p.sram_bytes)
    layers = []
    for i, rec in enumerate(program.layers):
        # in the order of STAT_NAMES
        events_in, synops, macs, wbytes, act_in, events_out = (float(v) for v in mean[i])
        act_out = _act_bytes(rec.out_shape, rec.out_bits or 32, events_out)
        spill = pairs[i] > p.sram_bytes
        dram = (0.0 if resident else wbytes)
        dram += act_in if (reads_image[i] or spill) else 0.0
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
