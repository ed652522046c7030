"""Online endpoints and their deployments: endpoint.py and deployment.py are the two nouns' verbs, records.py the
on-disk records both read, router.py the endpoint's front end (one scoring URI before its deployments, as Azure's),
serving.py what runs in front of a deployment's inference server."""
