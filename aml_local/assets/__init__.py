"""Versioned assets and the other nouns jobs and deployments refer to: model (the MLflow registry), data,
environment and compute; versions.py is their version/label handling, once."""
