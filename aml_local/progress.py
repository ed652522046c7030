"""Live progress for aml-local's long commands (a streamed sweep, a deployment waiting to be ready).

One rule, the same as the data module's download progress: a line rewritten in place (carriage return) only for a
person watching a terminal, that is when the stream is a TTY and CI is not set; in CI, or into a pipe or a log
file, nothing (the commands' own event lines are the log).
"""

import os
import shutil


def interactive(stream) -> bool:
    """Whether stream is a terminal a person watches (not CI, not a pipe or a file)."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed stream
        return False


class StatusLine:
    """One line at the bottom of a terminal, rewritten in place; clear() it before printing anything else."""

    def __init__(self, stream):
        self.stream = stream
        self.enabled = interactive(stream)
        self.shown = False

    def show(self, text: str):
        if not self.enabled:
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1  # a wrapped line can no longer be rewritten
        self.stream.write("\r\x1b[K" + (text if len(text) <= width else text[: width - 3] + "..."))
        self.stream.flush()
        self.shown = True

    def finish(self, text: str):
        """Replace a shown line with a last one that stays (nothing was shown, nothing is printed)."""
        if self.shown:
            self.stream.write("\r\x1b[K" + text + "\n")
            self.stream.flush()
            self.shown = False

    def clear(self):
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False
