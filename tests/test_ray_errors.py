"""The one line a Ray error comes down to (byol_ray/runtime/ray_errors.py), on texts Ray 2.60
printed here: a Train worker SIGKILLed mid-run, and a worker raising."""

from byol_ray.runtime.ray_errors import cause_in, notice_in, worker_death_in

ADVICE = ("Worker unexpectedly exits with a connection error code 2. End of file. Some common "
          "causes include: (1) the process was killed by the OOM killer due to high memory "
          "usage, (2) ray stop --force was called, or (3) the worker crashed unexpectedly due "
          "to SIGSEGV or another unexpected error.")
KILLED_WORKER = f"""WorkerGroupError: Training failed due to worker errors:
[Rank 0 Error Snippet]:
A worker health check failed.
Worker info: Worker(
  actor=Actor(RayTrainWorker, 97fce67166f0cd968199a4e901000000),
  metadata=ActorMetadata(
    hostname='vm',
    node_id='7728bb0e91efa87c8239fdbed64b9db4bdeec84df0cae65cf4a0a799',
    node_ip='192.0.2.2',
    pid=23528,
  ),
  distributed_context=DistributedContext(world_rank=0, world_size=2, local_rank=0),
  log_file_path='/tmp/ray/session_x/logs/train/ray-train-app-worker-ba23.log',
)
The actor died unexpectedly before finishing this task.
\tclass_name: RayTrainWorker
\tpid: 23528
\tip: 192.0.2.2
The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker \
exit detail: {ADVICE}"""
RAYLET_NOTICE = ("A worker died or was killed while executing a task by an unexpected system "
                 "error. To troubleshoot the problem, check the logs for the dead worker. Lease "
                 "ID: 0300 Worker ID: 9770 Node ID: de8a Worker IP address: 192.0.2.2 Worker "
                 f"port: 33065 Worker PID: 22843 Worker exit type: SYSTEM_ERROR Worker exit "
                 f"detail: {ADVICE}")
RAISED_IN_WORKER = """WorkerGroupError: Training failed due to worker errors:
[Rank 0 Error Snippet]:
Traceback (most recent call last):
  File "worker.py", line 141, in train_loop
    raise FloatingPointError(f"loss is {loss} at epoch {epoch + 1}; the run diverged")
FloatingPointError: loss is nan at epoch 1; the run diverged
"""


def test_a_killed_train_worker_comes_down_to_its_pid_node_exit_and_log():
    assert cause_in(KILLED_WORKER) == (
        "Ray lost a worker (pid 23528, node 192.0.2.2): its worker process has died; exit "
        "SYSTEM_ERROR: Worker unexpectedly exits with a connection error code 2; its log: "
        "/tmp/ray/session_x/logs/train/ray-train-app-worker-ba23.log")


def test_the_raylets_notice_of_a_dead_worker_is_one_line_without_the_advice():
    assert notice_in(RAYLET_NOTICE) == (
        "Ray lost a worker (pid 22843, node 192.0.2.2): exit SYSTEM_ERROR: Worker "
        "unexpectedly exits with a connection error code 2")


def test_an_exception_raised_in_a_worker_is_its_own_last_line():
    assert cause_in(RAISED_IN_WORKER) == (
        "FloatingPointError: loss is nan at epoch 1; the run diverged")


def test_texts_that_tell_of_no_death_are_kept():
    assert worker_death_in("ValueError: x") is None
    assert cause_in("something odd happened") == "something odd happened"
    assert notice_in("Node ran low on memory. Killing the newest task.") == (
        "Node ran low on memory.")
