"""Online endpoints and their deployments: endpoint.py and deployment.py are the two nouns' verbs, records.py the
on-disk records both read; the endpoint's front end, one scoring URI before its deployments as Azure's, is router.py
(with routing_table.py, client_side.py and upstream.py), and routing.py is how the verbs drive it."""
