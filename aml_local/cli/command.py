"""The command object of every `aml-local` command: knack's, with the arguments az adds to a command beside those
its function names, so each is accepted wherever az accepts it.

- `--resource-group/-g` and `--workspace-name/-w`: every `az ml` command of a workspace takes them (the ml
  extension's add_common_params, azext_mlv2/manual/_params/_common_params.py, and its functions' parameters). Here
  there is one workspace, the store in AML_LOCAL_HOME: they are accepted and ignored. A local-only noun
  (`tracking-server`) is registered with workspace=False and has neither.
- `--subscription`: a global argument of every az command (azure-cli's register_global_subscription_argument,
  azure/cli/core/commands/arm.py): accepted and ignored with -g/-w; its dest starts with "_", which knack never
  passes to a function.
- `--no-wait`: azure-cli's AzCliCommand adds it to every command registered with supports_no_wait=True, whether or
  not its function takes no_wait (azure/cli/core/commands/__init__.py, AzCliCommand.load_arguments); the ml
  extension registers its create/update/delete verbs so (azext_mlv2/manual/commands.py).

A function that names one of these arguments gets it (with its help from commands.py); one that does not never
sees it: the command drops it before calling the function, as knack would otherwise pass it on."""

from knack.arguments import CLICommandArgument
from knack.commands import CLICommand

WORKSPACE_ARGUMENTS = ("resource_group_name", "workspace_name")
NO_WAIT = "no_wait"
SUBSCRIPTION = "_subscription"
IGNORED = "Accepted and ignored: everything is in this machine's store (AML_LOCAL_HOME)."


class AzMlCommand(CLICommand):
    def __init__(self, cli_ctx, name, handler, supports_no_wait=False, workspace=True, **kwargs):
        super().__init__(cli_ctx, name, handler, **kwargs)
        self.supports_no_wait = supports_no_wait
        self.workspace = workspace
        self.added_arguments = set()

    def load_arguments(self):
        super().load_arguments()
        added = [*(WORKSPACE_ARGUMENTS if self.workspace else ()), *((NO_WAIT,) if self.supports_no_wait else ())]
        for dest in added:
            if dest in self.arguments:
                continue  # the function takes it: knack made it from the signature
            action = "store_true" if dest == NO_WAIT else None
            self.arguments[dest] = CLICommandArgument(dest, options_list=[f"--{dest.replace('_', '-')}"], action=action)
            self.added_arguments.add(dest)
        if self.workspace:
            self.arguments[SUBSCRIPTION] = CLICommandArgument(
                SUBSCRIPTION, options_list=["--subscription"], arg_group="Global", help=IGNORED
            )

    def __call__(self, *args, **kwargs):
        command_args = args[0]
        for dest in self.added_arguments:
            command_args.pop(dest, None)
        return super().__call__(*args, **kwargs)
