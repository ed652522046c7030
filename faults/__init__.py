"""Fault scenarios: the endpoint, the trainer and the jobs under load, faults and bad input, written once.

`tests/` runs each scenario with `settings.SHORT` (bounded counts and durations, part of `make test`) and asserts
that its checks passed; `make soak` (`bench/soak.py`) runs the same scenarios with `settings.LONG` and prints each
check as one row of its PASS/FAIL table. A scenario is a function taking what it acts on (an `Aml` for the
aml-local commands, a `Target` for the scoring URI, a `Trainer`) and a `Settings`, and returning `Check`s: a name,
a figure, a verdict and, when it failed, what failed.

- `settings`:     SHORT and LONG.
- `checks`:       the `Check` every scenario returns.
- `aml`:          aml-local as a subprocess in a home of the caller's choosing; waiting (liveness: aml_local.processes).
- `client`:       requests to a scoring URI (127.0.0.1 only), a body declared too large, wrk for load.
- `bad_requests`: hand-written malformed requests and ones generated from the service's /swagger.json.
- `endpoint`:     the trained model's deployment and the sleepy one; load, overload, security, recovery.
- `training`:     train.py SIGKILLed and resumed, on a full disk, with a read-only output folder.
- `jobs`:         tiny job and sweep specs; a killed `job create --stream`, concurrent commands, trial_timeout.

The endpoint scenarios take a `Target` (scoring URI, key, endpoint and deployment name), never a deployment's port:
`endpoint.target_of` aims them at the endpoint's router, as a client calls it.
"""
