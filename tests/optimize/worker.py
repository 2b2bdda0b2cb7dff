"""A worker process for tests/test_optimize_study.py: joins a shared study, pure Python.

Usage: python tests/optimize_worker.py --storage study.db --study s --trials 12
[--barrier DIR --workers 2] [--hang-flag PATH] [--heartbeat 1 --grace 2]

Runs `keras_nna.optimize.study.run_study` on a tiny objective (no TensorFlow),
prints one progress line per trial and a last line `RESULT {"worker": ...,
"numbers": [...]}` with the trials this worker finished. With `--hang-flag`, the
worker's first trial writes that file and then hangs (to be killed).
"""

import argparse
import json
import os
import time


def _barrier(folder, workers, timeout=60.0):
    """Waits until `workers` processes have checked in to `folder`."""
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, f"ready-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(folder))} of {workers} workers started")
        time.sleep(0.02)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", default="keras_nna")
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--sleep", type=float, default=0.1)
    parser.add_argument("--barrier", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--hang-flag", default=None)
    parser.add_argument("--heartbeat", type=int, default=10)
    parser.add_argument("--grace", type=int, default=None)
    args = parser.parse_args()

    from keras_nna.optimize.study import run_study, worker_id

    hang = [args.hang_flag]

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        n = trial.suggest_int("n", 1, 8)
        if hang[0]:
            with open(hang[0], "w") as f:
                f.write(str(trial.number))
            hang[0] = None
            time.sleep(3600)
        time.sleep(args.sleep)
        return {"values": [x * n, float(n)], "constraints": [x - 0.7],
                "attrs": {"pid": os.getpid()}}

    if args.barrier:
        _barrier(args.barrier, args.workers)
    study = run_study(objective, metric_names=["score", "size"],
                      directions=["maximize", "minimize"], n_trials=args.trials,
                      storage=args.storage, study_name=args.study,
                      seed=args.seed, heartbeat_interval=args.heartbeat, grace_period=args.grace,
                      log=lambda line: print(line, flush=True))
    numbers = [t.number for t in study.get_trials(deepcopy=False) if t.state.name in (
        "COMPLETE", "FAIL") and t.user_attrs.get("worker") == worker_id()]
    print("RESULT " + json.dumps({"worker": worker_id(), "numbers": numbers}), flush=True)


if __name__ == "__main__":
    main()
