"""How long and how hard each scenario runs: SHORT for the tests (`make test`), LONG for `make soak`."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Settings:
    # The endpoint under wrk: seconds per connection count (after a warm-up of at most warmup_seconds). The project's
    # deployment's capacity is 2 x 4 x 1 = 8 requests in progress (Azure's limit): 8 is within it, 16 and 64 beyond.
    load_seconds: int
    load_connections: tuple[int, ...]
    warmup_seconds: int
    # The sleepy deployment: clients at once, each sending requests_per_client requests whose run() sleeps sleep_s.
    overload_clients: int
    overload_requests_per_client: int
    overload_sleep_s: float
    # Bad requests generated from /swagger.json (Hypothesis), and the seed of everything random.
    generated_examples: int
    seed: int
    # train.py: epochs of the killed and of the reference run; SIGKILLs at random instants and during a checkpoint
    # write; the arguments of the 1-epoch runs (disk full) and of the others (the model the endpoint scenarios
    # deploy, the reference run, the killed one).
    epochs: int
    random_kills: int
    write_kills: int
    short_run_args: tuple[str, ...]
    training_args: tuple[str, ...]


# Side by side: (SHORT, bounded for `make test`: each scenario in seconds; LONG, `make soak`, about 6 minutes on
# 2 cores; bench/soak.py's options override some of these).
_SHORT_AND_LONG = {
    "load_seconds": (5, 60),
    "load_connections": ((8, 16), (8, 16, 64)),
    "warmup_seconds": (2, 10),
    "overload_clients": (8, 16),
    "overload_requests_per_client": (3, 4),
    "overload_sleep_s": (0.4, 0.4),
    "generated_examples": (300, 1000),
    "seed": (1, 6),
    "epochs": (3, 10),
    "random_kills": (1, 5),
    "write_kills": (2, 3),
    "short_run_args": (("--validation-size", "500"), ("--train-subset", "2000")),
    "training_args": (("--train-subset", "6000", "--validation-size", "500"), ()),
}
SHORT = Settings(**{name: short for name, (short, _) in _SHORT_AND_LONG.items()})
LONG = Settings(**{name: long for name, (_, long) in _SHORT_AND_LONG.items()})
