"""Batch endpoints and their deployments: endpoint.py and deployment.py are the two nouns' verbs (their on-disk
records are aml_local/endpoints/records.py's BATCH), scoring.py the batch scoring job that `batch-endpoint invoke`
starts (a pipeline job with one parallel step, run by aml_local/jobs/parallel.py), and mlflow_driver.py the scoring
script of an MLflow model deployed with no code."""
