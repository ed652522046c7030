"""One worker process of a mini-batch job (a `parallel` pipeline node, or a batch endpoint's scoring job), run by the
job environment's own Python (jobs/minibatch.py starts it in its own environment layer): it imports the entry script,
calls its init() once, then run(mini_batch) once per mini-batch the driver sends, and shutdown() (when the script has
one) before it exits, as Azure's parallel run does ("Author scoring scripts for batch deployments"; the parallel job
page "How to use parallel jobs in pipelines": init(), run(mini_batch), the optional shutdown()).

So it imports nothing of aml_local (a built environment has no aml_local), only the standard library, and pandas
when the environment has it (a DataFrame that run() returns is written row by row with it).

Protocol, one JSON object a line:
- from the driver on stdin: {"id": N, "items": [path, ...]} (the mini-batch's files: paths, never contents), or
  {"stop": true};
- to the driver on the file descriptor named by argv[1]: {"ready": seconds} once init() returned, or {"init_error":
  message, "traceback": text}; then per mini-batch {"id": N, "returned": count, "rows": [line, ...], "seconds": s}
  or {"id": N, "error": message, "traceback": text, "seconds": s}.
What the script prints goes to this process's stdout and stderr: the log file the driver opened for it.

The rows are the append_row output's lines, made here where the result is (our reading of "Customize outputs in
batch deployments" and "Author scoring scripts for batch deployments", which say: "Everything that the run() function
returns is appended in the output predictions file", a DataFrame's column names are not written, and the docs read
the file back with `pd.read_csv(..., header=None, sep=' ')`): a DataFrame row is its values separated by one space
(pandas' own CSV writer with sep=" ", so a value holding a space is quoted and reads back whole); a list or tuple
element is `str(element)` on a line of its own (the MLflow pages read such a file back with ast.literal_eval).
"""

import importlib.util
import json
import os
import sys
import time
import traceback

RESULT_FD = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else None
ENTRY_SCRIPT = os.environ.get("AML_LOCAL_ENTRY_SCRIPT", "")
WANT_ROWS = os.environ.get("AML_LOCAL_OUTPUT_ACTION", "append_row") == "append_row"


def _send(channel, message: dict) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def _load_script(path: str):
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the script's own modules, as on Azure where its folder is the working folder
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _is_frame(value) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "to_csv")


def _rows(result) -> tuple[int, list[str]]:
    """(how many items the result accounts for, the output lines) of what run() returned."""
    if result is None:
        return 0, []
    if _is_frame(result):
        if not WANT_ROWS or len(result) == 0:
            return len(result), []
        text = result.to_csv(sep=" ", header=False, index=False, lineterminator="\n")
        return len(result), text.splitlines()
    if isinstance(result, list | tuple):
        return len(result), [str(element) for element in result] if WANT_ROWS else []
    raise TypeError(
        f"run() returned {type(result).__name__}; it must return a pandas DataFrame, a list or a tuple (one element "
        "per input item scored)"
    )


def _last_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:1000]


def main() -> int:
    channel = os.fdopen(RESULT_FD, "w", buffering=1) if RESULT_FD is not None else sys.stdout
    started = time.perf_counter()
    try:
        script = _load_script(ENTRY_SCRIPT)
        if not callable(getattr(script, "run", None)):
            raise AttributeError(f"{os.path.basename(ENTRY_SCRIPT)} has no run(mini_batch) function")
        if callable(getattr(script, "init", None)):
            script.init()
    except BaseException as error:
        _send(channel, {"init_error": _last_line(error), "traceback": traceback.format_exc()})
        return 1
    _send(channel, {"ready": round(time.perf_counter() - started, 3)})
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("stop"):
            break
        began = time.perf_counter()
        try:
            returned, rows = _rows(script.run(message["items"]))
            reply = {"id": message["id"], "returned": returned, "rows": rows}
        except Exception as error:
            reply = {"id": message["id"], "error": _last_line(error), "traceback": traceback.format_exc()}
        reply["seconds"] = round(time.perf_counter() - began, 4)
        sys.stdout.flush()
        sys.stderr.flush()
        _send(channel, reply)
    if callable(getattr(script, "shutdown", None)):
        script.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
