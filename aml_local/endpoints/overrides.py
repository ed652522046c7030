"""The --set pairs of the endpoint nouns' verbs, as params_override for azure-ai-ml's load_* functions: az ml passes
each --set as a {key: value} entry, then --name and --endpoint-name as entries after them
(azext_mlv2/manual/custom/online_deployment.py ml_online_deployment_create, batch_deployment.py alike), so a flag wins
over a --set of the same field."""

from aml_local.specs import parse_set_pairs


def deployment_overrides(pairs, name, endpoint_name, example: str) -> list[dict]:
    """A deployment YAML's params_override: the --set pairs, then --name and --endpoint-name when given."""
    overrides = [{key: value} for key, value in parse_set_pairs(pairs, example)]
    if name:
        overrides.append({"name": name})
    if endpoint_name:
        overrides.append({"endpoint_name": endpoint_name})
    return overrides
