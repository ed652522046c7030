"""What az prints and no more: the SDK announces its experimental classes and MLflow its migrations on every load.
`libraries()` quiets them for one command and puts the process's logging and warning filters back afterwards (the
CLI's `main()` runs in-process in tests and under other tools: its settings must not outlive it)."""

import contextlib
import logging
import warnings

_LEVELS = {"azure": logging.ERROR, "mlflow": logging.WARNING, "alembic": logging.WARNING}
_EXPERIMENTAL = "azure.ai.ml._utils._experimental"


@contextlib.contextmanager
def libraries():
    loggers = {name: logging.getLogger(name) for name in _LEVELS}
    saved_levels = {name: logger.level for name, logger in loggers.items()}
    experimental = logging.getLogger(_EXPERIMENTAL)
    saved_disabled = experimental.disabled
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*experimental.*")
        for name, level in _LEVELS.items():
            loggers[name].setLevel(level)
        experimental.disabled = True
        try:
            yield
        finally:
            for name, logger in loggers.items():
                logger.setLevel(saved_levels[name])
            experimental.disabled = saved_disabled
