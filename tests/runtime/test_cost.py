"""Tests of the cost model (keras_nna.runtime.cost)."""

import dataclasses
import json

import numpy as np
import pytest

from keras_nna.export import LayerRecord, Program, run_reference
from keras_nna.runtime.cost import (
    PROFILES,
    CostReport,
    HardwareProfile,
    cost_report,
    estimate_cost,
    get_profile,
)

# Round constants so every expected number below is computed by hand.
UNIT = HardwareProfile(name="unit", cores=2, clock_hz=1e6, synops_per_cycle_per_core=4,
                       event_overhead_cycles=2, sram_bytes=1000, dram_bandwidth_bytes_per_s=1e3,
                       energy_per_synop_j=1.0, energy_per_sram_byte_j=10.0,
                       energy_per_dram_byte_j=100.0, static_power_w=1000.0)


def _dense(in_c, out_c, out_bits, name):
    return LayerRecord(kind="dense", in_shape=(1, 1, in_c), out_shape=(1, 1, out_c), in_bits=8,
                       out_bits=out_bits, w_bits=4, weights=np.ones((in_c, out_c), np.int64),
                       m=np.ones(out_c, np.int64), n=np.zeros(out_c, np.int64),
                       sh=np.ones(out_c, np.int64), name=name)


def _program():
    first = _dense(3, 2, 4, "fc1")
    second = _dense(2, 1, 0, "fc2")
    second.in_bits = 4
    return Program((1, 1, 3), 8, [first, second])


# Two images; the mean is fc1 [3, 5, 6, 29, 3, 1] and fc2 [1, 1, 2, 14, 1, 0.5].
STATS = np.array([
    [[2, 4, 6, 29, 3, 2], [2, 2, 2, 14, 1, 1]],
    [[4, 6, 6, 29, 3, 0], [0, 0, 2, 14, 1, 0]],
])


def test_hand_computed_memory_bound():
    report = estimate_cost(_program(), STATS, UNIT)
    fc1, fc2 = report.layers
    # fc1: cycles = (5 / 4 + 3 * 2) / 2 cores; DRAM = the input image (3 B).
    assert fc1["compute_s"] == pytest.approx(3.625e-6)
    assert fc1["dram_bytes"] == 3 and fc1["memory_s"] == pytest.approx(3e-3)
    assert fc1["time_s"] == pytest.approx(3e-3) and fc1["bound"] == "memory"
    # on-chip = 29 constants + 3 in + 1 out (2 x 4-bit codes, dense 1 B < sparse 3 B).
    assert fc1["onchip_bytes"] == 33
    assert fc1["energy_j"] == pytest.approx(5 * 1 + 33 * 10 + 3 * 100 + 1000 * 3e-3)
    # fc2 writes the raw output: min(dense 4 B, sparse ceil(0.5 * 48 / 8) = 3 B).
    assert fc2["act_bytes_out"] == 3 and fc2["dram_bytes"] == 3
    assert fc2["compute_s"] == pytest.approx((1 / 4 + 1 * 2) / 2 * 1e-6)
    assert fc2["energy_j"] == pytest.approx(1 + (14 + 1 + 3) * 10 + 3 * 100 + 1000 * 3e-3)
    total = report.total
    assert total["time_s"] == pytest.approx(6e-3)
    assert total["energy_j"] == pytest.approx(638 + 484)
    assert total["synops"] == 6 and total["dense_macs"] == 8
    assert total["sparsity_ratio"] == pytest.approx(6 / 8)
    assert fc1["sparsity_ratio"] == pytest.approx(5 / 6)
    assert total["weights_resident"] and report.batch_size == 2


def test_hand_computed_compute_bound():
    report = estimate_cost(_program(), STATS, UNIT.replace(dram_bandwidth_bytes_per_s=1e9))
    fc1 = report.layers[0]
    assert fc1["bound"] == "compute" and fc1["time_s"] == pytest.approx(3.625e-6)
    assert fc1["energy_j"] == pytest.approx(5 + 330 + 300 + 1000 * 3.625e-6)


def test_weights_not_resident_and_activation_spill():
    # 43 B of constants + largest pair (fc2: 1 + 4 B) > 30 B: weights come from DRAM.
    report = estimate_cost(_program(), STATS, UNIT.replace(sram_bytes=30))
    assert not report.total["weights_resident"]
    assert [row["dram_bytes"] for row in report.layers] == [29 + 3, 14 + 3]
    # With 4 B on-chip, fc2's pair (5 B) spills too: it reads its 1 B input from DRAM.
    report = estimate_cost(_program(), STATS, UNIT.replace(sram_bytes=4))
    assert [row["act_spill"] for row in report.layers] == [False, True]
    assert report.layers[1]["dram_bytes"] == 14 + 1 + 3


def test_single_image_stats_and_bytes_program():
    program = _program()
    report = estimate_cost(program.to_bytes(), STATS[0], "nna-8core")
    assert report.batch_size == 1 and report.layers[0]["events_in"] == 2
    assert report.profile.cores == 8


def test_stats_shape_error():
    with pytest.raises(ValueError, match=r"Expected statistics of shape \(N, 2, 6\)"):
        estimate_cost(_program(), np.zeros((1, 3, 6)), UNIT)


def test_profile_registry():
    assert {"nna-1core", "nna-8core"} <= set(PROFILES)
    one, eight = get_profile("nna-1core"), get_profile("nna-8core")
    assert (one.sram_bytes, one.dram_bandwidth_bytes_per_s, one.cores) == (2**20, 12e9, 1)
    assert (eight.sram_bytes, eight.dram_bandwidth_bytes_per_s) == (88 * 2**20, 115e9)
    assert eight.cores == 8
    assert get_profile(one) is one
    assert get_profile({"base": "nna-8core", "clock_hz": 2e9}).clock_hz == 2e9
    with pytest.raises(ValueError, match="nna-1core, nna-8core"):
        get_profile("nna-9core")
    with pytest.raises(ValueError, match="Unknown HardwareProfile field"):
        get_profile({"base": "nna-1core", "clok_hz": 1})
    with pytest.raises(ValueError, match="clock_hz must be a finite number > 0"):
        one.replace(clock_hz=0)
    with pytest.raises(ValueError, match="cores must be an integer"):
        HardwareProfile(cores=1.5)
    with pytest.raises(TypeError, match="registered name"):
        get_profile(3)
    with pytest.raises(AttributeError):
        one.cores = 4  # frozen


def test_profile_dict_round_trip():
    eight = get_profile("nna-8core")
    assert HardwareProfile.from_dict(json.loads(json.dumps(eight.to_dict()))) == eight


def test_report_json_round_trip(tmp_path):
    report = estimate_cost(_program(), STATS, UNIT)
    path = tmp_path / "cost.json"
    report.save(path)
    loaded = CostReport.from_json(path.read_text())
    assert loaded.to_dict() == report.to_dict()
    assert loaded.profile == UNIT
    assert json.loads(report.to_json())["total"]["synops"] == 6


def test_table_and_markdown():
    report = estimate_cost(_program(), STATS, UNIT)
    table = report.table()
    assert "Total" in table and "fc1" in table and "fc2" in table
    assert "Energy uJ" in table and "Weights on-chip" in table
    lines = table.splitlines()
    total_line = next(line for line in lines if line.startswith("Total"))
    assert "25.0%" in total_line  # 1 - 6 / 8 saved
    assert str(report) == table
    md = report.to_markdown()
    assert md.startswith("| Layer | Kind") and "**Total**" in md


def _conv_program():
    rng = np.random.default_rng(0)
    w = rng.integers(-3, 4, (3, 3, 1, 4))
    rec = LayerRecord(kind="conv", in_shape=(8, 8, 1), out_shape=(6, 6, 4), in_bits=8,
                      out_bits=4, out_exp=0, kernel_size=(3, 3), w_bits=3, weights=w,
                      m=np.ones(4, np.int64), n=np.zeros(4, np.int64), sh=np.full(4, 4))
    return Program((8, 8, 1), 8, [rec])


def test_more_events_cost_more():
    program = _conv_program()
    rng = np.random.default_rng(1)
    base = rng.integers(1, 256, (2, 8, 8, 1)).astype(np.uint8)
    reports = []
    for density in (0.1, 0.5, 1.0):
        keep = np.random.default_rng(2).random(base.shape) < density
        reports.append(cost_report(program, base * keep, profile="nna-1core", executor="reference"))
    events = [r.total["events_in"] for r in reports]
    times = [r.total["time_s"] for r in reports]
    energies = [r.total["energy_j"] for r in reports]
    assert events == sorted(events) and len(set(events)) == 3
    assert times == sorted(times) and len(set(times)) == 3
    assert energies == sorted(energies) and len(set(energies)) == 3


def test_cost_report_matches_estimate_and_validates():
    program = _conv_program()
    images = np.random.default_rng(3).integers(0, 256, (2, 8, 8, 1)).astype(np.uint8)
    report = cost_report(program, images, executor="reference")
    _, stats = run_reference(program, images)
    assert report.to_dict() == estimate_cost(program, stats).to_dict()
    with pytest.raises(ValueError, match="executor must be"):
        cost_report(program, images, executor="gpu")
    with pytest.raises(ValueError, match="Unknown hardware profile"):
        cost_report(program, images, profile="tpu")


def test_cost_report_emulator_agrees_with_reference():
    pytest.importorskip("tensorflow")
    try:
        from keras_nna.runtime.op import load_op_library

        load_op_library()
    except Exception as err:  # op not built on this machine
        pytest.skip(f"emulator op unavailable: {err}")
    program = _conv_program()
    images = np.random.default_rng(4).integers(0, 256, (3, 8, 8, 1)).astype(np.uint8)
    emulated = cost_report(program, images, executor="emulator")
    reference = cost_report(program, images, executor="reference")
    assert emulated.total == reference.total


def test_cost_report_reads_a_path_and_falls_back_to_the_reference(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    import keras_nna.runtime.emulator as emulator_module

    program = _conv_program()
    path = tmp_path / "p.nnab"
    program.save(path)
    images = np.random.default_rng(5).integers(0, 256, (2, 8, 8, 1)).astype(np.uint8)
    expected = cost_report(program, images, executor="reference").to_dict()

    def missing():
        raise RuntimeError("no compiler")

    monkeypatch.setattr(emulator_module, "load_op_library", missing)
    assert cost_report(str(path), images).to_dict() == expected  # "auto": the reference
    with pytest.raises(RuntimeError, match=r"op is unavailable \(no compiler\)"):
        cost_report(path, images, executor="emulator")
    with pytest.raises(FileNotFoundError, match="program file '.*missing.nnab' not found"):
        cost_report(tmp_path / "missing.nnab", images)


def _residual_program():
    """fc1 (image -> 3 codes) and an ADD of fc1's output with the image itself."""
    first = _dense(3, 3, 8, "fc1")
    add = LayerRecord(kind="add", in_shape=(1, 1, 3), out_shape=(1, 1, 3), in_bits=8, out_bits=8,
                      src=1, src2=0, name="add")
    return Program((1, 1, 3), 8, [first, add])


@pytest.mark.parametrize("sram,resident", [(1000, True), (50, False)], ids=["fits", "spills"])
def test_residual_add_reads_the_image_and_both_inputs_count_in_sram(sram, resident):
    stats = np.array([[[3, 9, 9, 3 * 3 // 2 + 39, 3, 3], [6, 6, 6, 0, 6, 3]]])
    profile = dataclasses.replace(UNIT, sram_bytes=sram)
    report = estimate_cost(_residual_program(), stats, profile)
    fc1, add = report.layers
    # The ADD reads the image again from DRAM; the statistics do not split its 6 input bytes by
    # input, so all of them are charged (an upper bound), plus the 3-byte program output.
    assert add["act_bytes_in"] == 6 and add["dram_bytes"] == 6 + 3
    # Residency: constants + the largest pair (ADD: two 3-byte inputs + 3-byte output = 9 B).
    assert report.total["weights_resident"] is resident
    assert fc1["dram_bytes"] == 3 + (0 if resident else fc1["weight_bytes"])
