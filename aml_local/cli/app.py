"""`aml-local` on knack, the framework az is built on: knack parses the command line, prints the result with
-o/--output (json, jsonc, yaml, yamlc, table, tsv, none) after --query (JMESPath), and sets up --debug, --verbose
and --only-show-errors; what az adds on top of knack is followed here, each piece naming its source in azure-cli:
the exit codes and error lines of its exception handler, its parser's errors (parser.py), and the
"Command ran in" line under --verbose.

`main(argv)` runs in-process (tests, and other tools): knack's output goes to the sys.stdout of the call, and
the logging knack configures for one invocation is taken down again when main() returns, as is quiet.py's."""

import contextlib
import logging
import sys
import time
import traceback
from importlib import metadata

from jmespath.exceptions import JMESPathError
from knack import CLI
from knack.help import CLIHelp
from knack.log import CLILogging, cli_logger_names, get_logger
from knack.util import CLIError

from aml_local import AmlLocalError, ResourceNotFound, quiet, store
from aml_local.cli import custom
from aml_local.cli.commands import CommandsLoader
from aml_local.cli.parser import QUERY_REFERENCE, AzParser

logger = get_logger(__name__)

NAME = "aml-local"
# azure-cli's handle_exception (src/azure-cli-core/azure/cli/core/util.py): exit code 1 for every error but a
# ResourceNotFoundError, which exits 3. Argument errors exit 2, from the parser (parser.py).
EXIT_ERROR, EXIT_NOT_FOUND = 1, 3
WELCOME = "Run this project's `az ml` YAML on this machine: the `az ml` verbs it uses, with az's options."


class AmlLocalCLI(CLI):
    def get_cli_version(self):
        try:
            return f"{NAME} {metadata.version('aml-mnist')}"
        except metadata.PackageNotFoundError:
            return f"{NAME} (not installed as a package)"

    def exception_handler(self, ex):
        """azure-cli's handle_exception, for the errors aml-local raises: the traceback at debug level (shown with
        --debug), then one ERROR line; exit 3 for a missing named resource, else 1."""
        logger.debug(traceback.format_exc())
        if isinstance(ex, ResourceNotFound):
            logger.error(_one_line(ex))
            return EXIT_NOT_FOUND
        if isinstance(ex, AmlLocalError):
            logger.error(_one_line(ex))
        elif isinstance(ex, JMESPathError):
            # a query that compiled but failed on the result (az: InvalidArgumentValueError, with this wording)
            logger.error("Invalid jmespath query supplied for `--query`: %s", _one_line(ex))
            print(QUERY_REFERENCE, file=sys.stderr)
        elif isinstance(ex, CLIError):
            logger.error(_one_line(ex))  # az: UnclassifiedUserFault (--set usage, table output unavailable, ...)
        else:
            # az's CLIInternalError: a bug, not bad input; the traceback is what is worth reporting.
            logger.error("The command failed with an unexpected error. Here is the traceback:")
            logger.exception(ex)
        return EXIT_ERROR


class AmlLocalHelp(CLIHelp):
    def __init__(self, cli_ctx=None):
        super().__init__(cli_ctx=cli_ctx, welcome_message=WELCOME)


def _one_line(error) -> str:
    return " ".join(str(error).split())


@contextlib.contextmanager
def _logging_for_one_command():
    """knack configures logging for the process (the root logger and its `cli` loggers) and skips that when the
    root logger already has a handler, as it has under pytest or inside another tool: clear the root's handlers
    for the command so knack's console handlers are the ones in place, and put everything back afterwards."""
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in cli_logger_names]
    saved_root = (root.level, root.handlers[:])
    saved = [(lg, lg.level, lg.propagate, lg.handlers[:]) for lg in loggers]
    root.handlers = []
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.setLevel(saved_root[0])
        root.handlers = saved_root[1]
        for lg, level, propagate, handlers in saved:
            lg.setLevel(level)
            lg.propagate = propagate
            lg.handlers = handlers


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    # knack keeps its settings (the `[core] output` default, only_show_errors, no_color) in a config file in its
    # config folder, and in AML_LOCAL_<SECTION>_<OPTION> variables: the folder is the local store, our ~/.azure.
    try:
        config_dir = str(store.home())
    except AmlLocalError as err:
        print(f"ERROR: {_one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    cli = AmlLocalCLI(
        cli_name=NAME,
        config_dir=config_dir,
        config_env_var_prefix="AML_LOCAL",
        out_file=sys.stdout,  # the stream of this call (knack's default is the sys.stdout of its import)
        parser_cls=AzParser,
        commands_loader_cls=CommandsLoader,
        help_cls=AmlLocalHelp,
    )
    # Under --debug the libraries log at every level, as az shows its SDK's debug logs.
    quieted = contextlib.nullcontext() if CLILogging.DEBUG_FLAG in argv else quiet.libraries()
    with _logging_for_one_command(), quieted:
        try:
            code = cli.invoke(argv)
        except SystemExit as exit_:  # argparse: -h (0) and argument errors (2); sys.exit's meaning of the code
            code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
        failure = cli.data[custom.FAILURE]
        if code == 0 and failure:
            logger.error(_one_line(failure))
            code = EXIT_ERROR
        # azure-cli's __main__.py logs this at INFO, shown by --verbose.
        logger.info("Command ran in %.3f seconds", time.perf_counter() - started)
    return code
