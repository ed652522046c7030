"""src/score.py's contract: the model it finds, the answers it gives, the 400s it gives instead, the schema it
publishes; and the same through the real azmlinfsrv server."""

import contextlib
import http.client
import importlib.util
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_REQUEST = REPO_ROOT / "endpoints/sample-request.json"
SAMPLE_INDEX = 0  # endpoints/sample-request.json is this MNIST test image / 255
_imports = itertools.count()


def import_score():
    """A fresh copy of src/score.py: inference-schema registers run() by module name, so each copy has its own. src/ is
    on sys.path, as the code folder is on the server's: score.py imports mnist_model from beside it."""
    sys.path.insert(0, str(REPO_ROOT / "src"))
    spec = importlib.util.spec_from_file_location(f"score_under_test_{next(_imports)}", REPO_ROOT / "src/score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def init_with(module, model_dir):
    """module.init() with AZUREML_MODEL_DIR=model_dir, the environment restored after."""
    saved = os.environ.get("AZUREML_MODEL_DIR")
    os.environ["AZUREML_MODEL_DIR"] = str(model_dir)
    try:
        module.init()
    finally:
        if saved is None:
            del os.environ["AZUREML_MODEL_DIR"]
        else:
            os.environ["AZUREML_MODEL_DIR"] = saved
    return module


@pytest.fixture(scope="module")
def score():
    """score.py imported, no model loaded: enough for everything that is refused before the model runs."""
    return import_score()


@pytest.fixture(scope="module")
def shared_model_module():
    """src/mnist_model.py, the model loading score.py shares with batch_score.py (the module score.py imports)."""
    import_score()
    import mnist_model

    return mnist_model


@pytest.fixture(scope="module")
def served(trained_model_dir):
    """score.py after init() on the conftest model."""
    return init_with(import_score(), trained_model_dir)


@pytest.fixture(scope="module")
def keras_model(trained_model_dir):
    import mlflow.keras

    return mlflow.keras.load_model(str(trained_model_dir))


@pytest.fixture(scope="module")
def test_images(small_mnist_dir):
    """(images (N, 784) in 0..1, labels) of the data the conftest model was trained on."""
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import mnist_data

    data = mnist_data.load_mnist(small_mnist_dir)
    return data.test_images.reshape(-1, 784) / 255.0, data.test_labels


def image(value=0.0):
    return [value] * 784


def error_of(response):
    """(status, message) of a run() answer that must be an error response with a JSON {"message": ...} body."""
    assert not isinstance(response, dict), f"expected an error response, got predictions {response}"
    assert response.mimetype == "application/json"
    body = json.loads(response.get_data())
    assert set(body) == {"message"}
    return response.status_code, body["message"]


BAD_DATA = [
    (None, '"data" must be a list of images (lists of 784 numbers), got null'),
    ("abc", "got the string 'abc'"),
    ({"pixels": []}, "got an object"),
    (7, "got int"),
    ([], '"data" is empty'),
    (image(), "data[0] must be a list of 784 numbers (one image), got float: wrap a single image as [[...]]"),
    ([image(), "x"], "data[1] must be a list of 784 numbers (one image), got the string 'x'"),
    ([{"a": 1}], "data[0] must be a list of 784 numbers (one image), got an object"),
    ([[0.5] * 783], "data[0] has 783 values, expected 784"),
    ([image(), [0.5] * 785], "data[1] has 785 values, expected 784"),
    ([[[0.0] * 28] * 28], "data[0] has 28 values, expected 784 (a 28x28 image flattened row by row)"),
    ([[[0.0]] * 784], "data[0][0] must be a number, got a list"),
    ([[*image()[:5], True, *image()[6:]]], "data[0][5] must be a number, got true"),
    ([[False, *image()[1:]]], "data[0][0] must be a number, got false"),
    ([[*image()[:783], "0.5"]], "data[0][783] must be a number, got the string '0.5'"),
    ([[None, *image()[1:]]], "data[0][0] must be a number, got null"),
    ([image(), [math.nan, *image()[1:]]], "data[1][0] is nan: pixel values must be finite numbers"),
    ([[math.inf, *image()[1:]]], "data[0][0] is inf: pixel values must be finite numbers"),
    ([[-math.inf, *image()[1:]]], "data[0][0] is -inf"),
    ([[0.0, 255, *image()[2:]]], "data[0][1] is 255: pixel values must be in [0, 1] (divide 0..255 pixels by 255)"),
    ([[0.0, 0.0, -0.25, *image()[3:]]], "data[0][2] is -0.25: pixel values must be in [0, 1]"),
    ([[1.5, *image()[1:]]], "data[0][0] is 1.5: pixel values must be in [0, 1]"),
    ([[1e39, *image()[1:]]], "data[0][0] is 1e+39: pixel values must be in [0, 1]"),  # finite, but not as float32
    ([[10**400, *image()[1:]]], "data[0][0] is a 401-digit integer: pixel values must be in [0, 1]"),
]


@pytest.mark.parametrize("data, fragment", BAD_DATA, ids=[f"bad{i}" for i in range(len(BAD_DATA))])
def test_bad_data_is_a_400_naming_the_problem(score, data, fragment):
    status, message = error_of(score.run(data))
    assert status == 400
    assert fragment in message


def raw_request(body=b"", content_type="application/json", method="POST", query_string=None):
    """A request as the inference server hands it to a @rawhttp run(): a flask Request."""
    from flask import Request
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(method=method, data=body, content_type=content_type, query_string=query_string)
    return Request(builder.get_environ())


@pytest.mark.parametrize("data, fragment", BAD_DATA, ids=[f"bad{i}" for i in range(len(BAD_DATA))])
def test_a_raw_request_gets_exactly_the_400_run_gives(score, data, fragment):
    body = json.dumps({"data": data}).encode()  # NaN, Infinity and 401-digit integers as json.dumps writes them
    assert score.fast_images(body) is None
    assert error_of(score.raw_run(raw_request(body))) == error_of(score.run(data))


@pytest.mark.parametrize(
    "request_args, expected",
    [
        ({"body": b'{"data": [[0.0, 0.1'}, (400, "POST body could not be decoded as JSON: Expecting ',' delimiter")),
        ({"body": b""}, (400, "POST body is empty. Expecting a JSON dictionary.")),
        ({"body": b"[[0.5]]"}, (400, "POST body should be a JSON dictionary.")),
        ({"body": b'{"images": [[0.5]]}'}, (400, "A value is not provided for the 'data' parameter.")),
        ({"body": b'{"da1ta": [[0.5]]}'}, (400, "A value is not provided for the 'data' parameter.")),
        (
            {"body": b'{"data": [[0.5]]}', "content_type": "text/plain"},
            (415, "Expects Content-Type to be application/json"),
        ),
        ({"body": b'{"data": "\xff"}'}, (400, "the body is not UTF-8 (or UTF-16/32) text: byte")),
        ({"body": b"[" * 100_000 + b"]" * 100_000}, (400, "the body's JSON is nested too deeply to parse")),
        ({"method": "GET"}, (400, "A value is not provided for the 'data' parameter.")),
        ({"method": "GET", "query_string": {"data": "[[2]]"}}, (400, "data[0] has 1 values, expected 784")),
        ({"method": "PUT"}, (405, "Method not allowed")),
    ],
    ids=[
        *("bad-json", "empty", "not-an-object", "no-data", "data-like-key", "text-plain"),
        *("not-utf8", "deep", "get", "get-data", "put"),
    ],
)
def test_a_raw_request_the_server_would_refuse_gets_the_servers_answer(score, request_args, expected):
    status, message = error_of(score.raw_run(raw_request(**request_args)))
    assert status == expected[0] and message.startswith(expected[1]), message


def test_options_gets_an_empty_200_as_from_the_server(score):
    response = score.raw_run(raw_request(method="OPTIONS"))
    assert (response.status_code, response.get_data()) == (200, b"")


def test_the_fast_path_reads_exactly_what_the_exact_path_reads(score):
    rng = np.random.default_rng(3)
    images = rng.random((30, 784))
    images[0, :4] = [0.0, 1.0, 1.00000001, -0.0]  # 1.00000001 is 1.0 in float32: accepted either way
    bodies = [
        json.dumps({"data": images.tolist()}).encode(),
        json.dumps({"data": [[0, 1] * 392]}, indent=2).encode(),  # integers, newlines and indentation
        b'{ "data" :[[' + b",".join([b"5e-1", b"1E-2", b"0.0e+0"] * 261 + [b"1"]) + b"]] }",
    ]
    for body in bodies:
        fast = score.fast_images(body)
        exact = score.images_from(json.loads(body)["data"])
        assert fast is not None and fast.dtype == np.float32
        np.testing.assert_array_equal(fast, exact)
    # Anything else takes the exact path: other keys, a list inside a row (simdjson would flatten it), a 400-digit
    # integer, too many images; the parser is reused after each refusal.
    row = [0.5] * 784
    others = [{"data": [row], "id": 1}, {"data": [row, [*row[:-1], [0.5]]]}, {"data": [[*row[:-1], 10**400]]}]
    others += [{"da1ta": [row]}, {"datae": [row]}]  # keys that are "data" once digits and separators are deleted
    for other in [*others, {"data": [row] * 2001}, {"data": [row, row[:-1]]}]:
        assert score.fast_images(json.dumps(other).encode()) is None
        assert score.fast_images(json.dumps({"data": [row]}).encode()).shape == (1, 784)


def test_the_schema_is_registered_for_the_raw_entry_only_when_init_publishes_it(score):
    from inference_schema.schema_util import get_input_schema, get_output_schema, is_schema_decorated

    fresh = import_score()
    # The server refuses a run() with both @rawhttp and a schema: none may be there when it loads the script.
    assert fresh.driver_module.run is fresh.raw_run and not is_schema_decorated(fresh.raw_run)
    fresh.publish_schema()
    assert is_schema_decorated(fresh.raw_run)
    assert get_input_schema(fresh.raw_run) == get_input_schema(fresh.run)
    assert get_output_schema(fresh.raw_run) == get_output_schema(fresh.run)


def test_a_batch_over_the_limit_is_refused_before_any_work(score):
    status, message = error_of(score.run([image()] * (score.MAX_IMAGES + 1)))
    expected = f'"data" has {score.MAX_IMAGES + 1} images; at most {score.MAX_IMAGES} are accepted per request'
    assert (status, message) == (400, expected)


def test_integers_0_and_1_are_valid_pixels(score):
    assert score.images_from([[0, 1] * 392]).dtype == np.float32


@pytest.mark.slow
def test_one_image_gets_a_digit_and_ten_probabilities_summing_to_1(served, test_images):
    images, _ = test_images
    answer = served.run([images[0].tolist()])
    assert set(answer) == {"predictions", "probabilities"}
    assert len(answer["predictions"]) == 1 and answer["predictions"][0] in range(10)
    (probabilities,) = answer["probabilities"]
    assert len(probabilities) == 10 and all(p >= 0 for p in probabilities)
    assert sum(probabilities) == pytest.approx(1, abs=1e-5)
    assert answer["predictions"][0] == int(np.argmax(probabilities))


@pytest.mark.slow
def test_a_batch_agrees_with_the_keras_model(served, keras_model, test_images):
    images, labels = test_images
    answer = served.run(images[:500].tolist())
    probabilities = np.array(answer["probabilities"])
    expected = keras_model(images[:500].astype(np.float32), training=False).numpy()
    assert served.backend == "numpy"
    assert probabilities.shape == (500, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert answer["predictions"] == expected.argmax(axis=1).tolist()
    assert np.mean(np.array(answer["predictions"]) == labels[:500]) > 0.5  # trained, not chance


@pytest.mark.slow
def test_the_sample_request_is_a_real_test_image_the_model_gets_right(served, real_mnist_dir):
    sys.path.insert(0, str(REPO_ROOT / "src"))
    import mnist_data

    data = mnist_data.load_mnist(real_mnist_dir)
    sample = json.loads(SAMPLE_REQUEST.read_text())
    assert set(sample) == {"data"} and len(sample["data"]) == 1
    np.testing.assert_array_equal(np.array(sample["data"][0]), data.test_images[SAMPLE_INDEX].reshape(784) / 255.0)
    assert served.run(sample["data"])["predictions"] == [int(data.test_labels[SAMPLE_INDEX])]


def write_mlmodel(folder, content="flavors: {}\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLmodel").write_text(content)
    return folder


def two_different_models(tmp):
    write_mlmodel(tmp / "a", "one\n")
    write_mlmodel(tmp / "b/c", "two\n")
    return str(tmp)


def test_the_model_folder_is_found_in_any_registration_layout(shared_model_module, tmp_path):
    find_mlflow_model = shared_model_module.find_mlflow_model
    top = write_mlmodel(tmp_path / "top")
    assert find_mlflow_model(str(top)) == top
    azure = write_mlmodel(tmp_path / "azureml-models/mnist-mlp/3/model")  # AZUREML_MODEL_DIR/<registered folder>
    assert find_mlflow_model(str(tmp_path / "azureml-models/mnist-mlp/3")) == azure
    copies = tmp_path / "copies"
    write_mlmodel(copies / "model")
    write_mlmodel(copies / "model/backup")  # byte-identical copies of one model count once: the shallowest wins
    assert find_mlflow_model(str(copies)) == copies / "model"


@pytest.mark.parametrize(
    "setup, fragment",
    [
        (lambda tmp: "", "AZUREML_MODEL_DIR is not set"),
        (lambda tmp: str(tmp / "missing"), "is not a folder"),
        (lambda tmp: str(write_mlmodel(tmp / "f") / "MLmodel"), "is not a folder"),
        (lambda tmp: str(tmp), "no MLflow model (an MLmodel file) under"),
        (two_different_models, "2 different MLflow models under"),
    ],
    ids=["unset", "missing", "a-file", "empty", "two-models"],
)
def test_no_model_or_several_fail_with_a_message_naming_the_folder(shared_model_module, tmp_path, setup, fragment):
    model_dir = setup(tmp_path)
    with pytest.raises(RuntimeError) as raised:
        shared_model_module.find_mlflow_model(model_dir)
    assert fragment in str(raised.value)
    if model_dir:
        assert model_dir in str(raised.value)
    if fragment.startswith("2 different"):
        assert "a, b/c" in str(raised.value)


@pytest.mark.slow
def test_init_loads_a_model_nested_below_azureml_model_dir(trained_model_dir, tmp_path, test_images):
    shutil.copytree(trained_model_dir, tmp_path / "mnist-mlp/1/model")
    nested = init_with(import_score(), tmp_path / "mnist-mlp/1")
    images, _ = test_images
    assert nested.backend == "numpy"
    assert len(nested.run(images[:3].tolist())["predictions"]) == 3


@pytest.mark.slow
def test_init_without_a_model_fails_naming_the_folder(tmp_path):
    with pytest.raises(RuntimeError, match=f"no MLflow model .* under {tmp_path}"):
        init_with(import_score(), tmp_path)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")  # Keras' own, saving
def test_a_model_that_is_not_a_plain_dense_stack_runs_through_tensorflow(tmp_path, test_images):
    import keras
    import mlflow.keras

    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),
            keras.layers.Dense(32, activation="tanh"),  # not among the activations the numpy products do
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    mlflow.keras.save_model(model, str(tmp_path / "model"), pip_requirements=["keras"])  # not inferred: seconds
    other = init_with(import_score(), tmp_path)
    images, _ = test_images
    answer = other.run(images[:20].tolist())
    assert other.backend == "tf.function"
    expected = model(images[:20].astype(np.float32), training=False).numpy()
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-5)


@pytest.mark.slow
def test_numpy_products_that_disagree_with_keras_are_not_used(
    trained_model_dir, test_images, monkeypatch, shared_model_module
):
    strict = import_score()
    # No difference passes: as if the products were wrong.
    monkeypatch.setattr(shared_model_module, "PROBE_TOLERANCE", -1.0)
    init_with(strict, trained_model_dir)
    images, _ = test_images
    assert strict.backend == "tf.function"
    assert len(strict.run(images[:2].tolist())["probabilities"]) == 2


def test_the_published_schema_states_the_limits_and_has_valid_examples(score):
    from inference_schema.schema_util import get_input_schema, get_output_schema, get_supported_versions

    request_schema, response = get_input_schema(score.run), get_output_schema(score.run)
    images = request_schema["properties"]["data"]
    assert (images["minItems"], images["maxItems"]) == (1, score.MAX_IMAGES)
    assert (images["items"]["minItems"], images["items"]["maxItems"]) == (784, 784)
    assert (images["items"]["items"]["minimum"], images["items"]["items"]["maximum"]) == (0, 1)
    assert score.images_from(request_schema["example"]["data"]).shape == (1, 784)  # the example request is valid
    example = response["example"]
    assert example["predictions"] == [int(np.argmax(p)) for p in example["probabilities"]]
    assert all(sum(p) == pytest.approx(1) and len(p) == 10 for p in example["probabilities"])
    assert set(response["required"]) == set(response["properties"]) == {"predictions", "probabilities"}
    assert {"2.0", "3.0", "3.1"} <= set(get_supported_versions(score.run))


def free_port():
    with socket.socket() as s:
        s.bind(("", 0))  # azmlinfsrv listens on 0.0.0.0
        return s.getsockname()[1]


def request(port, method, path, body=None, content_type="application/json"):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body, {"Content-Type": content_type} if body is not None else {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


@pytest.mark.slow
def test_the_real_server_scores_refuses_and_publishes_its_schema(trained_model_dir, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZUREML_", "AML_", "MLFLOW_"))}
    env |= {"TF_CPP_MIN_LOG_LEVEL": "2", "AML_APP_ROOT": str(REPO_ROOT / "src"), "SERVICE_NAME": "mnist-mlp"}
    azmlinfsrv = Path(sys.executable).parent / "azmlinfsrv"  # the server of the environment running the tests
    command = [str(azmlinfsrv), "--entry_script", str(REPO_ROOT / "src/score.py")]
    command += ["--model_dir", str(trained_model_dir), "--port", str(port)]
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, (
                "azmlinfsrv did not answer within 120 s: " + log_path.read_text()[-3000:]
            )
            with contextlib.suppress(OSError):
                if request(port, "GET", "/")[0] == 200:
                    break
            time.sleep(0.5)

        status, content_type, body = request(port, "POST", "/score", SAMPLE_REQUEST.read_bytes())
        assert (status, content_type) == (200, "application/json"), body
        answer = json.loads(body)
        assert len(answer["predictions"]) == 1 and len(answer["probabilities"][0]) == 10

        marker = "MARKER-NOT-FOR-LOGS"  # request bodies must not reach the server's log
        for body, fragment in (
            (json.dumps({"data": [[*image()[:3], marker, *image()[4:]]]}), "data[0][3] must be a number"),
            (b'{"data": [[0.0, 0.1', "could not be decoded as JSON"),
            (json.dumps({"images": [image()], "note": marker}), "'data'"),
            (json.dumps({"data": [[300] * 784]}), "pixel values must be in [0, 1]"),
        ):
            status, content_type, raw = request(port, "POST", "/score", body)
            assert (status, content_type) == (400, "application/json"), raw
            assert fragment in json.loads(raw)["message"]
        status, content_type, raw = request(port, "POST", "/score", SAMPLE_REQUEST.read_bytes(), "text/plain")
        assert (status, content_type) == (415, "application/json") and "application/json" in json.loads(raw)["message"]

        status, _, raw = request(port, "GET", "/swagger.json")
        assert status == 200
        swagger = json.loads(raw)
        assert swagger["info"]["title"] == "mnist-mlp"
        service_input = swagger["definitions"]["ServiceInput"]
        assert service_input["properties"]["data"]["items"]["maxItems"] == 784
        assert len(service_input["example"]["data"][0]) == 784
        assert set(swagger["definitions"]["ServiceOutput"]["properties"]) == {"predictions", "probabilities"}
        assert request(port, "GET", "/swagger.json?version=3")[0] == 200
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert marker not in log_path.read_text()
