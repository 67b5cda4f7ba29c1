"""Seconds until `byol-ray --help` and a config error answer, beside `python -c pass`: the
command line must answer in about a second (target <= 1.5 s on an idle machine), which it
does only while those commands import neither torch, Ray nor MLflow
(tests/test_cli_startup.py checks the imports; this measures the time).

Each repetition runs every command once, in a rotating order (a noisy neighbour hits them
alike); the median and range over repetitions print beside the load average, and merge into
bench.json. Run by `make bench`; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 1.5  # issue 32: --help and a config error answer within 1.5 s on an idle machine


def byol_ray() -> list[str]:
    """The console script beside this Python (as a user runs it), else `python -m`."""
    script = Path(sys.executable).parent / "byol-ray"
    return [str(script)] if script.exists() else [sys.executable, "-m", "byol_ray.cli"]


def commands() -> dict[str, tuple[list[str], int]]:
    """Each measured command line with the exit status it must end with."""
    cli = byol_ray()
    return {
        "python -c pass": ([sys.executable, "-c", "pass"], 0),
        "byol-ray --help": ([*cli, "--help"], 0),
        "byol-ray show-config --preset cpu-mini": ([*cli, "show-config", "--preset",
                                                    "cpu-mini"], 0),
        "config error (train --set train.epoch=3)": ([*cli, "train", "--preset", "cpu-mini",
                                                      "--set", "train.epoch=3"], 2),
    }


def run_once(argv: list[str], status: int) -> float:
    """Wall seconds of one run; its exit status must be `status`."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != status:
        sys.exit(f"cli_startup: {' '.join(argv)} exited {done.returncode}, not {status}:\n"
                 f"{done.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args()
    measured = commands()
    names = list(measured)
    load_before = os.getloadavg()
    for argv, status in measured.values():  # untimed: the file cache warm for every one
        run_once(argv, status)
    per_rep: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(args.reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            per_rep[name].append(run_once(*measured[name]))
    load = [round(x, 2) for x in (*load_before, *os.getloadavg())]
    print(f"command-line start-up, {args.reps} repetitions (load average 1/5/15 min: "
          f"{load[0]}/{load[1]}/{load[2]} before, {load[3]}/{load[4]}/{load[5]} after; "
          f"{len(os.sched_getaffinity(0))} CPUs):")
    results = {}
    for name in names:
        times = per_rep[name]
        median = statistics.median(times)
        verdict = "" if name.startswith("python") else (
            f"; target <= {TARGET_S} s: {'met' if median <= TARGET_S else 'NOT met'}")
        print(f"  {name:42s} {median:6.2f} s  (per repetition {min(times):.2f} to "
              f"{max(times):.2f} s{verdict})")
        results[name] = {"median_s": median, "min_s": min(times), "max_s": max(times),
                         "per_rep_s": times}
    results["load_average"] = {"before": load[:3], "after": load[3:]}
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data["cli_startup"] = results
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"results merged into {args.out}")


if __name__ == "__main__":
    main()
