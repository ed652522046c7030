"""Online endpoints and their deployments: endpoint.py and deployment.py are the two nouns' verbs, records.py the
on-disk records both read, servers.py a deployment's inference servers as processes, routing.py how the verbs drive
the endpoint's router (aml_local/endpoints/router/), and mlflow_score.py the scoring script of an MLflow model
deployed with no code."""
