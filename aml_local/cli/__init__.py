"""The `aml-local` command line (the console script `aml-local` is `main`): `az ml` nouns and verbs on knack, az's
CLI framework, calling the job, endpoint and asset verbs below it. app.py runs a command, commands.py and helps.py
declare them (command.py adds the flags az gives every command), custom.py and custom_assets.py are what each does
(flags.py and generic_update.py what they share), transforms.py holds az ml's list shapes, parser.py az's argument
errors."""

from aml_local.cli.app import main

__all__ = ["main"]
