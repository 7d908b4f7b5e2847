"""Fan-out over a Ray cluster: our packages shipped with the job (py_modules), so every worker compacts and
queries with the driver's code and COMPACTION_VERSION; the cluster's image needs rayhistory's server
dependencies (DuckDB, pyarrow, boto3)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class RayUnavailable(RuntimeError):
    """Ray is not installed here, or the cluster cannot be reached."""


def connect(address: str) -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise RayUnavailable("--ray-address needs Ray on this machine: pip install 'ray[default]'") from None
    import archive
    import historyserver

    try:
        ray.init(
            address=address,
            runtime_env={"py_modules": [archive, historyserver], "excludes": ["__pycache__"]},
            log_to_driver=False,
            logging_level="WARNING",
        )
    except Exception as e:  # ConnectionError, or whatever ray.init raises for an address it cannot use
        raise RayUnavailable(f"cannot use the Ray cluster at {address!r}: {e}") from None
    return ray


def bounded(
    ray: Any,
    task: Any,
    calls: Iterable[tuple[Any, ...]],
    in_flight: int,
    done: Callable[[tuple[Any, ...], Any, BaseException | None], None],
) -> None:
    """Submit task.remote(*call) for each call, at most in_flight at once; done(call, result, error) as each ends."""
    pending: dict[Any, tuple[Any, ...]] = {}

    def finish(ready: list[Any]) -> None:
        for ref in ready:
            call = pending.pop(ref)
            try:
                done(call, ray.get(ref), None)
            except Exception as e:  # a task's failure (RayTaskError wraps it) is that call's, not the run's
                done(call, None, getattr(e, "cause", None) or e)

    for call in calls:
        while len(pending) >= in_flight:
            ready, _ = ray.wait(list(pending), num_returns=1)
            finish(ready)
        pending[task.remote(*call)] = call
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        finish(ready)
