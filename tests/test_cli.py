"""`aml-local` behaves as az does: it runs on knack, az's CLI framework, so each test here checks one behaviour
against the source it comes from:
- knack (microsoft/knack): knack/cli.py (invoke, exit codes, color), knack/output.py (the -o formats),
  knack/query.py (--query), knack/log.py (--debug, --verbose, --only-show-errors), knack/help.py (-h);
- azure-cli (Azure/azure-cli, src/azure-cli-core/azure/cli/core/): util.py handle_exception (exit 1, or 3 for a
  ResourceNotFoundError), azclierror.py (the ERROR line, the traceback at debug level), parser.py (argument errors:
  one ERROR line, exit 2), _output.py (jsonc/yamlc drop their color off a terminal), and src/azure-cli/azure/cli/
  __main__.py ("Command ran in" at INFO, exit 1 on Ctrl-C);
- az ml (Azure/azure-cli-extensions, src/machinelearningservices/azext_mlv2/manual/): action.py (--set),
  commands.py and _format.py (list shapes and table columns), custom/*.py (which 404s become other errors).
Commands run in-process through cli.main (their output reaches capsys), but for the console entry point test."""

import json
import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from aml_local import cli
from aml_local.cli import custom_assets

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPUTE_YML = REPO_ROOT / "compute/cpu-cluster.yml"
ENDPOINT_YML = REPO_ROOT / "endpoints/endpoint.yml"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

JOB = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
code: src
command: echo ${{inputs.greeting}} ${{inputs.count}}
inputs:
  greeting: hello
  count: 1
environment: azureml:tiny-env@latest
compute: azureml:cpu-cluster
"""

# A sweep the tool warns about (a search-space parameter the trial never uses) and then refuses before running
# anything (its command names an input the sweep does not have).
SWEEP_THAT_WARNS = """\
$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
type: sweep
trial:
  code: src
  command: echo ${{search_space.x}} ${{inputs.nothing}}
  environment: azureml:tiny-env@latest
search_space:
  x:
    type: choice
    values: [1]
  unused:
    type: choice
    values: [1]
sampling_algorithm: grid
objective:
  goal: maximize
  primary_metric: acc
limits:
  max_total_trials: 1
"""


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def compute(home, capsys):
    """The project's cpu-cluster, recorded: a quick resource to show in every format."""
    code, _, err = run_cli(capsys, "compute", "create", "-f", COMPUTE_YML, "-o", "none")
    assert code == 0, err
    return "cpu-cluster"


@pytest.fixture
def project(tmp_path, project_environments):
    (tmp_path / "project" / "src").mkdir(parents=True)
    project_environments(tmp_path / "project")  # the tiny-env its jobs name
    return tmp_path / "project"


def shown(capsys, *argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    return out


# ---------------------------------------------------------------------------------------------------------------
# -o/--output: knack/output.py's formatters.


def test_json_is_knacks_sorted_two_space_json(compute, capsys):
    out = shown(capsys, "compute", "show", "-n", compute)
    parsed = json.loads(out)
    # format_json: json.dumps(..., ensure_ascii=False, indent=2, sort_keys=True, separators=(',', ': ')) + '\n'
    assert out == json.dumps(parsed, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    assert parsed["name"] == compute and parsed["size"] == "Standard_DS3_v2"


def test_jsonc_and_yamlc_are_plain_off_a_terminal(compute, capsys):
    # az's AzOutputProducer.get_formatter (and knack's, when color is off) drops the "c" when stdout is no tty.
    as_json = shown(capsys, "compute", "show", "-n", compute)
    assert shown(capsys, "compute", "show", "-n", compute, "-o", "jsonc") == as_json
    as_yaml = shown(capsys, "compute", "show", "-n", compute, "-o", "yaml")
    assert shown(capsys, "compute", "show", "-n", compute, "-o", "yamlc") == as_yaml
    # format_yaml: yaml.safe_dump(result, default_flow_style=False): block style, keys sorted, same content.
    assert yaml.safe_load(as_yaml) == json.loads(as_json)
    assert as_yaml.startswith("description: ") and "\nname: cpu-cluster\n" in as_yaml


def test_yamlc_is_colored_yaml_on_a_terminal(compute, capsys, monkeypatch):
    # knack's CLI._should_enable_color: stdout and stderr are terminals and the output goes to stdout; then yamlc
    # is format_yaml_color, pygments' YAML highlighting of the same text.
    plain = shown(capsys, "compute", "show", "-n", compute, "-o", "yaml")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    colored = shown(capsys, "compute", "show", "-n", compute, "-o", "yamlc")
    assert "\x1b[" in colored
    assert ANSI.sub("", colored) == plain


def test_none_prints_nothing_but_the_command_runs(home, capsys):
    code, out, err = run_cli(capsys, "compute", "create", "-f", COMPUTE_YML, "--name", "quiet-one", "-o", "none")
    assert (code, out, err) == (0, "", "")
    assert json.loads(shown(capsys, "compute", "show", "-n", "quiet-one"))["name"] == "quiet-one"


def test_tsv_is_what_scripts_parse(compute, capsys):
    # format_tsv: one line per item of a list; a dict's values tab-separated in key order (a --query's
    # multiselect hash keeps its own order), a nested dict as an empty field, a list as its length;
    # a bare boolean is true/false; None is written as None.
    assert shown(capsys, "compute", "show", "-n", compute, "--query", "size", "-o", "tsv") == "Standard_DS3_v2\n"
    picked = shown(
        capsys, "compute", "show", "-n", compute, "--query", "{n: name, s: size, m: max_instances}", "-o", "tsv"
    )
    assert picked == "cpu-cluster\tStandard_DS3_v2\t4\n"
    assert (
        shown(capsys, "compute", "show", "-n", compute, "--query", "[name, tier]", "-o", "tsv")
        == "cpu-cluster\ndedicated\n"
    )
    assert shown(capsys, "compute", "show", "-n", compute, "--query", "contains(name, 'cpu')", "-o", "tsv") == "true\n"
    assert (
        shown(capsys, "compute", "show", "-n", compute, "--query", "[[name, nothing]]", "-o", "tsv")
        == "cpu-cluster\tNone\n"
    )
    whole = shown(capsys, "compute", "show", "-n", compute, "-o", "tsv").rstrip("\n").split("\t")
    full = json.loads(shown(capsys, "compute", "show", "-n", compute))
    assert whole == ["" if isinstance(full[k], dict) else str(full[k]) for k in sorted(full)]


def test_the_default_output_comes_from_knacks_config(compute, capsys, monkeypatch):
    # knack's CLIConfig: [core] output from the config file or <PREFIX>_CORE_OUTPUT (az: AZURE_CORE_OUTPUT); the
    # prefix here is AML_LOCAL, the config folder the local store.
    monkeypatch.setenv("AML_LOCAL_CORE_OUTPUT", "tsv")
    assert shown(capsys, "compute", "show", "-n", compute, "--query", "name") == "cpu-cluster\n"
    assert json.loads(shown(capsys, "compute", "show", "-n", compute, "--query", "name", "-o", "json")) == compute


def test_a_query_that_selects_nothing_prints_nothing(compute, capsys):
    # knack's invoke writes the result only when it is not None.
    assert shown(capsys, "compute", "show", "-n", compute, "--query", "nothing", "-o", "tsv") == ""


def test_table_of_a_show_is_knacks_auto_table(compute, capsys):
    # _TableOutput: with no table transformer and no --query, keys sorted, first letter capitalized; id, type and
    # etag left out, as are nested values and None.
    lines = shown(capsys, "compute", "show", "-n", compute, "-o", "table").splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    assert header == [
        "Description",
        "Idle_time_before_scale_down",
        "Location",
        "Max_instances",
        "Min_instances",
        "Name",
        "Provisioning_state",
        "Size",
        "Tier",
    ]
    assert set(lines[1].replace(" ", "")) == {"-"} and "cpu-cluster" in lines[2]


def test_endpoint_list_has_az_mls_shape_in_every_format(home, capsys):
    # az ml registers `online-endpoint list` with transform=transform_endpoint_list, applied before any output.
    shown(capsys, "online-endpoint", "create", "-f", ENDPOINT_YML, "-o", "none")
    listed = json.loads(shown(capsys, "online-endpoint", "list"))
    assert [sorted(e) for e in listed] == [
        sorted(["name", "location", "traffic", "mirror_traffic", "provisioning_state", "kind", "tags"])
    ]
    assert listed[0]["name"] == "mnist-endpoint" and listed[0]["provisioning_state"] == "Succeeded"
    header = re.split(r"\s{2,}", shown(capsys, "online-endpoint", "list", "-o", "table").splitlines()[0].strip())
    assert header == ["Kind", "Location", "Name", "Provisioning_state"]  # traffic, tags: dicts, left out
    # --query works on the transformed rows, as in az.
    assert shown(capsys, "online-endpoint", "list", "--query", "[].name", "-o", "tsv") == "mnist-endpoint\n"


def test_model_list_has_az_mls_shape_and_table(home, tmp_path, capsys):
    # az ml: `model list` with transform=transform_model_list (every output) and table_transformer=transform_model,
    # which hands the rows back unchanged: knack's table then keeps their key order (no sorting), leaving out id
    # and the nested values (tags, properties, creation_context).
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "w.bin").write_bytes(b"\x00")
    argv = ["--name", "tiny", "--path", tmp_path / "weights", "--type", "custom_model", "-o", "none"]
    shown(capsys, "model", "create", *argv)
    listed = json.loads(shown(capsys, "model", "list"))
    assert list(listed[0]) == [
        "creation_context",
        "description",
        "id",
        "model type",
        "name",
        "path",
        "properties",
        "stage",
        "tags",
        "version",
    ]  # sorted by knack's JSON output
    assert (listed[0]["name"], listed[0]["version"], listed[0]["model type"]) == ("tiny", "1", "custom_model")
    lines = shown(capsys, "model", "list", "-o", "table").splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == ["Name", "Stage", "Description", "Version", "Model type", "Path"]
    assert lines[2].split()[:4] == ["tiny", "Development", "1", "custom_model"]  # an empty description


# ---------------------------------------------------------------------------------------------------------------
# --query


def test_a_query_that_does_not_compile_is_an_argument_error(compute, capsys):
    # knack's --query has type=CLIQuery.jmespath_type; argparse reports the ValueError and az's parser adds the
    # --query reference (parser.py error(): QUERY_REFERENCE).
    code, out, err = run_cli(capsys, "compute", "show", "-n", compute, "--query", "[[")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "ERROR: argument --query: invalid jmespath_type value: '[['",
        "To learn more about --query, please visit: 'https://docs.microsoft.com/cli/azure/query-azure-cli'",
    ]


def test_a_query_that_fails_on_the_result_is_a_user_error(compute, capsys):
    # handle_exception: JMESPathError -> "Invalid jmespath query supplied for `--query`: ..." (exit 1).
    code, out, err = run_cli(capsys, "compute", "show", "-n", compute, "--query", "abs(name)")
    assert code == 1 and out == ""
    assert err.startswith("ERROR: Invalid jmespath query supplied for `--query`: ")
    assert "invalid type for value: cpu-cluster" in err


# ---------------------------------------------------------------------------------------------------------------
# --debug, --verbose, --only-show-errors: knack/log.py


def test_debug_shows_the_traceback_of_an_error(home, capsys):
    # azclierror.py print_error and util.py handle_exception log traceback.format_exc() at DEBUG: seen with --debug.
    code, _, err = run_cli(capsys, "compute", "show", "-n", "nope")
    assert code == 3 and "Traceback" not in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "compute", "show", "-n", "nope", "--debug")
    assert code == 3
    assert "Traceback (most recent call last):" in err
    assert "aml_local.ResourceNotFound: compute 'nope' not found" in err
    # at debug level knack's format names the logger: LEVEL: logger: message
    assert "ERROR: cli.aml_local.cli.app: compute 'nope' not found" in err


def test_verbose_adds_info_lines_and_debug_adds_debug_lines(compute, capsys):
    _, _, quiet = run_cli(capsys, "compute", "show", "-n", compute, "-o", "none")
    assert quiet == ""
    _, _, verbose = run_cli(capsys, "compute", "show", "-n", compute, "-o", "none", "--verbose")
    assert re.fullmatch(r"INFO: Command ran in \d+\.\d{3} seconds\n", verbose)
    _, _, debug = run_cli(capsys, "compute", "show", "-n", compute, "-o", "none", "--debug")
    assert "DEBUG: cli.knack.cli: Command arguments: ['compute', 'show', '-n', 'cpu-cluster'" in debug
    assert "INFO: cli.aml_local.cli.app: Command ran in" in debug


def test_only_show_errors_hides_warnings_not_errors(project, home, capsys):
    spec = project / "sweep.yml"
    spec.write_text(SWEEP_THAT_WARNS)
    code, _, err = run_cli(capsys, "job", "create", "-f", spec)
    assert code == 1
    lines = err.splitlines()
    assert lines[0].startswith("WARNING: search_space.unused: unused is not used in trial.command")
    assert lines[-1].startswith("ERROR: ") and "${{inputs.nothing}}" in lines[-1]
    code, _, err = run_cli(capsys, "job", "create", "-f", spec, "--only-show-errors")
    assert code == 1
    assert "WARNING" not in err and err.startswith("ERROR: ") and err.count("\n") == 1


def test_only_show_errors_cannot_go_with_debug(home, capsys):
    # knack's CLILogging._determine_log_level raises this CLIError (exit 1).
    code, _, err = run_cli(capsys, "job", "list", "--only-show-errors", "--debug")
    assert code == 1 and "--only-show-errors can't be used together with --debug or --verbose" in err


def test_the_clis_logging_and_warning_settings_do_not_outlive_main(compute, capsys):
    root, cli_logger, azure = logging.getLogger(), logging.getLogger("cli"), logging.getLogger("azure")

    def state():
        return (
            root.level,
            list(root.handlers),
            cli_logger.level,
            cli_logger.propagate,
            list(cli_logger.handlers),
            azure.level,
            list(warnings.filters),
        )

    before = state()
    for argv in (["compute", "show", "-n", compute], ["compute", "show", "-n", "nope", "--debug"], ["job", "-h"]):
        run_cli(capsys, *argv)
        assert state() == before, argv


# ---------------------------------------------------------------------------------------------------------------
# -h: knack/help.py's layout


def test_command_help_has_azs_sections(home, capsys):
    code, out, _ = run_cli(capsys, "job", "create", "-h")
    assert code == 0
    lines = out.splitlines()
    for section in ("Command", "Arguments", "Global Arguments", "Examples"):
        assert section in lines, section
    assert "    aml-local job create : Create a job from a YAML file and run it." in lines
    assert re.search(r"^    --file -f \[Required\] +: Job YAML", out, re.M)
    assert re.search(r"^    --set +: ", out, re.M) and re.search(r"^    --stream -s +: ", out, re.M)
    for option in ("--debug", "--help -h", "--only-show-errors", "--output -o", "--query", "--verbose"):
        assert re.search(rf"^    {option} +: ", out, re.M), option
    assert "Allowed values: json, jsonc, none, table, tsv, yaml," in out


def test_group_help_and_the_welcome_list_the_commands(home, capsys):
    code, out, _ = run_cli(capsys, "online-endpoint", "-h")
    assert code == 0 and "Group" in out.splitlines() and "Commands:" in out.splitlines()
    assert re.search(r"^    get-credentials +: ", out, re.M)
    code, out, _ = run_cli(capsys)
    assert code == 0
    groups = [line.split(":")[0].strip() for line in out.splitlines() if re.match(r"^    \S+ +: ", line)]
    assert groups == [
        "component", "compute", "data", "environment", "job", "model", "online-deployment", "online-endpoint",
        "tracking-server",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Exit codes and error lines


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # parser.py error(): argparse's message on one ERROR line (no usage block), exit 2
        (["job", "create"], "ERROR: the following arguments are required: --file/-f"),
        (["job", "show", "-n", "x", "--wait"], "ERROR: unrecognized arguments: --wait"),
        (["job", "list", "--max-results", "many"], "ERROR: argument --max-results/-r: invalid int value: 'many'"),
        # parser.py _check_value(): a bad choice, and a command name that is not one
        (
            ["job", "show", "-n", "x", "-o", "text"],
            "ERROR: aml-local job show: 'text' is not a valid value for '--output'.",
        ),
        (["job", "rollout"], "ERROR: 'rollout' is misspelled or not recognized by the system."),
    ],
)
def test_a_command_line_that_does_not_parse_exits_2(home, capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.splitlines()[0] == message


def test_a_near_miss_gets_azs_did_you_mean(home, capsys):
    code, _, err = run_cli(capsys, "job", "crate", "-f", "x.yml")
    assert code == 2
    assert err.splitlines() == [
        "ERROR: 'crate' is misspelled or not recognized by the system.",
        "Did you mean 'create' ?",
    ]


def test_a_missing_named_resource_exits_3_and_other_errors_exit_1(home, capsys):
    # handle_exception: a ResourceNotFoundError (Azure's 404 for a GET of the named resource) exits 3.
    for argv in (
        ["job", "show", "-n", "nope"],
        ["compute", "show", "-n", "nope"],
        ["online-endpoint", "show", "-n", "nope"],
        ["online-endpoint", "get-credentials", "-n", "nope"],
        ["online-deployment", "list", "-e", "nope"],
        ["model", "show", "-n", "nope", "--version", "1"],
        ["data", "show", "-n", "nope", "--version", "1"],
    ):
        code, out, err = run_cli(capsys, *argv)
        assert (code, out) == (3, ""), argv
        assert err.startswith("ERROR: ") and "not found" in err and err.count("\n") == 1, argv
    # az ml turns these 404s into other errors (exit 1): the latest version is found by listing (azure-ai-ml's
    # _get_latest raises a ValidationException), deployment show and endpoint update/delete raise ValueError.
    for argv in (
        ["model", "show", "-n", "nope", "--label", "latest"],
        ["data", "show", "-n", "nope"],
        ["online-deployment", "show", "-n", "blue", "-e", "nope"],
        ["online-endpoint", "update", "-n", "nope", "--traffic", "blue=100"],
        ["online-endpoint", "delete", "-n", "nope", "--yes"],
    ):
        code, _, err = run_cli(capsys, *argv)
        assert code == 1 and err.startswith("ERROR: ") and "not found" in err, argv
    # a user error: UnclassifiedUserFault, exit 1
    code, _, err = run_cli(capsys, "job", "create", "-f", "nope.yml")
    assert code == 1 and err == "ERROR: --file nope.yml: no such file\n"


def test_version_and_label_together_are_refused_as_the_sdk_does(home, capsys):
    # azure-ai-ml ModelOperations.get: "Cannot specify both version and label." (a ValidationException: exit 1)
    code, _, err = run_cli(capsys, "model", "show", "-n", "m", "--version", "1", "--label", "latest")
    assert code == 1 and err == "ERROR: give --version or --label, not both\n"


def test_an_unexpected_error_prints_its_traceback_and_ctrl_c_exits_1(compute, capsys, monkeypatch):
    def broken(name):
        raise RuntimeError("a bug")

    monkeypatch.setattr(custom_assets, "compute_show", broken)
    code, out, err = run_cli(capsys, "compute", "show", "-n", compute)
    # handle_exception's last branch: CLIInternalError with this line, then the traceback
    assert code == 1 and out == ""
    assert err.startswith("ERROR: The command failed with an unexpected error. Here is the traceback:\n")
    assert "Traceback (most recent call last):" in err and "RuntimeError: a bug" in err

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(custom_assets, "compute_show", interrupted)
    # knack's invoke: KeyboardInterrupt -> exit code 1 (azure-cli's __main__ exits 1 on it too)
    assert run_cli(capsys, "compute", "show", "-n", compute)[0] == 1


def test_the_console_entry_point_exits_as_main_returns(home):
    env = {"AML_LOCAL_HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "aml_local", "compute", "show", "-n", "nope", "-o", "tsv"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.startswith("ERROR: compute 'nope' not found")


# ---------------------------------------------------------------------------------------------------------------
# --set, as az ml has it (action.py, OverridePropertiesBySet with nargs="+")


def test_set_splits_at_the_first_equals_keeps_strings_and_takes_several_pairs(project, home, capsys):
    spec = project / "job.yml"
    spec.write_text(JOB)
    argv = ["job", "create", "-f", spec, "--stream", "-n", "set_job", "-o", "none"]
    # several pairs after one --set, and --set again
    code, out, err = run_cli(
        capsys, *argv, "--set", "inputs.greeting=a=b", "inputs.count=007", "--set", "display_name=x y"
    )
    assert code == 0, err
    assert "a=b 007" in out  # the command saw the values as given
    job = json.loads(shown(capsys, "job", "show", "-n", "set_job"))
    assert job["inputs"] == {"greeting": "a=b", "count": "007"}  # split at the first "=", kept as strings
    assert job["display_name"] == "x y"
    # a word without "=": az ml's CLIError (exit 1) with its usage line
    code, _, err = run_cli(capsys, "job", "create", "-f", spec, "--set", "inputs.count=2", "greeting")
    assert code == 1 and err == "ERROR: usage error: --set KEY=VALUE [KEY=VALUE ...]\n"
