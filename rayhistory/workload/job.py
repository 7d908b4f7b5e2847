"""The demo's submitted job: a few tasks that succeed, then a chain of dependent stages beside noise tasks (its
critical path on the timeline is the chain, though a noise task runs longer than any stage)."""

import time

import ray


@ray.remote
def shout(word):
    print(word.upper())
    return word.upper()


# Three functions rather than one with .options(name=...): Ray's export events record no task name, only the
# function's.
@ray.remote
def stage_a(seconds):
    time.sleep(seconds)
    return 1


@ray.remote
def stage_b(previous, seconds):
    time.sleep(seconds)
    return previous + 1


@ray.remote
def stage_c(previous, seconds):
    time.sleep(seconds)
    return previous + 1


@ray.remote
def noise_long(seconds):
    time.sleep(seconds)
    return seconds


@ray.remote
def noise(seconds):
    time.sleep(seconds)
    return seconds


ray.init()
print(ray.get([shout.remote(w) for w in ["ray", "history", "keeps", "this"]]))
# stage_a -> stage_b -> stage_c through object refs: b and c are submitted at once and wait for their argument.
chain = stage_c.remote(stage_b.remote(stage_a.remote(1.0), 1.0), 1.0)
busy = [noise_long.remote(1.5)] + [noise.remote(0.2) for _ in range(2)]
print("chain:", ray.get(chain), "noise:", ray.get(busy))
# Ray's workers flush task events about every second; give them one before the job ends and they are stopped.
time.sleep(2)
