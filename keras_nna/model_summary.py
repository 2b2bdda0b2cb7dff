"""A per-layer summary of a quantized model, before export.

Like `larq.models.summary`, plus what only keras_nna knows: the accelerator
instruction of each layer, its weight / activation bits, the bytes the
bytecode will store for it, its share of zero weights and its MACs; with
images, the events and synops the emulator counts, and with a hardware
profile, the estimated time and energy of every layer.

Example:

>>> import keras
>>> from keras_nna.quantization import quantize_model
>>> keras.utils.set_random_seed(0)
>>> qmodel = quantize_model(keras.Sequential([keras.Input((8, 8, 1)),
...     keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv"),
...     keras.layers.Flatten(name="flatten"), keras.layers.Dense(3, name="logits")]))
>>> rows = summary(qmodel, print_fn=None)
>>> for r in rows:
...     print(r["name"], r["kind"], r["weight_bits"], r["activation_bits"], r["macs"])
conv conv 8 4 324
flatten flatten None 4 None
logits dense 4 None 108
"""

import keras
import numpy as np

from keras_nna.deployment import _as_images, _run_program, _zeros
from keras_nna.export import ExportError, export_model, read_program
from keras_nna.models.summary import layer_macs
from keras_nna.quantization import QuantizeWrapper
from keras_nna.quantization.layer_kinds import layer_kind, unwrap
from keras_nna.runtime.cost import estimate_cost, get_profile

__all__ = ["summary"]


def _export_or_reason(model):
    try:
        return export_model(model), None
    except ExportError as err:
        return None, str(err)


def _bits(layer, rec):
    if isinstance(layer, QuantizeWrapper):
        return layer.weight_bits, layer.activation_bits
    if rec is not None:  # pooling / flatten: codes pass through at their bits
        return None, rec.out_bits or None
    return None, None


def _kind(layer, rec):
    """The instruction's kind if exported, else the layer table's kind, else the class."""
    if rec is not None:
        return rec.kind
    return layer_kind(unwrap(layer)) or type(layer).__name__


def _layer_rows(model, program, macs):
    records = {}
    if program is not None:
        stored = read_program(program.to_bytes()).layers  # bytes as the bytecode stores them
        records = {rec.name: (i, rec, getattr(s, "const_bytes", None))
                   for i, (rec, s) in enumerate(zip(program.layers, stored))}
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        index, rec, packed = records.get(layer.name, (None, None, None))
        zeros, n_weights = _zeros(layer)
        w_bits, a_bits = _bits(layer, rec)
        rows.append({
            "name": layer.name, "kind": _kind(layer, rec), "weight_bits": w_bits,
            "activation_bits": a_bits, "params": int(layer.count_params()),
            "packed_bytes": packed, "weight_sparsity": zeros / n_weights if n_weights else None,
            "macs": macs.get(layer.name), "_index": index, "_counts": (zeros, n_weights)})
    return rows


def _add_run(rows, program, images, profile):
    _, stats, _ = _run_program(program, images)
    report = estimate_cost(program, stats, profile) if profile is not None else None
    mean = np.asarray(stats, np.float64).mean(axis=0)
    for row in rows:
        i = row["_index"]
        row["events_in"] = None if i is None else float(mean[i, 0])
        row["synops"] = None if i is None else float(mean[i, 1])
        if report is not None:
            row["time_s"] = None if i is None else report.layers[i]["time_s"]
            row["energy_j"] = None if i is None else report.layers[i]["energy_j"]
    return report


_COLUMNS = (  # (header, row key, format); the first three are left-aligned
    ("Layer", "name", str), ("Kind", "kind", str), ("W/A bits", None, None),
    ("Params", "params", "{:,}".format), ("Bytes", "packed_bytes", "{:,}".format),
    ("W zeros", "weight_sparsity", "{:.1%}".format), ("MACs", "macs", "{:,}".format),
    ("Events in", "events_in", "{:,.1f}".format), ("Synops", "synops", "{:,.0f}".format),
    ("Time us", "time_s", lambda v: f"{v * 1e6:,.3f}"),
    ("Energy uJ", "energy_j", lambda v: f"{v * 1e6:,.3f}"))


def _cell(row, key, fmt):
    if key is None:
        w, a = row["weight_bits"], row["activation_bits"]
        if row["name"] == "Total" and not row["kind"]:
            return ""
        return "-" if w is None and a is None else f"{w or '-'}/{a or '-'}"
    value = row.get(key)
    return "-" if value is None else fmt(value)


def _format(rows, total, footer):
    columns = [c for c in _COLUMNS if c[1] is None or any(c[1] in r for r in rows)]
    table = [[h for h, _, _ in columns]] + [[_cell(r, k, f) for _, k, f in columns]
                                            for r in rows + [total]]
    widths = [max(len(line[j]) for line in table) for j in range(len(columns))]

    def line(cells):
        return "  ".join(c.ljust(w) if j < 3 else c.rjust(w)
                         for j, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(table[0]))
    return "\n".join([rule, line(table[0]), rule, *map(line, table[1:-1]), rule,
                      line(table[-1]), rule, *footer])


def _total_and_footer(rows, program, reason, report, images):
    """Pops the private keys of `rows`; returns the Total row and the notes."""
    counts = [row.pop("_counts") for row in rows]
    for row in rows:
        del row["_index"]
    zeros, n_weights = sum(c[0] for c in counts), sum(c[1] for c in counts)
    total = {"name": "Total", "kind": "", "weight_bits": None, "activation_bits": None,
             "weight_sparsity": zeros / n_weights if n_weights else 0.0}
    for key in ("params", "packed_bytes", "macs", "events_in", "synops", "time_s", "energy_j"):
        values = [r[key] for r in rows if r.get(key) is not None]
        if any(key in r for r in rows):
            total[key] = sum(values) if values else None
    footer = [f"Weights zero: {total['weight_sparsity']:.1%}. " + (
        f"Program: {len(program.to_bytes()):,} bytes." if program is not None
        else f"Not exportable yet: {reason}")]
    if report is not None:
        footer.append(f"Events and synops: mean per image over {report.batch_size} image(s); "
                      f"time and energy on profile {report.profile.name!r}.")
    elif images is not None:
        footer.append(f"Events and synops: mean per image over {len(images)} image(s).")
    return total, footer


def summary(qmodel, images=None, profile=None, print_fn=print):
    """Prints a per-layer table of a quantized model before export, returns its rows.

    Columns: layer, kind (the accelerator instruction), weight / activation
    bits, Keras parameters, packed bytes of the layer's constants as the
    bytecode stores them, share of zero weights (integer codes for quantized
    layers, see :func:`model_weight_sparsity`) and MACs
    (`keras_nna.models.summary.layer_macs`). With `images`, the mean events
    received and synops per image counted by the emulator; with a `profile`
    too, the estimated time and energy of every layer (`estimate_cost`).
    Layers without an instruction (Dropout, ...) show `-` and their kind from
    `keras_nna.quantization.layer_kinds`. A float model is summarised too,
    without bytes, with a note why it cannot be exported yet.

    Args:
        qmodel: A model returned by `quantize_model` (or any chain model).
        images: Optional uint8 images `[N, H, W, C]` to run on the emulator.
            Defaults to `None`.
        profile: Optional hardware profile (name, `HardwareProfile` or `dict`);
            needs `images`. Defaults to `None`.
        print_fn: Called with the table text; `None` prints nothing.
            Defaults to `print`.

    Returns:
        A list of row dicts (keys `name`, `kind`, `weight_bits`,
        `activation_bits`, `params`, `packed_bytes`, `weight_sparsity`, `macs`,
        and with images `events_in`, `synops`, with a profile `time_s`,
        `energy_j`); `None` where a value does not apply.

    Raises:
        ValueError: If `profile` is given without `images`.
        keras_nna.export.ExportError: If `images` are given and the model
            cannot be exported.

    Example:

    >>> from keras_nna.quantization import quantize_model
    >>> qmodel = quantize_model(keras.Sequential([keras.Input((4, 4, 1)),
    ...     keras.layers.Flatten(name="flat"), keras.layers.Dense(2, name="fc")]))
    >>> rows = summary(qmodel)
    ------------------------------------------------------
    Layer  Kind     W/A bits  Params  Bytes  W zeros  MACs
    ------------------------------------------------------
    flat   flatten  -/8            0      0        -     -
    fc     dense    8/-           34     58     0.0%    32
    ------------------------------------------------------
    Total                         34     58     0.0%    32
    ------------------------------------------------------
    Weights zero: 0.0%. Program: 222 bytes.
    >>> rows = summary(qmodel, np.full((1, 4, 4, 1), 3, np.uint8), "nna-1core", print_fn=None)
    >>> rows[1]["packed_bytes"], rows[1]["macs"], rows[1]["events_in"], rows[1]["synops"]
    (58, 32, 16.0, 32.0)
    """
    if profile is not None and images is None:
        raise ValueError("summary(profile=...) estimates cost from emulator statistics and "
                         "needs images. Pass images=x[:100] too, or drop the profile.")
    profile = None if profile is None else get_profile(profile)
    program, reason = _export_or_reason(qmodel)
    if images is not None and program is None:
        raise ExportError(f"summary(images=...) runs the exported program, but {reason}")
    rows = _layer_rows(qmodel, program, layer_macs(qmodel))
    report = None
    if images is not None:
        report = _add_run(rows, program, _as_images(images, None), profile)
    total, footer = _total_and_footer(rows, program, reason, report, images)
    if print_fn is not None:
        print_fn(_format(rows, total, footer))
    return rows
