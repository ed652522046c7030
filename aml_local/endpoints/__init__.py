"""The endpoint nouns: online/ (online-endpoint, online-deployment) and batch/ (batch-endpoint, batch-deployment),
and router/, the front end of an online endpoint, apart from the verbs that drive it. What the two kinds share is
here: records.py (the on-disk records, laid out alike), overrides.py (--set pairs and --name/--endpoint-name as a
YAML's params_override) and deployment_sources.py (what a deployment YAML names: code, an inline model, an MLflow
model's requirements)."""
