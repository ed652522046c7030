"""Online endpoints and their deployments: endpoint.py and deployment.py are the two nouns' verbs, records.py the
on-disk records both read, serving.py what runs in front of a deployment's inference server."""
