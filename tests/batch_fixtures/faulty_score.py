"""A scoring script for the mini-batch engine's tests, with faults chosen by each input file's content:
`N` (a number) scores N*N; `raise` raises in run() on every try; `flaky` raises on its first try only; `corrupt` is
left out of the result (run() returns fewer rows: a failed item); `kill` kills the worker process on its first try;
`sleep` sleeps past the timeout on its first try. Each try of each file is noted in $TRIES_DIR/<file>.tries, so the
tests can count them. It imports only the standard library (the engine's tests run it without pandas)."""

import os
import signal
import time


def init():
    print("init", os.getpid(), flush=True)


def _note(path):
    with open(os.path.join(os.environ["TRIES_DIR"], os.path.basename(path) + ".tries"), "a") as tries:
        tries.write("try\n")
    with open(os.path.join(os.environ["TRIES_DIR"], os.path.basename(path) + ".tries")) as tries:
        return len(tries.readlines())


def run(mini_batch):
    rows = []
    for path in mini_batch:
        tries = _note(path)
        with open(path) as item:
            content = item.read().strip()
        name = os.path.basename(path)
        if content == "raise" or (content == "flaky" and tries == 1):
            raise ValueError(f"cannot score {name}")
        if content == "kill" and tries == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        if content == "sleep" and tries == 1:
            time.sleep(30)
        if content == "corrupt":
            print(f"skipping {name}: not a number", flush=True)
            continue
        value = int(content) if content.lstrip("-").isdigit() else 0
        rows.append(f"{name} {value * value}")
    return rows
