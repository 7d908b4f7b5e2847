"""Ray's task status codes (ray.rpc.TaskStatus, reference ray-2.60/proto_event_schemas.txt), as the archived export
event files key a task's state times by them. Read by the collector's SLS sink and by the compaction alike."""

from __future__ import annotations

TASK_STATUS = {
    0: "NIL",
    1: "PENDING_ARGS_AVAIL",
    2: "PENDING_NODE_ASSIGNMENT",
    3: "PENDING_OBJ_STORE_MEM_AVAIL",
    4: "PENDING_ARGS_FETCH",
    5: "SUBMITTED_TO_WORKER",
    6: "PENDING_ACTOR_TASK_ARGS_FETCH",
    7: "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY",
    8: "RUNNING",
    9: "RUNNING_IN_RAY_GET",
    10: "RUNNING_IN_RAY_WAIT",
    11: "FINISHED",
    12: "FAILED",
    13: "GETTING_AND_PINNING_ARGS",
}
