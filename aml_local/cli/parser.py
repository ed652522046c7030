"""Argument errors as az prints them, and az ml's --set.

knack's own parser leaves argparse's usage block and `prog: error:` line in place; az's parser (AzCliCommandParser,
Azure/azure-cli src/azure-cli-core/azure/cli/core/parser.py) prints one `ERROR: <message>` line instead, then any
recommendation, and exits 2: that is the parser here, less az's AI-suggested examples and extension installs."""

import argparse
import difflib
import sys

from knack.arguments import CaseInsensitiveList
from knack.log import get_logger
from knack.parser import CLICommandParser
from knack.util import CLIError

logger = get_logger(__name__)

# azure-cli's util.QUERY_REFERENCE, printed after an error about --query.
QUERY_REFERENCE = "To learn more about --query, please visit: 'https://docs.microsoft.com/cli/azure/query-azure-cli'"
# The dests knack gives the subparsers of command groups (knack/parser.py): a bad value there is a bad command name.
COMMAND_DESTS = ("_command", "_subcommand")


class AzParser(CLICommandParser):
    def _fail(self, message, recommendation=None):
        logger.error(message)
        if recommendation:
            print(recommendation, file=sys.stderr)
        self.exit(2)

    def error(self, message):
        # az: the unrecognized / required / invalid argument errors, each one ERROR line and exit code 2.
        self._fail(message, QUERY_REFERENCE if "--query" in message else None)

    def validation_error(self, message):
        self._fail(message)

    def _check_value(self, action, value):
        if action.choices is None or value in action.choices:
            return
        candidates = difflib.get_close_matches(value, action.choices, cutoff=0.7)
        if action.dest in COMMAND_DESTS:
            message = f"'{value}' is misspelled or not recognized by the system."
        else:
            option = action.option_strings[0] if action.option_strings else action.dest
            message = f"{self.prog}: '{value}' is not a valid value for '{option}'."
        self._fail(message, f"Did you mean '{candidates[0]}' ?" if candidates else None)


class SetPairs(argparse._AppendAction):
    """az ml's --set (azext_mlv2/manual/action.py, OverridePropertiesBySet, with nargs="+"): each --set takes one or
    more KEY=VALUE words, split at the first "=" with the value kept as a string, and appends them as one dict;
    --set may be repeated. A word without "=" is a CLIError there (exit 1), with this message."""

    def __call__(self, parser, namespace, values, option_string=None):
        pairs = {}
        for word in values:
            key, sep, value = word.partition("=")
            if not sep:
                raise CLIError(f"usage error: {option_string} KEY=VALUE [KEY=VALUE ...]")
            pairs[key] = value
        super().__call__(parser, namespace, pairs, option_string)


class TagPairs(argparse.Action):
    """azure-cli's tags_type (azure/cli/core/commands/parameters.py, validate_tags): space-separated KEY[=VALUE] words
    into one dict, a word without "=" giving an empty value."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, {k: v for k, _, v in (word.partition("=") for word in values)})


# azure-cli's get_three_state_flag (azure/cli/core/commands/parameters.py): a flag that may stand alone (true) or take
# true/false, compared without case; the az ml reference shows these as `[--local {false, true}]`.
THREE_STATE_CHOICES = CaseInsensitiveList(["true", "false"])


class ThreeStateFlag(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, (values or "true").lower() == "true")


def three_state(help_text: str) -> dict:
    """The argument settings of a three-state flag, for ArgumentsContext.argument(dest, **three_state(...))."""
    return {"nargs": "?", "choices": THREE_STATE_CHOICES, "action": ThreeStateFlag, "help": help_text}


class GenericUpdate(argparse.Action):
    """azure-cli's generic update arguments (azure/cli/core/commands/arm.py, _cli_generic_update_command): --set,
    --add and --remove, each one or more words and repeatable, applied in the order they are given. Each use is
    kept in its own dest as (position, option, words); the position comes from a counter on the namespace (knack
    passes no attribute starting with '_' to the command), so the command can replay them in order."""

    def __call__(self, parser, namespace, values, option_string=None):
        position = getattr(namespace, "_generic_update_position", 0)
        namespace._generic_update_position = position + 1
        kept = list(getattr(namespace, self.dest, None) or [])
        kept.append((position, option_string, list(values)))
        setattr(namespace, self.dest, kept)
