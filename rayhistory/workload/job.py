"""The demo's submitted job: a few tasks that succeed."""

import ray


@ray.remote
def shout(word):
    print(word.upper())
    return word.upper()


ray.init()
print(ray.get([shout.remote(w) for w in ["ray", "history", "keeps", "this"]]))
