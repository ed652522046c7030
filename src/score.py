"""Azure ML entry script for the MNIST MLP: azureml-inference-server-http (azmlinfsrv) imports it, calls init() once
per worker and raw_run() (see driver_module) once per request to /score; run(data) scores already parsed data.

Request (POST, Content-Type: application/json), the seed's format: {"data": [[784 numbers], ...]}: one row per image,
the 28x28 pixels row by row, each raw 0..255 pixel divided by 255 (what train.py feeds the model). Values must be in
[0, 1]; 0..255 input is refused, not rescaled (an image whose pixels all happen to be 0 or 1 would be ambiguous).
Response: {"predictions": [digit per image], "probabilities": [[10 floats summing to 1] per image]}.
Bad input: the container answers HTTP 400 with {"message": "..."} naming the field and what was expected (and 415
for a Content-Type other than JSON), exactly as the inference server itself answers a body that is not JSON or has
no "data". An online endpoint's front end turns any answer but 200 into 424, with the container's status in the
`ms-azureml-model-error-statuscode` header and this body passed on (Azure's troubleshooting page, HTTP status
codes; aml_local/endpoints/router/server.py does the same locally).

Parsing: the server hands the raw request to raw_run() (azureml-inference-server-http's @rawhttp), which parses the
body once with simdjson and checks it with numpy: a body that is exactly {"data": [[...], ...]} of numbers (checked
on its bytes first) goes from JSON text to a float64 buffer in C, with no Python object per value. For 1,000 images
that takes about a quarter of orjson.loads' time alone (which makes a Python float of every value, then numpy
must read them all again), and a tenth of the server's json.loads plus a walk over every value. Anything else
(other keys, strings, booleans, null, NaN, bad JSON, a non-JSON Content-Type, GET) takes the server's own parsing
and run()'s checks, so what is accepted and every error message are the same either way.

The server publishes the request and response schemas below, with examples, at /swagger.json (the inference-schema
decorators on run(), registered for raw_run() too when init() runs: see publish_schema()).

Speed: init() loads the model with mnist_model.load_forward(), shared with the batch scoring script
(batch_score.py): numpy matrix products over the Dense layers' weights (~25 us an image) when they agree with Keras on
a probe batch, else a concrete tf.function (~250 us; Keras' model(x) costs ~1,750 us). The rest of a request is the
server's: bench/bench_serve.py measures both.
"""

import copy
import inspect
import itertools
import logging
import math
import os
import queue
import types

import numpy as np
import simdjson
from azureml_inference_server_http.api.aml_request import rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse

# The server's own request parsing for a run() decorated with @input_schema (azureml-inference-server-http 1.4.1,
# pinned in pyproject.toml's serve group and environments/inference/conda.yaml): raw_run() falls back on it for every
# request that is not a plain {"data": ...} JSON POST, so those get exactly the server's answers and messages.
from azureml_inference_server_http.server.input_parsers import (
    BadInput,
    ObjectInput,
    UnsupportedHTTPMethod,
    UnsupportedInput,
)
from inference_schema.parameter_types.abstract_parameter_type import AbstractParameterType
from inference_schema.schema_decorators import input_schema, output_schema

# The model as a fast function of images, shared with batch_score.py (the code folder, src/, is on the server's
# sys.path: azureml-inference-server-http adds AML_APP_ROOT and AZUREML_SOURCE_DIRECTORY to it).
from mnist_model import PIXELS, load_forward

MAX_IMAGES = 2000  # per request: ~12 MB of JSON, parsed and scored well within the deployment's 5 s request timeout
NUMBERS = {int, float}  # JSON numbers; bool is excluded on purpose (True would pass for 1.0)
# A body of nothing but {"data": [[numbers], ...]} with these bytes deleted is `{"data":[[][]...[]]}`, one [] per
# image: strings, true/false/null, NaN/Infinity, other keys and lists inside an image all leave something else.
NUMBERS_AND_SEPARATORS = b"0123456789+-.eE, \t\r\n"
# simdjson parsers kept between requests (a parser keeps buffers about twice the largest body it has read, and
# allocating them again costs as much as parsing): at most PARSERS_KEPT, whatever the number of server threads.
_idle_parsers = queue.SimpleQueue()
PARSERS_KEPT = 2
logger = logging.getLogger("azmlinfsrv.score")  # the server's logger: a child inherits its handlers and format
forward = None  # images (n, 784) float32 -> probabilities (n, 10), set by init()
backend = None  # how forward computes: "numpy" or "tf.function"


def _example_image():
    """A drawn "1" (a vertical bar, centred as MNIST digits are): a valid image for the published example."""
    image = np.zeros((28, 28))
    image[4:24, 13:15] = 1.0
    return image.ravel().tolist()


REQUEST_SCHEMA = {
    "type": "array",
    "description": f"1 to {MAX_IMAGES} images, each 784 pixel values in [0, 1] (28x28 row by row, 0..255 / 255).",
    "minItems": 1,
    "maxItems": MAX_IMAGES,
    "items": {
        "type": "array",
        "minItems": PIXELS,
        "maxItems": PIXELS,
        "items": {"type": "number", "format": "float", "minimum": 0, "maximum": 1},
    },
    "example": [_example_image()],
}
RESPONSE_SCHEMA = {
    "type": "object",
    "required": ["predictions", "probabilities"],
    "properties": {
        "predictions": {
            "type": "array",
            "description": "The most probable digit for each image, in request order.",
            "items": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 9},
        },
        "probabilities": {
            "type": "array",
            "description": "For each image, the probabilities of the digits 0 to 9 (they sum to 1).",
            "items": {"type": "array", "minItems": 10, "maxItems": 10, "items": {"type": "number", "format": "float"}},
        },
    },
    "example": {
        "predictions": [1],
        "probabilities": [[0.001, 0.97, 0.004, 0.002, 0.003, 0.001, 0.002, 0.01, 0.006, 0.001]],
    },
}


class JsonSchemaType(AbstractParameterType):
    """A parameter documented by a JSON schema written out in full: inference-schema's extension point, used for
    the sizes and bounds run() enforces, which a schema inferred from a sample value cannot state."""

    def __init__(self, schema):
        super().__init__(schema["example"])
        self.schema = schema

    def deserialize_input(self, input_data):
        return input_data  # run() checks its input itself (it is decorated with convert_to_provided_type=False)

    def input_to_swagger(self):
        return copy.deepcopy(self.schema)


class BadRequest(ValueError):
    """The request's data is not what the model takes; the message says where and what was expected."""


def init():
    """Load the model once per worker and pick the fastest way to run it that matches Keras."""
    global forward, backend
    publish_schema()
    forward, backend, _ = load_forward(os.environ.get("AZUREML_MODEL_DIR"), logger)


def _first_problem(data):
    """The first thing wrong with data, walked in Python: only a request that failed the fast checks gets here."""
    for i, row in enumerate(data):
        if type(row) is not list:
            hint = ": wrap a single image as [[...]]" if type(row) in NUMBERS else ""
            return f"data[{i}] must be a list of {PIXELS} numbers (one image), got {_describe(row)}{hint}"
        if len(row) != PIXELS:
            return f"data[{i}] has {len(row)} values, expected {PIXELS} (a 28x28 image flattened row by row)"
        for j, value in enumerate(row):
            if type(value) not in NUMBERS:
                return f"data[{i}][{j}] must be a number, got {_describe(value)}"
            if type(value) is float and not math.isfinite(value):
                return f"data[{i}][{j}] is {value}: pixel values must be finite numbers"
            if not 0 <= value <= 1:
                big = type(value) is int and abs(value) >= 10**15  # too long to show, or to format as a float
                shown = f"a {len(str(value))}-digit integer" if big else f"{value:.6g}"
                return f"data[{i}][{j}] is {shown}: pixel values must be in [0, 1] (divide 0..255 pixels by 255)"
    return "data: pixel values must be finite numbers in [0, 1]"


def _describe(value):
    if value is None:
        return "null"
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is str:
        return f"the string {value[:20]!r}" + ("..." if len(value) > 20 else "")
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def images_from(data):
    """The request's "data" as a float32 array (n, 784), or BadRequest naming the first problem."""
    if type(data) is not list:
        raise BadRequest(f'"data" must be a list of images (lists of {PIXELS} numbers), got {_describe(data)}')
    if not data:
        raise BadRequest('"data" is empty: send at least one image')
    if len(data) > MAX_IMAGES:
        raise BadRequest(f'"data" has {len(data)} images; at most {MAX_IMAGES} are accepted per request')
    # Every check runs in C over the whole batch (map, set, numpy): no Python loop per pixel on the good path.
    if (
        set(map(type, data)) == {list}
        and set(map(len, data)) == {PIXELS}
        and set(map(type, itertools.chain.from_iterable(data))) <= NUMBERS
    ):
        try:
            with np.errstate(over="ignore"):  # a float beyond float32 becomes inf, refused below, unlogged
                images = np.array(data, dtype=np.float32)
        except OverflowError:  # an integer beyond float range; _first_problem says which
            images = None
        # NaN fails both comparisons (min and max propagate it), and infinities fail one: no separate finiteness check.
        if images is not None and images.min() >= 0 and images.max() <= 1:
            return images
    raise BadRequest(_first_problem(data))


@input_schema("data", JsonSchemaType(REQUEST_SCHEMA), convert_to_provided_type=False)
@output_schema(JsonSchemaType(RESPONSE_SCHEMA))
def run(data):
    """Predict the digits in data (the request's "data" value, already parsed from JSON)."""
    try:
        images = images_from(data)
    except BadRequest as e:  # a 400 with the server's own error shape; the request body is never logged
        return _error(400, str(e))
    return _answer(images)


def _answer(images):
    probabilities = forward(images)
    return {"predictions": probabilities.argmax(axis=1).tolist(), "probabilities": probabilities.tolist()}


def _error(status, message):
    return AMLResponse({"message": message}, status, json_str=True)


def fast_images(body: bytes):
    """The images of a body that is exactly {"data": [[784 numbers], ...]} with 1 to MAX_IMAGES rows and every value
    in [0, 1], as float32 (n, 784): parsed once by simdjson straight into a float64 buffer, checked by numpy. None for
    any other body (run()'s checks on the server's parse then answer it, so nothing is accepted here that they would
    refuse, and no message differs)."""
    skeleton = body.translate(None, NUMBERS_AND_SEPARATORS)
    rows = (len(skeleton) - len(b'{"data":[]}')) // 2
    if not 1 <= rows <= MAX_IMAGES or skeleton != b'{"data":[' + b"[]" * rows + b"]}":
        return None  # anything but 1 to MAX_IMAGES lists of numbers under "data" alone
    try:
        values = _numbers(body)
    except (ValueError, TypeError, RuntimeError, KeyError):
        # Not JSON (numbers or commas out of place), a number simdjson cannot hold (400 digits), or a key that only
        # looked like "data" without its digits and separators ("da1ta", "datae").
        return None
    if values is None:
        return None
    with np.errstate(over="ignore"):  # a float beyond float32 becomes inf, refused below by the exact path
        images = values.reshape(rows, PIXELS).astype(np.float32)
    # Compared as float32, as images_from() compares: 1.00000001 is 1.0 there too.
    if not (images.min() >= 0 and images.max() <= 1):
        return None
    return images


def _numbers(body: bytes):
    """All values of a body whose skeleton fast_images() checked, as float64, when each of its rows has PIXELS of them;
    else None."""
    try:
        parser = _idle_parsers.get_nowait()
    except queue.Empty:
        parser = simdjson.Parser()
    try:
        return _parsed_numbers(parser, body)
    finally:
        if _idle_parsers.qsize() < PARSERS_KEPT:
            _idle_parsers.put(parser)


def _parsed_numbers(parser, body: bytes):
    # simdjson's proxies must be gone before the parser takes another document: none outlives this function.
    data = parser.parse(body)["data"]
    try:
        if any(len(row) != PIXELS for row in data):
            return None
        return np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)  # a copy, not the parser's memory
    finally:
        data = None


# The parameter the server would extract for run(): "data", required.
_SERVER_PARSER = ObjectInput([inspect.Parameter("data", inspect.Parameter.POSITIONAL_OR_KEYWORD)])


@rawhttp
def raw_run(request):
    """Score one request as the server hands it over raw: a plain {"data": ...} JSON POST on the fast path, anything
    else through the server's own parsing, then run(); the same answers as a server calling run() itself."""
    if request.method == "POST" and request.is_json:
        images = fast_images(request.get_data())
        if images is not None:
            return _answer(images)
    try:
        arguments = _SERVER_PARSER(request)
    except BadInput as e:
        return _error(400, e.args[0])
    except UnsupportedInput as e:
        return _error(415, e.args[0])
    except UnsupportedHTTPMethod:
        # As the server answers: OPTIONS gets an empty 200 (CORS headers are added by the server when enabled).
        return AMLResponse("", 200) if request.method == "OPTIONS" else _error(405, "Method not allowed")
    except UnicodeDecodeError as e:  # the server (1.4.1) would answer these two with a 500
        return _error(400, f"the body is not UTF-8 (or UTF-16/32) text: byte {e.start} cannot be decoded")
    except RecursionError:
        return _error(400, "the body's JSON is nested too deeply to parse")
    return run(**arguments)


# azureml-inference-server-http calls `driver_module.run` instead of the entry script's run() when the script has a
# module attribute driver_module with a run() (server/user_script.py, UserScript.load_script): that is how the server
# gets raw_run(), while run() keeps its inference-schema decorators. The server refuses a run() that has both @rawhttp
# and @input_schema, so the schema is registered for raw_run() only in init(), after that check and before the server
# builds /swagger.json from it (server/aml_blueprint.py, AMLInferenceBlueprint.setup).
driver_module = types.ModuleType(f"{__name__}.raw_entry")
driver_module.__file__ = __file__
driver_module.run = raw_run


def publish_schema():
    """Register run()'s request and response schemas for raw_run(): inference-schema keys them by the function's
    module and name, so decorating a stand-in with raw_run's name and run's parameter describes raw_run() exactly as
    run() is described (the stand-in itself is never called)."""

    def raw_run(data):
        raise AssertionError("a stand-in for the schema only")

    input_schema("data", JsonSchemaType(REQUEST_SCHEMA), convert_to_provided_type=False)(raw_run)
    output_schema(JsonSchemaType(RESPONSE_SCHEMA))(raw_run)
