"""aml-local's commands and flags held against az's (issue 22, part 1): tests/fake_az/az_spec.json lists, per `az ml`
command, every flag the ml extension gives it, with the source that declares it (azext_mlv2/manual/_params/*.py and
custom/*.py of Azure/azure-cli-extensions, azure-cli's core for --no-wait, the generic update flags and three-state
flags). In-process and fast: knack's command table and argparse parser as `aml-local` builds them, no servers.

- every aml-local verb of an az noun is an az command (only the local `tracking-server` noun is not), and the table
  lists no az command aml-local lacks;
- for each of them, every az flag (long and short, global ones and -g/-w too) is accepted by aml-local for the same
  argument, takes a value as az's does (none, one, one or more, or an optional true/false) and the same choices;
- aml-local has no flag az lacks there, and requires no flag az does not require."""

import argparse
import json
import pathlib

import pytest

from aml_local.cli.app import NAME, AmlLocalCLI, AmlLocalHelp
from aml_local.cli.commands import CommandsLoader
from aml_local.cli.parser import AzParser

SPEC = json.loads((pathlib.Path(__file__).parent / "fake_az" / "az_spec.json").read_text())
AZ_COMMANDS = {name.removeprefix("ml "): entry for name, entry in SPEC["commands"].items() if name.startswith("ml ")}
LOCAL_ONLY = {"tracking-server"}  # aml-local's own noun (the store's MLflow server): az ml has none
# knack's own options on every parser (argparse's -h, and none other outside the spec's globals).
KNACK_ONLY = {"--help", "-h"}


def _parsers(tmp_path_factory):
    """{command: its argparse parser}, built as knack's CommandInvoker.execute builds them (with the arguments of
    every command loaded, not only the one invoked)."""
    cli = AmlLocalCLI(
        cli_name=NAME,
        config_dir=str(tmp_path_factory.mktemp("knack")),
        config_env_var_prefix="AML_LOCAL",
        parser_cls=AzParser,
        commands_loader_cls=CommandsLoader,
        help_cls=AmlLocalHelp,
    )
    invoker = cli.invocation_cls(
        cli_ctx=cli, parser_cls=AzParser, commands_loader_cls=CommandsLoader, help_cls=AmlLocalHelp
    )
    cli.invocation = invoker
    loader = invoker.commands_loader
    loader.skip_applicability = True  # knack's switch (as doc tools use it): every argument context, not one command's
    table = loader.load_command_table(None)
    for name in table:
        loader.load_arguments(name)
    invoker.parser.load_command_table(loader)
    return {name: invoker.parser.subparsers[tuple(name.split()[:-1])].choices[name.split()[-1]] for name in table}


@pytest.fixture(scope="module")
def parsers(tmp_path_factory):
    return _parsers(tmp_path_factory)


def _az_flags(name):
    """{long flag: its spec entry} for an az command: the globals, -g/-w, then its own."""
    entry = AZ_COMMANDS[name]
    return {**SPEC["global"], **(SPEC["workspace"] if entry["workspace"] else {}), **entry["flags"]}


def _kind(action) -> str:
    """What an argparse action takes, in the spec's words."""
    if action.nargs == 0:
        return "none"
    if action.nargs == "?":
        return "optional"
    if action.nargs in ("+", "*"):
        return "many"
    return "one"


def test_the_verbs_of_az_nouns_are_the_tables_commands(parsers):
    ours = {name for name in parsers if name.split()[0] not in LOCAL_ONLY}
    assert sorted(ours - AZ_COMMANDS.keys()) == []
    assert sorted(AZ_COMMANDS.keys() - ours) == []
    assert len(ours) >= 60


def test_the_table_names_a_source_for_every_flag():
    for name, entry in AZ_COMMANDS.items():
        assert entry["source"] in SPEC["sources"], name
        for flag, info in entry["flags"].items():
            assert info["source"] in SPEC["sources"], (name, flag)
            assert info["value"] in ("none", "one", "many", "optional"), (name, flag)


@pytest.mark.parametrize("name", sorted(AZ_COMMANDS))
def test_each_az_flag_is_accepted_for_the_same_argument(parsers, name):
    options = parsers[name]._option_string_actions
    problems = []
    for flag, info in _az_flags(name).items():
        action = options.get(flag)
        if action is None:
            problems.append(f"{flag}: unrecognized")
            continue
        short = info.get("short")
        if short and options.get(short) is not action:
            problems.append(f"{short}: not {flag} here")
        if _kind(action) != info["value"]:
            problems.append(f"{flag}: takes {_kind(action)}, az's takes {info['value']}")
        if "choices" in info and sorted(str(c).lower() for c in action.choices or []) != sorted(info["choices"]):
            problems.append(f"{flag}: choices {list(action.choices or [])}, az's {info['choices']}")
    assert problems == []


@pytest.mark.parametrize("name", sorted(AZ_COMMANDS))
def test_no_flag_az_lacks_and_none_required_that_az_does_not_require(parsers, name):
    az = _az_flags(name)
    az_options = set(az) | {info["short"] for info in az.values() if "short" in info}
    ours = {
        option: action
        for option, action in parsers[name]._option_string_actions.items()
        if action.help != argparse.SUPPRESS
    }
    assert sorted(set(ours) - az_options - KNACK_ONLY) == []
    required = sorted({action.option_strings[0] for action in ours.values() if action.required})
    assert [flag for flag in required if flag not in AZ_COMMANDS[name]["required"]] == []
