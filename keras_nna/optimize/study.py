"""One Optuna study shared by several worker processes, robust to a killed worker.

:func:`run_study` runs a multi-objective study (e.g. accuracy vs energy, the
budget as a constraint) in as many processes and machines as you like: workers
that open the same *storage* and *study name* share its trials; ``n_trials`` is
the total of all workers. :func:`open_storage` turns a name into an Optuna
storage; :func:`trial_records` lists the trials as JSON-native dicts.

Storages: a SQLite file (``study.db``) or a journal file (``study.log``) for N
workers on one machine (not on a network file system), a database URL
(``postgresql://user@host/db``; ``pip install "psycopg[binary]"``) for several.

N workers on one machine (a SQLite file)::

    for i in 1 2 3 4; do
        keras-nna optimize model.keras --data fashion_mnist --budget events=2500 \\
            --trials 40 --storage search/study.db --study s1 --out search &
    done; wait

On a cluster: create the database once (``createdb keras_nna``), then start the
same command on every machine (``--out`` on a shared disk or one per machine)::

    keras-nna optimize model.keras --data fashion_mnist --budget events=2500 \\
        --trials 40 --storage postgresql://user@dbhost/keras_nna --study s1 --out search

A killed worker (SIGKILL, out of memory, lost machine): SQLite and databases
store a heartbeat of each running trial every ``heartbeat_interval`` s (10); a
worker (running, or started later) that finds a ``RUNNING`` trial without one for
``grace_period`` s (2 × interval) marks it ``FAIL`` and goes on. A journal file
has no heartbeat: the trial stays ``RUNNING`` (prefer SQLite or a database if
workers may die). Either way it counts toward ``n_trials`` and is not retried,
so the study ends, and no trial is run twice. With a ``seed``, the sampler is
reseeded from ``seed`` and the trial number: one worker is reproducible, and
workers do not propose the same trials.

Example:

>>> def objective(trial):
...     x = trial.suggest_float("x", 0.0, 1.0)
...     return {"values": [x, 1.0 - x], "constraints": [x - 0.5], "attrs": {"twice": 2 * x}}
>>> study = run_study(objective, metric_names=["a", "b"], directions=["maximize", "minimize"],
...                   n_trials=4, seed=0, log=None)
>>> r = trial_records(study)[0]
>>> r["state"], r["user_attrs"]["feasible"] == (r["params"]["x"] <= 0.5)
('COMPLETE', True)
"""

import datetime
import math
import os
import re
import socket
import time
import warnings

from keras_nna._checks import check_number

__all__ = ["open_storage", "run_study", "trial_records", "worker_id"]

_STORAGE_HELP = ("Expected a SQLite file (study.db), a journal file (study.log) or a database "
                 "URL such as postgresql://user@host/db.")
_LOST = ("WorkerLost: the worker stopped during the trial (killed, out of memory or lost its "
         "connection to the storage)")


def worker_id():
    """This process as `"hostname:pid"` (the trials' `"worker"` user attr)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _import_optuna():
    try:
        import optuna
    except ImportError as err:
        raise ImportError(f'The search needs Optuna ({err}). Install it with: '
                          f'pip install "keras_nna[search]"') from None
    return optuna


def _one_line(text, limit=300):
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", str(text).split("\n")[0])
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _storage_error(storage, reason):
    if isinstance(reason, ImportError) and not isinstance(reason, ModuleNotFoundError):
        reason = (f"its database driver is missing ({reason.__cause__ or reason}); install it "
                  f"(PostgreSQL: pip install \"psycopg[binary]\"; MySQL: pip install pymysql, "
                  f"then use mysql+pymysql://)")
    elif isinstance(reason, Exception):
        reason = f"{type(reason).__name__}: {reason}"
    shown = re.sub(r"://([^:/@]+):([^@/]*)@", r"://\1:***@", str(storage))  # hide passwords
    return ValueError(f"Could not open the study storage '{shown}': {_one_line(reason)}. "
                      f"{_STORAGE_HELP}")


def _kind(storage):
    """`("sqlite" | "journal" | "url", target)` of a storage name."""
    storage = str(os.fspath(storage) if isinstance(storage, os.PathLike) else storage)
    if storage.startswith("journal:"):
        return "journal", storage[len("journal:"):]
    if "://" in storage:
        return ("sqlite" if storage.startswith("sqlite:") else "url"), storage
    if storage.lower().endswith((".db", ".sqlite", ".sqlite3")):
        return "sqlite", "sqlite:///" + os.path.abspath(storage)
    if storage.lower().endswith((".log", ".journal")):
        return "journal", storage
    raise _storage_error(storage, "unknown kind of storage (a file name must end in .db, "
                                  ".sqlite, .log or .journal)")


def _open_rdb(optuna, url, attempts=6, **kwargs):
    """`RDBStorage(url)`, retried while other workers create the same tables."""
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as err:  # noqa: BLE001 - re-raised unless a creation race
            text = f"{type(err).__name__} {err}".lower()
            race = any(word in text for word in ("integrityerror", "already exists", "locked"))
            if not race or attempt == attempts - 1:
                raise
            time.sleep(0.1 + 0.2 * attempt)


def open_storage(storage=None, *, heartbeat_interval=10, grace_period=None,
                 stale_trial_callback=None):
    """Opens an Optuna storage from a file name or URL.

    Args:
        storage: `None` (in memory), a SQLite file (`.db`, `.sqlite`, a
            `sqlite:///` URL), a journal file (`.log`, `.journal`,
            `journal:PATH`), a database URL (`postgresql://...`) or an Optuna
            storage (returned as is). Parent folders are created. Defaults to `None`.
        heartbeat_interval: Seconds between heartbeats of a running trial
            (SQLite and databases). Defaults to `10`.
        grace_period: Seconds without a heartbeat after which a running trial
            is failed (`None`: twice `heartbeat_interval`). Defaults to `None`.
        stale_trial_callback: `fn(study, frozen_trial)` called for each trial
            failed for lack of heartbeats. Defaults to `None`.

    Returns:
        An `optuna.storages.BaseStorage`.

    Raises:
        ValueError: One line, if the storage cannot be opened (unknown kind,
            unwritable path, missing database driver, unreachable server).
        ImportError: If Optuna is not installed.

    Example:

    >>> type(open_storage()).__name__
    'InMemoryStorage'
    """
    optuna = _import_optuna()
    if storage is None:
        return optuna.storages.InMemoryStorage()
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    heartbeat_interval = check_number("heartbeat_interval", heartbeat_interval, low=1,
                                      integer=True)
    if grace_period is not None:
        grace_period = check_number("grace_period", grace_period, low=1, integer=True)
    kind, target = _kind(storage)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeat_interval is "experimental"
            if kind == "journal":
                from optuna.storages.journal import JournalFileBackend

                os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
                return optuna.storages.JournalStorage(JournalFileBackend(target))
            engine_kwargs = {"pool_pre_ping": True}
            if kind == "sqlite":
                path = target.split(":///", 1)[-1].split("?")[0]
                if path and path != ":memory:":
                    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                # Wait for the other workers' writes instead of "database is locked".
                engine_kwargs = {"connect_args": {"timeout": 60}}
            return _open_rdb(optuna, target, engine_kwargs=engine_kwargs,
                             heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                             heartbeat_stale_trial_callback=stale_trial_callback)
    except Exception as err:  # noqa: BLE001 - any failure to open is one kind of user error
        raise _storage_error(storage, err) from None


def _jsonable(value):
    """`value` with numpy scalars/arrays, tuples and non-str keys made JSON-native."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _jsonable(value.tolist())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"Expected JSON-native trial attrs (numbers, strings, lists, dicts). "
                    f"Received: {value!r} of type {type(value).__name__}.")


def _check_result(result, n_metrics):
    """`(values, constraints dict, attrs)` from an objective's return value."""
    if not isinstance(result, dict) or "values" not in result:
        raise TypeError(f"Expected the objective to return a dict with 'values' (and optional "
                        f"'constraints', 'attrs'). Received: {result!r}.")
    values = [float(v) for v in result["values"]]
    if len(values) != n_metrics or not all(math.isfinite(v) for v in values):
        raise ValueError(f"Expected {n_metrics} finite values (one per metric). "
                         f"Received: values={result['values']!r}.")
    constraints = result.get("constraints") or []
    if not isinstance(constraints, dict):
        constraints = {f"c{i}": c for i, c in enumerate(constraints)}
    constraints = {str(k): float(v) for k, v in constraints.items()}
    if any(math.isnan(v) for v in constraints.values()):
        raise ValueError(f"Expected constraints without NaN. Received: {constraints!r}.")
    return values, constraints, _jsonable(dict(result.get("attrs") or {}))


def _reseed(sampler, seed, number):
    """Makes trial `number`'s sampling depend on `seed` and `number` only (TPE/random)."""
    for obj in (sampler, getattr(sampler, "_random_sampler", None)):
        rng = getattr(getattr(obj, "_rng", None), "rng", None)
        if rng is not None:
            rng.seed((seed * 1_000_003 + number) % 2**32)


def _wrap(objective, study, n_trials, n_metrics, seed, optuna):
    def wrapped(trial):
        earlier = [t for t in study.get_trials(deepcopy=False)
                   if t.number < trial.number and t.state.name != "PRUNED"]
        if len(earlier) >= n_trials:  # other workers filled the study meanwhile
            trial.set_user_attr("skipped", f"the study already had n_trials={n_trials}")
            study.stop()
            raise optuna.TrialPruned("n_trials reached")
        if seed is not None:
            _reseed(study.sampler, seed, trial.number)
        trial.set_user_attr("worker", worker_id())
        start = time.perf_counter()
        try:
            values, constraints, attrs = _check_result(objective(trial), n_metrics)
        except optuna.TrialPruned:
            raise
        except BaseException as err:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
            trial.set_user_attr("error", _one_line(f"{type(err).__name__}: {err}", 500))
            raise
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        for key, value in constraints.items() if hasattr(trial, "set_constraint") else ():
            trial.set_constraint(key, value)  # what TPE reads (Optuna >= 5)
        trial.set_user_attr("constraints", list(constraints.values()))
        trial.set_user_attr("feasible", all(v <= 0 for v in constraints.values()))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        return values

    return wrapped


def _progress(log, metric_names, n_trials, started, optuna):
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    _fmt = lambda value: f"{value:.4f}" if abs(value) < 1e4 else f"{value:.0f}"  # noqa: E731

    def callback(study, frozen):
        if frozen.state not in finished:
            return
        done = len(study.get_trials(deepcopy=False, states=finished))
        attrs = frozen.user_attrs
        elapsed = datetime.timedelta(seconds=int(time.monotonic() - started))
        head = (f"[trial {frozen.number} | {done}/{n_trials} done | worker {worker_id()} | "
                f"{attrs.get('seconds', 0.0):.1f} s | elapsed {elapsed}]")
        if frozen.state == optuna.trial.TrialState.FAIL:
            return log(f"{head} FAIL {attrs.get('error', 'no valid values')}")
        over = [_fmt(c) for c in attrs.get("constraints", []) if c > 0]
        log(f"{head} " + " ".join(f"{n}={_fmt(v)}" for n, v in zip(metric_names, frozen.values))
            + (f" infeasible (over budget by {', '.join(over)})" if over else " feasible"))

    return callback


def _load_study(optuna, storage, study_name, directions, metric_names, sampler):
    study = optuna.create_study(storage=storage, study_name=study_name, directions=directions,
                                sampler=sampler, load_if_exists=True)
    found = [d.name.lower() for d in study.directions]
    if found != directions:
        raise ValueError(f"The study '{study_name}' in this storage was created with directions "
                         f"{found}, not {directions}. Use another study name (--study).")
    if study.metric_names != metric_names:
        study.set_metric_names(metric_names)
    return study


def run_study(objective, *, metric_names, directions, n_trials, storage=None,  # long: setup + loop
              study_name="keras_nna", seed=None, timeout=None, log=print, catch=(Exception,),
              heartbeat_interval=10, grace_period=None):
    """Runs (or joins) a multi-objective Optuna study until it holds `n_trials` trials.

    Args:
        objective: `fn(trial) -> {"values": [...], "constraints": [...], "attrs": {...}}`:
            one value per metric; constraints `<= 0` mean feasible (a list or a
            dict name -> value; empty without a budget); JSON-native user attrs
            (run_study's `constraints`, `feasible`, `worker`, `seconds` win).
        metric_names: Names of the values, e.g. `["accuracy", "energy_uj"]`.
        directions: `"maximize"` or `"minimize"` per metric.
        n_trials: Trials of the study, all workers together (finished, failed
            and running ones count; failed trials are not retried).
        storage: See :func:`open_storage`. Defaults to `None` (in memory).
        study_name: Workers with the same storage and name share it. Defaults to `"keras_nna"`.
        seed: Sampler seed (mixed with each trial number). Defaults to `None`.
        timeout: Stop this worker after this many seconds. Defaults to `None`.
        log: `fn(str)` for a progress line per finished trial, or `None`. Defaults to `print`.
        catch: Exceptions of the objective that fail the trial (user attr
            `"error"`) and let the study go on. Defaults to `(Exception,)`.
        heartbeat_interval: See :func:`open_storage`. Defaults to `10`.
        grace_period: See :func:`open_storage`. Defaults to `None`.

    Returns:
        The `optuna.Study`.

    Raises:
        ValueError: Bad arguments, a storage that cannot be opened, a study of that name
            with other directions.
        ImportError: If Optuna is not installed.
    """
    optuna = _import_optuna()
    metric_names, directions = [str(n) for n in metric_names], [str(d).lower() for d in directions]
    if not metric_names or len(metric_names) != len(directions) or any(
            d not in ("maximize", "minimize") for d in directions):
        raise ValueError(f"Expected one direction ('maximize' or 'minimize') per metric name. "
                         f"Received: metric_names={metric_names}, directions={directions}.")
    n_trials = check_number("n_trials", n_trials, low=1, integer=True)
    timeout = None if timeout is None else check_number("timeout", timeout, low=0, low_open=True)
    log, started = log or (lambda line: None), time.monotonic()

    def stale(study, frozen):
        log(f"[trial {frozen.number} | worker {frozen.user_attrs.get('worker', '?')} sent no "
            f"heartbeat for too long (killed or lost): marked FAIL]")

    storage = open_storage(storage, heartbeat_interval=heartbeat_interval,
                           grace_period=grace_period, stale_trial_callback=stale)
    states = optuna.trial.TrialState
    live = (states.COMPLETE, states.FAIL, states.RUNNING, states.WAITING)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials: our one-line progress entry
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=seed, multivariate=True, n_startup_trials=min(10, max(3, n_trials // 3)))
            study = _load_study(optuna, storage, study_name, directions, metric_names, sampler)
            optuna.storages.fail_stale_trials(study)
            counted = len(study.get_trials(deepcopy=False, states=live))
            if counted >= n_trials:
                log(f"[worker {worker_id()}] the study '{study_name}' already has {counted} "
                    f"trials (n_trials={n_trials}): nothing to do")
                return study
            study.optimize(_wrap(objective, study, n_trials, len(metric_names), seed, optuna),
                           n_trials=n_trials, timeout=timeout, catch=catch,
                           callbacks=[_progress(log, metric_names, n_trials, started, optuna),
                                      optuna.study.MaxTrialsCallback(n_trials, states=live)])
    finally:
        optuna.logging.set_verbosity(verbosity)
    mine = [t for t in study.get_trials(deepcopy=False, states=live[:2])
            if t.user_attrs.get("worker") == worker_id()]
    log(f"[worker {worker_id()}] stopped after {len(mine)} trials in "
        f"{datetime.timedelta(seconds=int(time.monotonic() - started))}")
    return study


def trial_records(study):
    """Every trial of `study` as a JSON-native dict.

    Args:
        study: An `optuna.Study` (e.g. from :func:`run_study`).

    Returns:
        A list of dicts in trial order: `number`, `state` (`"COMPLETE"`,
        `"FAIL"`, `"RUNNING"`, `"PRUNED"`...), `values` (metric name -> value;
        empty unless complete), `params`, `user_attrs` (a failed trial without
        `"error"` gets one saying its worker was lost), `datetime_start`,
        `datetime_complete` (ISO strings or `None`), `duration` (s or `None`).

    Example:

    >>> import optuna
    >>> study = optuna.create_study()
    >>> study.optimize(lambda t: t.suggest_float("x", 1, 1) ** 2, n_trials=1)
    >>> rec = trial_records(study)[0]
    >>> rec["state"], rec["values"], rec["params"]
    ('COMPLETE', {'value_0': 1.0}, {'x': 1.0})
    """
    names = study.metric_names or [f"value_{i}" for i in range(len(study.directions))]
    iso = lambda moment: moment.isoformat() if moment else None  # noqa: E731
    return [{"number": t.number, "state": t.state.name, "params": _jsonable(dict(t.params)),
             "values": dict(zip(names, t.values)) if t.values is not None else {},
             "user_attrs": {**({"error": _LOST} if t.state.name == "FAIL" else {}),
                            **_jsonable(dict(t.user_attrs))},
             "datetime_start": iso(t.datetime_start), "datetime_complete": iso(t.datetime_complete),
             "duration": t.duration.total_seconds() if t.duration is not None else None}
            for t in study.get_trials(deepcopy=False)]
