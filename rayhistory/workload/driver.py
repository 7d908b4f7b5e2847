"""The demo's driver: tasks (some failing), an actor, an actor that fails to start, a retried task."""

import traceback

import ray


@ray.remote
def square(x):
    print(f"square({x})")
    return x * x


@ray.remote(max_retries=0)
def flaky(i):
    if i % 2:
        try:
            raise ValueError(f"intentional failure {i}")
        except ValueError:
            if i == 1:  # printed by the task too (log search finds it in its .err); failure 3 only Ray keeps
                traceback.print_exc()
            raise
    return i


@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        print(f"counter at {self.n}")
        return self.n


@ray.remote
class BrokenInit:
    def __init__(self):
        raise RuntimeError("this actor fails in __init__")

    def ping(self):
        return "pong"


def main():
    ray.init(namespace="rayhistory-demo")
    print("sum of squares:", sum(ray.get([square.remote(i) for i in range(8)])))
    failed = 0
    for ref in [flaky.remote(i) for i in range(4)]:
        try:
            ray.get(ref)
        except ray.exceptions.RayTaskError:
            failed += 1
    print(f"{failed} tasks failed as intended")
    counter = Counter.options(name="demo_counter").remote()
    print("counter:", ray.get([counter.incr.remote() for _ in range(3)])[-1])
    broken = BrokenInit.remote()
    try:
        ray.get(broken.ping.remote())
    except ray.exceptions.RayActorError:
        print("BrokenInit failed as intended")
    ray.kill(counter)


if __name__ == "__main__":
    main()
