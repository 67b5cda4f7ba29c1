"""Can one MLflow server hold a cluster's trials? A load test of the tracking store.

N simulated trials (threads spread over a few client processes, each its own MLflow run) log a
batch of metrics every `--interval` seconds for `--seconds` to one `mlflow server` on 127.0.0.1
(`--workers 2`, as cluster/gpu.yaml starts it), once over a sqlite file and once over PostgreSQL
(Debian's server, run as the unprivileged `postgres` user in a temporary folder, with password
authentication: tests/local_servers.py starts both servers, as the tests do). Then
every run's metric histories are read back and counted. Per store and N it prints: errors the
clients saw (after MLflow's own retries), metric points lost and duplicated, and the p50/p99
latency of `log_batch`. Nothing here talks to another host; the servers stop when it ends.

Usage: python benchmarks/tracking_load.py [--trials 8 32 64] [--seconds 60] [--stores sqlite
postgresql] [--pool N] [--out tracking_load.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

# The servers the tests start (tests/local_servers.py): one way to run PostgreSQL and MLflow.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from local_servers import MlflowServer, Postgres, postgres  # noqa: E402

METRICS = ("train/loss", "train/lr", "train/tau", "train/images_per_s", "epoch")
# uvicorn kills a worker that misses a 5 s health check, which a busy head (it also runs the
# trial drivers) can: cluster/gpu.yaml gives MLflow's workers the same 60 s.
HEALTHCHECK = "--timeout-worker-healthcheck 60"
CLIENT_PROCESSES = 4  # the trials' threads are spread over this many client processes


def _trial(uri: str, experiment_id: str, seconds: float, interval: float, out: list) -> None:
    """One simulated trial: a run that logs METRICS at steps 0, 1, ... every `interval`."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    latencies, errors, steps = [], [], 0
    try:
        run_id = client.create_run(experiment_id).info.run_id
    except Exception as error:  # noqa: BLE001 - a client error is a result here
        out.append({"run_id": None, "latencies": [], "errors": [repr(error)], "steps": 0})
        return
    start = time.monotonic()
    while (now := time.monotonic()) - start < seconds:
        ms = int(time.time() * 1000)
        batch = [Metric(name, float(steps), ms, steps) for name in METRICS]
        try:
            client.log_batch(run_id, metrics=batch)
            latencies.append(time.monotonic() - now)
            steps += 1
        except Exception as error:  # noqa: BLE001
            errors.append(type(error).__name__ + ": " + str(error)[:200])
        time.sleep(max(0.0, interval - (time.monotonic() - now)))
    out.append({"run_id": run_id, "latencies": latencies, "errors": errors, "steps": steps})


def _client_process(uri: str, experiment_id: str, trials: int, seconds: float, interval: float,
                    queue) -> None:
    results: list[dict] = []
    threads = [threading.Thread(target=_trial, args=(uri, experiment_id, seconds, interval,
                                                     results)) for _ in range(trials)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(results)


def _count(uri: str, results: list[dict]) -> tuple[int, int]:
    """Metric points lost and duplicated: each run's history against the steps it logged."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    lost = duplicated = 0
    for result in results:
        if result["run_id"] is None:
            continue
        for name in METRICS:
            seen = Counter(m.step for m in client.get_metric_history(result["run_id"], name))
            lost += sum(1 for step in range(result["steps"]) if step not in seen)
            duplicated += sum(n - 1 for n in seen.values() if n > 1)
    return lost, duplicated


def load(uri: str, trials: int, seconds: float, interval: float) -> dict:
    """Run `trials` simulated trials against `uri` and count what came through."""
    from mlflow.tracking import MlflowClient

    experiment_id = MlflowClient(uri).create_experiment(f"load-{trials}-{time.time_ns()}")
    queue = mp.get_context("spawn").Queue()
    per = [trials // CLIENT_PROCESSES + (i < trials % CLIENT_PROCESSES)
           for i in range(CLIENT_PROCESSES)]
    processes = [mp.get_context("spawn").Process(
        target=_client_process, args=(uri, experiment_id, n, seconds, interval, queue))
        for n in per if n]
    for process in processes:
        process.start()
    results = [r for _ in processes for r in queue.get(timeout=seconds + 600)]
    for process in processes:
        process.join()
    lost, duplicated = _count(uri, results)
    latencies = sorted(x for r in results for x in r["latencies"])
    errors = [e for r in results for e in r["errors"]]

    def quantile(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies \
            else float("nan")

    return {"trials": trials, "batches": len(latencies), "points": len(latencies) * len(METRICS),
            "errors": len(errors), "first_errors": sorted(set(errors))[:3], "lost": lost,
            "duplicated": duplicated, "p50_ms": quantile(0.5), "p99_ms": quantile(0.99),
            "mean_ms": 1000 * statistics.fmean(latencies) if latencies else float("nan")}


@contextmanager
def store(kind: str):
    """None for a sqlite file (MlflowServer's default), or a fresh PostgreSQL server."""
    if kind == "sqlite":
        yield None
    else:
        with postgres() as pg:
            yield pg


def serve(folder: Path, pg: Postgres | None, pool: int | None) -> MlflowServer:
    """`mlflow server` over the store, as cluster/gpu.yaml's head runs it; `pool`: each server
    worker's database connections (SQLAlchemy's pool size, and as many again on overflow;
    MLflow's default is 5 + 10, after which a request waits 30 s and fails)."""
    env = None if pool is None else {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(pool),
                                     "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(pool)}
    return MlflowServer(folder, pg=pg, workers=2, uvicorn_opts=HEALTHCHECK, env=env)


def main(argv: list[str] | None = None) -> int:
    """Each store x each N: one server, the load, the counts; a table and a JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    parser.add_argument("--pool", type=int, default=None,
                        help="database connections per server worker (default: MLflow's 5+10)")
    parser.add_argument("--out", type=Path, default=Path("tracking_load.json"))
    args = parser.parse_args(argv)
    # SIGTERM (or a background job's ignored SIGINT) must still stop the servers it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = []
    print(f"load: {os.getloadavg()[0]:.1f} (1-min average) on {os.cpu_count()} CPUs; "
          f"connections per server worker: {args.pool or 'MLflow default'}")
    print(f"{'store':<11}{'trials':>7}{'log_batch calls':>16}{'errors':>8}{'lost':>7}"
          f"{'duplicated':>11}{'p50 ms':>8}{'p99 ms':>8}{'load':>6}")
    for kind in args.stores:
        for trials in args.trials:
            with tempfile.TemporaryDirectory(prefix=f"load-{kind}-") as tmp, \
                    store(kind) as pg, serve(Path(tmp), pg, args.pool) as server:
                row = {"store": kind, "pool": args.pool,
                       **load(server.uri, trials, args.seconds, args.interval),
                       "loadavg": os.getloadavg()[0]}
            rows.append(row)
            print(f"{kind:<11}{trials:>7}{row['batches']:>16}{row['errors']:>8}{row['lost']:>7}"
                  f"{row['duplicated']:>11}{row['p50_ms']:>8.0f}{row['p99_ms']:>8.0f}"
                  f"{row['loadavg']:>6.1f}",
                  flush=True)
            for error in row["first_errors"]:
                print(f"    e.g. {error}")
    args.out.write_text(json.dumps({"seconds": args.seconds, "interval": args.interval,
                                    "loadavg": os.getloadavg(), "rows": rows}, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
