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

Speed: one image costs ~25 us as numpy matrix products over the Dense layers' weights, against ~250 us through a
concrete tf.function and ~1,750 us through Keras' model(x); init() checks the products against the Keras model on a
probe batch and falls back to the tf.function when the model is not a plain Dense stack or they disagree. The rest
of a request is the server's: bench/bench_serve.py measures both.
"""

import copy
import inspect
import itertools
import logging
import math
import os
import queue
import types
from pathlib import Path

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

PIXELS = 28 * 28
MAX_IMAGES = 2000  # per request: ~12 MB of JSON, parsed and scored well within the deployment's 5 s request timeout
PROBE_TOLERANCE = 1e-5  # largest difference in any probability allowed between the numpy path and Keras
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


def find_mlflow_model(model_dir):
    """The one folder under model_dir that holds an MLmodel file. Registration decides the layout: on Azure,
    AZUREML_MODEL_DIR/<registered folder>/MLmodel; a folder registered by its contents has MLmodel at the top."""
    if not model_dir:
        raise RuntimeError("AZUREML_MODEL_DIR is not set: it must name the folder of the deployed model")
    root = Path(model_dir)
    if not root.is_dir():
        raise RuntimeError(f"AZUREML_MODEL_DIR={model_dir} is not a folder")
    found = [Path(folder) for folder, _, files in os.walk(root, followlinks=True) if "MLmodel" in files]
    found.sort(key=lambda folder: (len(folder.parts), folder))
    distinct = {}  # MLmodel content -> shallowest folder: byte-identical copies of one model count once
    for folder in found:
        distinct.setdefault((folder / "MLmodel").read_bytes(), folder)
    if not distinct:
        raise RuntimeError(f"no MLflow model (an MLmodel file) under {root}: deploy the folder train.py saves")
    if len(distinct) > 1:
        names = ", ".join(str(folder.relative_to(root)) for folder in distinct.values())
        raise RuntimeError(f"{len(distinct)} different MLflow models under {root} ({names}): deploy exactly one")
    return next(iter(distinct.values()))


def numpy_forward(model):
    """The model as numpy matrix products over its weights, or None when it is not a plain stack of Dense layers
    with relu/linear/softmax activations (anything else may compute something the products would not)."""
    import keras

    if not isinstance(model, keras.Sequential) or model.dtype_policy.name != "float32":
        return None
    layers = []
    for layer in model.layers:
        config = layer.get_config()
        if type(layer) is not keras.layers.Dense or config["activation"] not in ("relu", "linear", "softmax"):
            return None
        kernel, *bias = layer.get_weights()
        layers.append((kernel, bias[0] if bias else np.float32(0), config["activation"]))

    def matrix_products(images):
        x = images
        for kernel, bias, activation in layers:
            x = x @ kernel
            x += bias
            if activation == "relu":
                np.maximum(x, 0, out=x)
            elif activation == "softmax":
                x -= x.max(axis=1, keepdims=True)  # exp of the largest is 1: no overflow
                np.exp(x, out=x)
                x /= x.sum(axis=1, keepdims=True)
        return x

    return matrix_products


def init():
    """Load the model once per worker and pick the fastest way to run it that matches Keras."""
    global forward, backend
    publish_schema()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines say nothing users need
    import mlflow.keras
    import tensorflow as tf

    folder = find_mlflow_model(os.environ.get("AZUREML_MODEL_DIR"))
    model = mlflow.keras.load_model(str(folder))
    if tuple(model.input_shape) != (None, PIXELS) or tuple(model.output_shape) != (None, 10):
        raise RuntimeError(f"{folder}: model takes {model.input_shape} and gives {model.output_shape}, not 784 -> 10")
    # Random images, blank and saturated ones, and a batch of one (a different matrix-product path in BLAS).
    probe = np.random.default_rng(0).random((64, PIXELS), dtype=np.float32)
    probe = np.concatenate([probe, np.zeros((1, PIXELS), np.float32), np.ones((1, PIXELS), np.float32)])
    expected = model(probe, training=False).numpy()
    candidate = numpy_forward(model)
    if candidate is not None:
        difference = max(np.abs(candidate(probe) - expected).max(), np.abs(candidate(probe[:1]) - expected[:1]).max())
        if difference <= PROBE_TOLERANCE:
            forward, backend = candidate, "numpy"
            logger.info(f"scoring {folder} with numpy (largest difference from Keras on the probe: {difference:.1e})")
            return
        logger.warning(f"numpy products differ from Keras by {difference:.1e} on the probe: using TensorFlow")
    else:
        logger.info(f"{folder} is not a plain Dense stack: scoring with a concrete tf.function")
    # One traced graph for any batch size: no retracing, and none of Keras' per-call bookkeeping.
    call = tf.function(lambda images: model(images, training=False))
    concrete = call.get_concrete_function(tf.TensorSpec([None, PIXELS], tf.float32))
    forward, backend = (lambda images: concrete(images).numpy()), "tf.function"


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
