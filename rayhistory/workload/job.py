"""The demo's submitted job: a few tasks that succeed."""

import time

import ray


@ray.remote
def shout(word):
    print(word.upper())
    return word.upper()


ray.init()
print(ray.get([shout.remote(w) for w in ["ray", "history", "keeps", "this"]]))
# Ray's workers flush task events about every second; give them one before the job ends and they are stopped.
time.sleep(2)
