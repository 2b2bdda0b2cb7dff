"""keras_nna.optimize.study: Optuna study plumbing (storages, shared workers, killed workers).

The objectives are pure Python, so worker subprocesses (tests/optimize/worker.py)
start in about a second without TensorFlow.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from keras_nna.optimize.study import (  # noqa: E402
    open_storage, run_study, trial_records, worker_id)

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
HELP = ("Expected a SQLite file (study.db), a journal file (study.log) or a database URL such "
        "as postgresql://user@host/db.")


def _objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 2:
        raise ValueError("boom on trial 2")
    return {"values": [x, 1.0 - x], "constraints": [x - 0.5],
            "attrs": {"double": np.float32(2 * x), "tag": ("a", 1)}}


def _run(n_trials=6, **kwargs):
    lines = []
    study = run_study(_objective, metric_names=["a", "b"], directions=["maximize", "minimize"],
                      n_trials=n_trials, seed=0, log=lines.append, **kwargs)
    return study, lines


def test_in_memory_records_values_constraints_attrs_and_failures():
    study, lines = _run()
    records = trial_records(study)
    json.dumps(records)  # JSON-native
    assert [r["number"] for r in records] == list(range(6))
    assert [r["state"] for r in records] == ["COMPLETE"] * 2 + ["FAIL"] + ["COMPLETE"] * 3
    assert records[2]["user_attrs"]["error"] == "ValueError: boom on trial 2"
    assert records[2]["values"] == {}
    feasible = []
    for r in records[:2] + records[3:]:
        x, attrs = r["params"]["x"], r["user_attrs"]
        assert r["values"] == pytest.approx({"a": x, "b": 1.0 - x})
        assert attrs["constraints"] == pytest.approx([x - 0.5])
        assert attrs["feasible"] == (x <= 0.5)
        assert attrs["double"] == pytest.approx(2 * x, rel=1e-6)
        assert attrs["tag"] == ["a", 1]
        assert attrs["worker"] == worker_id() and attrs["seconds"] >= 0
        assert r["duration"] >= 0 and r["datetime_complete"] >= r["datetime_start"]
        feasible.append(attrs["feasible"])
    assert set(feasible) == {True, False}  # both kinds are marked
    # The sampler sees the constraints (Optuna's own feasibility) too.
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert trial.constraints == pytest.approx({"c0": trial.params["x"] - 0.5})
    # One progress line per finished trial, then a summary line.
    assert len(lines) == 7
    assert re.fullmatch(r"\[trial 0 \| 1/6 done \| worker \S+:\d+ \| \d+\.\d s \| elapsed "
                        r"0:00:0\d\] a=0\.\d{4} b=0\.\d{4} (feasible|infeasible \(over budget "
                        r"by 0\.\d{4}\))", lines[0]), lines[0]
    assert lines[2].endswith("] FAIL ValueError: boom on trial 2"), lines[2]
    assert lines[6].startswith(f"[worker {worker_id()}] stopped after 6 trials")


def test_seed_makes_a_worker_reproducible():
    first, _ = _run()
    second, _ = _run()
    params = [t.params for t in first.trials]
    assert params == [t.params for t in second.trials]
    assert len({p["x"] for p in params}) == 6


@pytest.mark.parametrize("result, message", [
    ({"values": [1.0]}, "ValueError: Expected 2 finite values (one per metric). Received: "
                        "values=[1.0]"),
    ({"values": [1.0, float("nan")]}, "ValueError: Expected 2 finite values"),
    ([1.0, 2.0], "TypeError: Expected the objective to return a dict with 'values'"),
    ({"values": [1.0, 2.0], "attrs": {"obj": object()}}, "TypeError: Expected JSON-native"),
], ids=["too-few-values", "nan-value", "not-a-dict", "non-json-attr"])
def test_malformed_objective_results_fail_the_trial(result, message):
    study = run_study(lambda trial: result, metric_names=["a", "b"],
                      directions=["maximize", "minimize"], n_trials=2, log=None)
    records = trial_records(study)
    assert [r["state"] for r in records] == ["FAIL", "FAIL"]
    assert records[0]["user_attrs"]["error"].startswith(message)


def test_catch_empty_raises_but_records_the_error():
    def objective(trial):
        raise KeyError("missing")

    storage = open_storage()
    with pytest.raises(KeyError):
        run_study(objective, metric_names=["a"], directions=["minimize"], n_trials=3,
                  storage=storage, catch=(), log=None)
    study = optuna.load_study(study_name="keras_nna", storage=storage)
    (record,) = trial_records(study)
    assert record["state"] == "FAIL" and record["user_attrs"]["error"] == "KeyError: 'missing'"


def test_sqlite_study_resumes_to_the_total(tmp_path):
    storage = tmp_path / "sub" / "study.db"
    _run(n_trials=3, storage=str(storage))
    study, lines = _run(n_trials=3, storage=str(storage))
    assert len(study.trials) == 3 and lines[-1].endswith("nothing to do")
    study, _ = _run(n_trials=5, storage=f"sqlite:///{storage}")
    assert [t.number for t in study.trials] == list(range(5))
    with pytest.raises(ValueError, match=r"created with directions \['maximize', 'minimize'\], "
                                         r"not \['minimize', 'minimize'\]"):
        run_study(_objective, metric_names=["a", "b"], directions=["minimize", "minimize"],
                  n_trials=5, storage=str(storage), log=None)


def test_stale_failure_without_error_attr_reads_as_lost_worker():
    study = optuna.create_study()
    trial = study.ask()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert trial_records(study)[0]["user_attrs"]["error"].startswith("WorkerLost: ")


@pytest.mark.parametrize("make, reason", [
    (lambda tmp: "foo://host/db", "NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:foo"),
    (lambda tmp: "study.txt", "unknown kind of storage"),
    (lambda tmp: str(tmp / "a_file" / "study.db"), "Error"),
    (lambda tmp: "sqlite:///" + str(tmp / "a_file" / "study.db"), "Error"),
    (lambda tmp: str(tmp / "a_file" / "study.log"), "Error"),
    (lambda tmp: str(tmp / "a_dir.db"), "OperationalError: (sqlite3.OperationalError) unable to "
                                        "open database file"),
    (lambda tmp: "postgresql://user:secret@127.0.0.1:1/db", ""),
], ids=["bad-scheme", "unknown-extension", "unwritable-sqlite", "unwritable-sqlite-url",
        "unwritable-journal", "sqlite-on-a-directory", "postgres-driver-or-server"])
def test_open_storage_errors_are_one_line(tmp_path, make, reason):
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "a_dir.db").mkdir()
    storage = make(tmp_path)
    with pytest.raises(ValueError) as info:
        open_storage(storage)
    message = str(info.value)
    shown = storage.replace(":secret@", ":***@")
    assert "\n" not in message and "secret" not in message
    assert message.startswith(f"Could not open the study storage '{shown}': ")
    assert message.endswith(". " + HELP)
    assert reason in message


def test_open_storage_kinds(tmp_path):
    assert type(open_storage()).__name__ == "InMemoryStorage"
    sqlite = open_storage(str(tmp_path / "new" / "study.sqlite"))
    assert type(sqlite).__name__ == "RDBStorage" and sqlite.heartbeat_interval == 10
    journal = open_storage(f"journal:{tmp_path / 'new' / 'study.jnl'}")
    assert type(journal).__name__ == "JournalStorage"
    assert open_storage(journal) is journal
    path_storage = open_storage(tmp_path / "as_path.db", heartbeat_interval=3, grace_period=7)
    assert (path_storage.heartbeat_interval, path_storage.grace_period) == (3, 7)
    assert (tmp_path / "as_path.db").is_file()


def test_import_does_not_load_optuna_or_tensorflow():
    code = ("import sys, keras_nna.optimize.study as s; "
            "print(sorted(m for m in ('optuna', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_missing_optuna_is_an_install_hint():
    code = ("import sys; sys.modules['optuna'] = None\n"
            "from keras_nna.optimize.study import open_storage\n"
            "try:\n    open_storage()\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 'pip install "keras_nna[search]"' in out.stdout, out.stdout + out.stderr


def _worker(storage, trials, *extra):
    return subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), "--storage", storage, "--trials", str(trials),
         *map(str, extra)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc):
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    result = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert result, out
    return json.loads(result[-1][len("RESULT "):]), out


def _load(storage):
    return trial_records(optuna.load_study(study_name="keras_nna", storage=open_storage(storage)))


@pytest.mark.parametrize("name", ["study.db", "study.log"], ids=["sqlite", "journal"])
def test_two_workers_share_one_study(tmp_path, name):
    storage, n_trials = str(tmp_path / name), 12
    procs = [_worker(storage, n_trials, "--seed", 0, "--barrier", tmp_path / "barrier",
                     "--workers", 2) for _ in range(2)]
    results = [_finish(p)[0] for p in procs]
    records = _load(storage)
    finished = [r for r in records if r["state"] in ("COMPLETE", "FAIL")]
    # Extra asks after the study was full are skipped (PRUNED), never run.
    assert all(r["state"] == "PRUNED" and "skipped" in r["user_attrs"]
               for r in records if r not in finished)
    assert sorted(r["number"] for r in finished) == list(range(n_trials))
    assert all(r["state"] == "COMPLETE" for r in finished)
    counts = [len(res["numbers"]) for res in results]
    assert sum(counts) == n_trials and min(counts) > 0, counts
    assert sorted(results[0]["numbers"] + results[1]["numbers"]) == list(range(n_trials))
    by_worker = {res["worker"]: sorted(res["numbers"]) for res in results}
    for worker, numbers in by_worker.items():
        assert sorted(r["number"] for r in finished if r["user_attrs"]["worker"] == worker) \
            == numbers
    assert len({(r["params"]["x"], r["params"]["n"]) for r in finished}) == n_trials


@pytest.mark.parametrize("name", ["study.db", "study.log"], ids=["sqlite", "journal"])
def test_killed_worker_trial_fails_and_others_finish(tmp_path, name):
    storage, n_trials, flag = str(tmp_path / name), 8, tmp_path / "hanging"
    started = time.monotonic()
    hung = _worker(storage, n_trials, "--hang-flag", flag, "--heartbeat", 1, "--grace", 2)
    while not flag.exists():
        assert hung.poll() is None and time.monotonic() - started < 60, hung.communicate()[0]
        time.sleep(0.05)
    hung_number = int(flag.read_text())
    (running,) = [r for r in _load(storage) if r["state"] == "RUNNING"]
    assert running["number"] == hung_number == 0
    os.kill(hung.pid, signal.SIGKILL)
    hung.communicate(timeout=30)
    if name.endswith(".db"):
        time.sleep(4)  # > grace period (SQLite timestamps have a 1-second resolution)
    result, out = _finish(_worker(storage, n_trials, "--heartbeat", 1, "--grace", 2,
                                  "--sleep", 0.05))
    records = _load(storage)
    assert [r["number"] for r in records] == list(range(n_trials))  # nothing run twice
    assert [r["state"] for r in records[1:]] == ["COMPLETE"] * (n_trials - 1)
    assert result["numbers"] == list(range(1, n_trials))
    if name.endswith(".db"):
        assert f"[trial {hung_number} | worker {running['user_attrs']['worker']} sent no " \
               "heartbeat for too long (killed or lost): marked FAIL]" in out
        assert records[0]["state"] == "FAIL"
        assert records[0]["user_attrs"]["error"].startswith("WorkerLost")
    else:  # a journal has no heartbeat: the trial stays RUNNING but counts toward n_trials
        assert records[0]["state"] == "RUNNING" and "marked FAIL" not in out
    assert time.monotonic() - started < 30


def test_a_trial_asked_after_the_study_is_full_is_skipped():
    from keras_nna.optimize.study import _wrap

    study = optuna.create_study()
    for x in (0.1, 0.2):
        study.add_trial(optuna.trial.create_trial(
            params={"x": x}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
            value=x))
    # As if another worker filled the study after this one's last check.
    study.optimize(_wrap(_objective, study, 2, 1, None, optuna), n_trials=5)
    records = trial_records(study)
    assert [r["state"] for r in records] == ["COMPLETE", "COMPLETE", "PRUNED"]  # then stopped
    assert records[2]["params"] == {}  # the objective did not run
    assert records[2]["user_attrs"] == {"skipped": "the study already had n_trials=2"}
