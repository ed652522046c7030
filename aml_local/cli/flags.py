"""What the command functions of custom.py and custom_assets.py share: az's flags turned into what the verbs take, and
the one-line refusals of flags that have nothing to act on here."""

from knack.log import get_logger

from aml_local import AmlLocalError, ResourceNotFound

logger = get_logger(__name__)
# azext_mlv2's message where --local and --no-wait are both given (custom/online_endpoint.py, online_deployment.py).
LOCAL_AND_NO_WAIT = '"no_wait" and "local" options are mutually exclusive. Set only one option and try again.'
# azure-ai-ml's constants/_common.py LIMITED_RESULTSET_WARNING_FORMAT, which az ml prints before a list capped by
# --max-results (custom/raise_error.py print_limited_result_set_warning, called by ml_job_list).
LIMITED_RESULTSET_WARNING = "Displaying top {} results from the list command."


def pairs(params_override):
    """az ml's --set gives one {key: value} dict per --set (action.py's OverridePropertiesBySet): back to the
    `key=value` strings the job and deployment verbs take (and record, to reload a sweep's trials)."""
    return [f"{key}={value}" for each in params_override or [] for key, value in each.items()]


def set_dicts(params_override):
    """--set as az's params_override: a list of {key: value} dicts (action.py's OverridePropertiesBySet)."""
    return [{key: value} for each in params_override or [] for key, value in each.items()]


def no_web(web):
    # --web opens the entity in Azure ML studio (azext_mlv2's open_*_in_browser); there is none here.
    if web:
        logger.warning("--web: there is no Azure ML studio locally; ignored (the JSON below is what it would show)")


def refuse(flag, value, why):
    if value not in (None, False, ""):
        raise AmlLocalError(f"{flag}: {why}")


def no_registry(registry_name, what):
    """--registry-name targets an Azure ML registry instead of the workspace; here there is only this machine's
    store (environment show/list keep the azureml registry's curated catalog: custom_assets.py)."""
    refuse("--registry-name", registry_name, f"{what} live in this machine's store only; leave it out")


def local_flag(local, no_wait=False):
    """--local: every endpoint and deployment here is local, so it is accepted either way; with --no-wait it is
    az's error."""
    if local and no_wait:
        raise AmlLocalError(LOCAL_AND_NO_WAIT)


def exit_1_when_missing(call, *args, **kwargs):
    """Where az ml turns Azure's 404 into a ValueError (exit 1, not 3), so do we (the callers cite where)."""
    try:
        return call(*args, **kwargs)
    except ResourceNotFound as err:
        raise AmlLocalError(str(err)) from None


def version_or_label(version, label):
    # azure-ai-ml's ModelOperations.get (and DataOperations.get): "Cannot specify both version and label."
    if version is not None and label is not None:
        raise AmlLocalError("give --version or --label, not both")


def capped(shown: list, max_results):
    """The first max_results items, as az ml's list verbs islice them (--max-results/-r)."""
    return shown[:max_results] if max_results else shown
