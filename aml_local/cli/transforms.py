"""The shapes az ml gives its lists, column for column.

az ml registers two kinds of reshaping (Azure/azure-cli-extensions,
src/machinelearningservices/azext_mlv2/manual/commands.py, with the functions in manual/_format.py):
- `transform=`, applied to the result whatever the output format (azure-cli's _run_job calls it before any
  output): `online-endpoint list`, `online-deployment list`, `model list` and `environment list` (the batch
  nouns' lists are shaped in cli/batch.py);
- `table_transformer=`, applied by knack's table output only, and not when --query is given, to what `transform=`
  left: `job list`, `data list`, `environment list`, `component list`, `compute list` (and `model list`, whose
  transformer returns its rows unchanged).
The column lists below are read from those functions: (key shown, field of our result, value when missing).
"""


def _field(item: dict, path: str, default):
    value = item
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return value


def _rows(items, columns):
    return [{key: _field(item, path, default) for key, path, default in columns} for item in items]


# transform_job: `az ml job list -o table` (its "status" column is listed twice there; a dict keeps the first place).
JOB_TABLE = (
    ("name", "name", None),
    ("status", "status", None),
    ("experiment", "experiment_name", None),
    ("compute target", "compute", ""),
    ("job type", "type", None),
    ("created on", "creation_context.created_at", None),
)

# transform_endpoint_list: every output of `az ml online-endpoint list`.
ENDPOINT_LIST = tuple(
    (key, key, None) for key in ("name", "location", "traffic", "mirror_traffic", "provisioning_state", "kind", "tags")
)

# transform_deployment_list: every output of `az ml online-deployment list`.
DEPLOYMENT_LIST = tuple(
    (key, key, None) for key in ("name", "endpoint_name", "provisioning_state", "instance_type", "model", "type")
)

# transform_model_list: every output of `az ml model list`; "latest version" only for a row that has one, and the
# version columns only for a row with a version.
MODEL_LIST = (
    ("name", "name", None),
    ("tags", "tags", None),
    ("stage", "stage", None),
    ("id", "id", None),
    ("properties", "properties", None),
    ("description", "description", ""),
    ("creation_context", "creation_context", None),
)
LATEST_VERSION = (("latest version", "latest_version", None),)
MODEL_VERSION = (("version", "version", None), ("model type", "type", None), ("path", "path", None))


# transform_environment_list: every output of `az ml environment list`.
NAME = (("name", "name", None),)
VERSION = (("version", "version", None),)

# transform_data, transform_environment, transform_component, transform_compute: the tables (table_transformer
# only) of `data list`, `environment list`, `component list` and `compute list`; the version columns only for a row
# with a version.
ASSET_TABLE = (("name", "name", None), ("latest version", "latest_version", None))
# transform_data puts the version again under "data type" (its r.get("version")): read as written there.
DATA_VERSION = (("version", "version", None), ("data type", "version", None), ("path", "path", None))
COMPONENT_VERSION = (("version", "version", None), ("Component type", "type", None))
COMPUTE_TABLE = (
    ("name", "name", None),
    ("compute type", "type", None),
    ("state", "provisioning_state", None),  # transform_compute: state, else provisioning_state (none has a state)
    ("Instance type", "size", None),
)


def _versioned_rows(result, columns, version_columns, latest_columns=()):
    """`columns` in every row, then `latest_columns` in a row with a latest_version and `version_columns` in a row
    with a version, as az's asset transforms add them."""
    rows = []
    for item in result:
        latest = latest_columns if item.get("latest_version") else ()
        rows.append(_rows([item], [*columns, *latest, *(version_columns if item.get("version") else ())])[0])
    return rows


def data_table(result):
    return _versioned_rows(result, ASSET_TABLE, DATA_VERSION)


def environment_list(result):
    """transform_environment_list: every output of `az ml environment list` is the name, "latest version" (for an
    environment that has one) and version (for a version)."""
    return _versioned_rows(result, NAME, VERSION, LATEST_VERSION)


def environment_table(result):
    # transform_environment reads latest_version, which transform_environment_list has just renamed "latest
    # version": None, which knack's table leaves out: az's table is the names (and versions) alone, as this one.
    return _versioned_rows(result, ASSET_TABLE, VERSION)


def component_table(result):
    return _versioned_rows(result, ASSET_TABLE, COMPONENT_VERSION)


def compute_table(result):
    return _rows(result, COMPUTE_TABLE)


def job_table(result):
    return _rows(result, JOB_TABLE)


def model_table(result):
    """transform_model hands back the rows it is given (it appends each row, not the entry it builds): what it
    changes is that knack's table keeps the rows' key order rather than sorting the keys."""
    return result


def online_endpoint_list(result):
    return _rows(result, ENDPOINT_LIST)


def online_deployment_list(result):
    return _rows(result, DEPLOYMENT_LIST)


def model_list(result):
    return _versioned_rows(result, MODEL_LIST, MODEL_VERSION, LATEST_VERSION)
