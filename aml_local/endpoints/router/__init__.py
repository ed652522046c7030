"""The endpoint's front end, one scoring URI before its deployments as Azure's: server.py (one process per endpoint,
`python -m aml_local.endpoints.router`), with routing_table.py (its rules and file), client_side.py (requests in)
and upstream.py (the inference servers behind it). It imports nothing of the verbs: they drive it through its file."""
