"""Tests of distributed numerics in real processes: N CPU processes in one gloo group."""

from __future__ import annotations

import multiprocessing as mp
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist


def run_gloo(target: Callable[[int, int, str], None], world: int, out_dir: Path,
             timeout_s: float = 240) -> None:
    """Run `target(rank, world, out_dir)` in `world` spawned processes joined by gloo.

    The processes save their results under `out_dir`; fails unless every one exits 0 in time.
    """
    port = _free_port()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank, args=(target, rank, world, port, str(out_dir)))
             for rank in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=timeout_s)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0] * world


def _rank(target: Callable[[int, int, str], None], rank: int, world: int, port: int,
          out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=120))
    try:
        target(rank, world, out_dir)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
