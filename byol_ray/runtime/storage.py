"""`--storage`, checked before training: one store that every node of the cluster reaches.

Ray Train's workers write a run's checkpoints to `--storage`, and a restarted or resumed run
reads them back, maybe on other nodes. On a cluster of more than one node it must be one
store for all: S3 (`s3://BUCKET/PREFIX`, an S3-compatible endpoint in pyarrow's URI options
`?endpoint_override=HOST:PORT&scheme=http`) or a network file system mounted at the same path
on every node; a folder on each node's own disk is refused. A Ray task on every node writes
and deletes one object with that node's own credentials, so a bad bucket, endpoint or key
stops the run with one line (exit 2) instead of a worker's traceback minutes later.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from byol_ray.core.config import ConfigError
from byol_ray.core.masking import mask

FIELD = "--storage"
DEFAULT = "~/ray_results"  # Ray's own default
CHECK_TIMEOUT_S = 120.0  # a worker process per node starts within this even on a busy machine
# Mount types that are one store for every machine mounting them (network file systems).
SHARED_MOUNTS = ("nfs", "nfs4", "lustre", "cifs", "smb3", "ceph", "glusterfs", "gpfs",
                 "beegfs", "fuse")


def join(storage: str, *parts: str) -> str:
    """`storage/part/...`, keeping pyarrow's URI options (`?endpoint_override=...`) last."""
    base, mark, options = storage.partition("?")
    return "/".join([base.rstrip("/"), *parts]) + mark + options


def check_storage(storage: str, nodes: list[dict]) -> None:
    """Raise ConfigError (naming the setting) unless every alive node of `nodes` (as
    `ray.nodes()` lists them) can write to `storage` ("": Ray's default folder)."""
    storage = storage or DEFAULT
    alive = {n["NodeID"]: n["NodeManagerAddress"] for n in nodes if n["Alive"]}
    endpoint = parse_qs(urlparse(storage).query).get("endpoint_override", [""])[0]
    if storage.startswith("s3://") and not endpoint and os.environ.get("AWS_ENDPOINT_URL"):
        address = urlparse(os.environ["AWS_ENDPOINT_URL"])
        raise ConfigError(FIELD, f"{storage} names no endpoint, but AWS_ENDPOINT_URL is set: "
                          "Ray's storage (pyarrow) does not read it and would ask AWS for the "
                          "bucket's region; give the endpoint in the URI: "
                          f"{storage}{'&' if '?' in storage else '?'}endpoint_override="
                          f"{address.netloc}&scheme={address.scheme}")
    if "://" not in storage and len(alive) < 2:
        return  # one machine: its own folder is everyone's
    problems = _on_every_node(storage, alive)
    for ip, (problem, has_key) in problems.items():
        if "://" not in storage:
            raise ConfigError(FIELD, f"{storage} is a folder on each node's own disk ({problem} "
                              f"on node {ip}) and the Ray cluster has {len(alive)} nodes: each "
                              "would keep its workers' checkpoints in its own folder, where a "
                              "restarted or resumed run would not find them; use s3://BUCKET/"
                              "PREFIX or a network file system mounted on every node")
        raise _s3_error(storage, endpoint or "AWS", ip, problem, has_key)


def _on_every_node(storage: str, nodes: dict[str, str]) -> dict[str, tuple[str, bool]]:
    """{node ip: (problem, whether its Ray processes have AWS_ACCESS_KEY_ID)} of every node
    where `_probe` found one, from a Ray task pinned to each node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    refs = {ip: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            .remote(storage) for node, ip in nodes.items()}
    _, late = ray.wait(list(refs.values()), num_returns=len(refs), timeout=CHECK_TIMEOUT_S)
    if late:
        ip = next(ip for ip, ref in refs.items() if ref in late)
        raise ConfigError(FIELD, f"node {ip} did not check {storage} within "
                          f"{CHECK_TIMEOUT_S:g} s (a Ray task that writes one object there)")
    return {ip: found for ip, ref in refs.items() if (found := ray.get(ref))[0]}


def _probe(storage: str) -> tuple[str, bool]:
    """On one node: ("", _) when it can use `storage`, else what is wrong (for a folder, the
    type of the file system holding it, unless that is a network one)."""
    has_key = bool(os.environ.get("AWS_ACCESS_KEY_ID"))
    if "://" not in storage:
        path, mount, kind = os.path.realpath(Path(storage).expanduser()), "", "?"
        for line in Path("/proc/mounts").read_text().splitlines():
            _, point, fstype = line.split()[:3]
            if (path + "/").startswith(point.rstrip("/") + "/") and len(point) >= len(mount):
                mount, kind = point, fstype
        return ("" if kind.split(".")[0] in SHARED_MOUNTS else kind), has_key
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(storage)
        name = f"{path}/.byol-ray-storage-check-{uuid.uuid4().hex}"
        with filesystem.open_output_stream(name) as out:
            out.write(b"ok")
        filesystem.delete_file(name)
    except Exception as error:  # pyarrow's OSError carries the S3 error code
        return re.sub(r" \(Request ID: [^)]*\)", "", str(error).splitlines()[0]), has_key
    return "", has_key


def _s3_error(storage: str, endpoint: str, ip: str, problem: str, has_key: bool) -> ConfigError:
    """The setting to change for what `_probe` met on node `ip`."""
    shown = mask(storage)  # no secret of the URI on the console (core/masking.py's rule)
    where = f"node {ip} cannot write to {shown}: {problem}"
    if "NO_SUCH_BUCKET" in problem:
        return ConfigError(FIELD, f"bucket {urlparse(storage).hostname!r} does not exist at "
                           f"{endpoint} ({where})")
    if "NETWORK_CONNECTION" in problem:
        return ConfigError(FIELD, f"no S3 endpoint answers at {endpoint}; check endpoint_override"
                           f" and scheme ({where})")
    if os.environ.get("AWS_ACCESS_KEY_ID") and not has_key:
        return ConfigError("AWS_ACCESS_KEY_ID", f"set for this driver but not for the Ray "
                           f"processes of node {ip}, which write the checkpoints: set it and "
                           "AWS_SECRET_ACCESS_KEY where that node's `ray start` runs, or give "
                           f"the node an instance profile ({where})")
    if re.search(r"ACCESS_DENIED|ACCESS_KEY|SIGNATURE|403", problem):  # the URI's or node's
        return ConfigError(FIELD if "@" in shown else "AWS_ACCESS_KEY_ID", f"the S3 endpoint at "
                           f"{endpoint} refused the credentials of node {ip} ({where})")
    return ConfigError(FIELD, where)
