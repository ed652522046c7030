"""The scoring script aml-local supplies for an MLflow model deployed with no code_configuration and no environment
(Azure's "no-code deployment"). online/deployment.py copies it into the deployment; the inference server
(azureml-inference-server-http) imports it, calls init() once per worker and run() once per request to /score, in the
deployment's environment: the model's own requirements plus the server. So it imports nothing of aml_local, only
numpy, mlflow, pandas (when the environment has it) and what the server itself brings (inference-schema, AMLResponse).

It does what Azure's generated script does: mlflow_score_script.py of the curated MLflow inference image
(Azure/azureml-assets, assets/inference/environments/mlflow-py312-inference/context; written anew here, not copied),
for the request formats of the Azure ML page "Deploy MLflow models to online endpoints" and "Guidelines for deploying
MLflow models" (how-to-deploy-mlflow-models.md, "Input formats" and "Input structure"):

- The model is $AZUREML_MODEL_DIR/$MLFLOW_MODEL_FOLDER (the variables Azure sets for a no-code deployment),
  loaded with mlflow.pyfunc.load_model: Azure generates a script only for the pyfunc flavor.
- run() takes `input_data` and an optional `params` (inference-schema's input_schema decorators): the server hands it
  those keys of the JSON body and itself answers 400 for a body that is not JSON or has no input_data ("A value is not
  provided for the 'input_data' parameter."), 415 for a Content-Type other than JSON.
- input_data is converted as the model declares its input, by its input example when it has one, else its
  signature: a tensor signature takes a list, made a numpy array of the signature's dtype ({"input_data": [[1, 2],
  [3, 4]]}); named tensors an object of lists ({"input_data": {"tokens": [[...]], "mask": [[...]]}}); a column
  signature a pandas table in split orientation, each column cast to its type ({"input_data": {"columns": ["age",
  ...], "index": [0], "data": [[...]]}}). A model that declares nothing takes any of these: an object with columns,
  index and data is a table, a list a tensor, another object named tensors; and the older forms the script still
  reads: input_data as a JSON string, or an input_data inside input_data.
- The answer is the prediction as JSON: an array as a (nested) list ([11633.1, 8522.1]), a table as a list of records.

Where it differs on purpose: input the model refuses (a form its signature does not take, a wrong column count, shape
or type, a table whose rows and columns disagree) is a 400 {"message": ...} with the reason. Azure's script lets those
exceptions escape run(), which the server answers 500 "An unexpected error occurred in scoring script" (424 with
ms-azureml-model-error-statuscode 500 through the endpoint): the same requests fail, with the cause said. Any other
error of the model stays a 500, as on Azure. Not reproduced: the parsing for transformers, langchain and openai
flavors (their models get the one above), and the data collector of model monitoring.
"""

from __future__ import annotations  # the model's environment may have an older Python than 3.10

import inspect
import io
import json
import logging
import os

import numpy as np
from azureml_inference_server_http.api.aml_response import AMLResponse
from inference_schema.parameter_types.abstract_parameter_type import AbstractParameterType
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.pyfunc import load_model
from mlflow.pyfunc.scoring_server import _get_jsonable_obj

try:  # an environment with mlflow-skinny alone has no pandas: tensors only, as Azure's script allows
    import pandas as pd
    from inference_schema.parameter_types.pandas_parameter_type import PandasParameterType
except ImportError:
    pd = PandasParameterType = None

logger = logging.getLogger("azmlinfsrv.mlflow_score")  # the server's logger: its handlers and format
# MLflow's schema errors that mean "this input does not fit the model" (mlflow.protos.databricks_pb2 names).
INPUT_ERRORS = ("INVALID_PARAMETER_VALUE", "BAD_REQUEST")
MAX_MESSAGE = 600  # characters of a refusal's reason (MLflow's can quote a whole request)
HOW_TO_SEND = {
    "tensor": 'a tensor is sent as a list, e.g. {"input_data": [[...], ...]}',
    "table": 'a table is sent in split orientation, {"input_data": {"columns": [...], "index": [...], "data": [...]}}',
    "named tensors": 'named tensors are sent as an object of lists, {"input_data": {"<name>": [...], ...}}',
}


def _model_path() -> str:
    missing = [name for name in ("AZUREML_MODEL_DIR", "MLFLOW_MODEL_FOLDER") if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not set: the deployment says where its MLflow model is with them")
    return os.path.join(os.environ["AZUREML_MODEL_DIR"], os.environ["MLFLOW_MODEL_FOLDER"])


class Declared(AbstractParameterType):
    """A parameter of run() as inference-schema sees it: the swagger of the type the model declares (`real`, None when
    it declares nothing), the value passed on as it came. run() converts it with `real` itself, so that input the
    model cannot take is a 400 (a conversion inside the decorator escapes run() and the server answers 500)."""

    def __init__(self, real: AbstractParameterType | None = None, kind: str | None = None):
        super().__init__(None)
        self.real, self.kind = real, kind

    def deserialize_input(self, input_data):
        return input_data

    def input_to_swagger(self):
        return self.real.input_to_swagger() if self.real is not None else {"type": "object", "example": {}}


def _zeros(spec) -> np.ndarray:
    # A batch dimension (and any other free one, -1) of 1: a sample for the swagger, whose shape is not enforced.
    return np.zeros(tuple(1 if size == -1 else size for size in (spec.shape or ())), dtype=spec.type)


def _sample_from_example(mlmodel: Model, path: str):
    """The model's saved input example as the object its flavor takes, or None."""
    info = mlmodel.saved_input_example_info
    if not info:
        return None
    with open(os.path.join(path, info["artifact_path"])) as handle:
        example = json.load(handle)
    if info.get("type") == "dataframe" and pd is not None:
        orient = "split" if "columns" in example else "values"
        return pd.read_json(io.StringIO(json.dumps(example)), orient=orient, dtype=False)
    if info.get("type") == "ndarray":
        inputs = example["inputs"]
        return {k: np.asarray(v) for k, v in inputs.items()} if isinstance(inputs, dict) else np.asarray(inputs)
    return example


def _sample_from_schema(schema):
    """A sample of a signature's inputs or outputs (a Schema): zeros of a tensor's dtype, named tensors as a dict of
    them, or an empty table with the columns' types; None when there is no schema or it is neither."""
    if schema is None:
        return None
    if schema.is_tensor_spec():
        if schema.has_input_names():
            return {spec.name: _zeros(spec) for spec in schema.inputs}
        return _zeros(schema.inputs[0])
    if pd is None:
        return None
    try:
        names = schema.input_names()
        # zip without strict=: the model's environment may have a Python older than 3.10.
        return pd.DataFrame(columns=names).astype(dict(zip(names, schema.pandas_types())))  # noqa: B905
    except Exception:  # a column type pandas has no dtype for (arrays, objects): the model declares no table
        return None


def _parameter_type(sample, orient: str) -> tuple[AbstractParameterType | None, str | None]:
    """The inference-schema type Azure's script declares for a sample, and what kind of input that is."""
    if isinstance(sample, np.ndarray):
        return NumpyParameterType(sample, enforce_shape=False), "tensor"
    if pd is not None and isinstance(sample, pd.DataFrame):
        return PandasParameterType(sample, enforce_shape=False, orient=orient), "table"
    if isinstance(sample, dict) and sample and all(isinstance(v, np.ndarray) for v in sample.values()):
        types = {name: NumpyParameterType(value, enforce_shape=False) for name, value in sample.items()}
        return StandardPythonParameterType(types), "named tensors"
    return None, None


def _declare():
    """What run() declares for input_data, params and its output, from the model's MLmodel (read when the script is
    imported, as the decorators need it; the model itself is loaded by init())."""
    path = _model_path()
    mlmodel = Model.load(path)
    signature = mlmodel.signature
    sample = None
    try:
        sample = _sample_from_example(mlmodel, path)
    except Exception as err:  # as Azure's script: an example it cannot read, and the signature is used
        logger.warning("the model's input example could not be read (%s); using its signature", err)
    if sample is None and signature is not None:
        sample = _sample_from_schema(signature.inputs)
    input_type = Declared(*_parameter_type(sample, orient="split"))
    output_type = Declared(_parameter_type(_sample_from_schema(signature.outputs if signature else None), "records")[0])
    params = getattr(signature, "params", None) if signature else None
    # The swagger example of params: their defaults (those that have one).
    defaults = {p.name: p.default for p in params.params if p.default is not None} if params else None
    params_type = Declared(StandardPythonParameterType(defaults) if defaults else None)
    return path, signature, input_type, output_type, params_type


MODEL_PATH, SIGNATURE, INPUT_TYPE, OUTPUT_TYPE, PARAMS_TYPE = _declare()
model = None  # the pyfunc model, loaded by init()
_takes_params = False


def init():
    global model, _takes_params
    logger.info("loading the MLflow model %s", MODEL_PATH)
    model = load_model(MODEL_PATH)
    _takes_params = "params" in inspect.signature(model.predict).parameters


def _refuse(message: str) -> AMLResponse:
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return AMLResponse({"message": message}, 400, json_str=True)


def _as_declared(value, declared: AbstractParameterType):
    """value converted to the declared type, as inference-schema's input_schema decorator converts it (which refuses
    what the checks here refuse, with a less telling message)."""
    if isinstance(declared, StandardPythonParameterType) and declared.sample_data_type is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got a JSON {_json_type(value)}")
        kinds = declared.sample_data_type_map
        return {k: _as_declared(v, kinds[k]) if k in kinds else v for k, v in value.items()}
    if isinstance(value, declared.sample_data_type):
        return value
    if isinstance(declared, NumpyParameterType) and not isinstance(value, list):
        raise ValueError(f"expected a JSON array, got a JSON {_json_type(value)}")
    if PandasParameterType is not None and isinstance(declared, PandasParameterType) and not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got a JSON {_json_type(value)}")  # split orientation
    return declared.deserialize_input(value)


def _described_input() -> str:
    """The model's input as its signature says, for a refusal: a tensor's dtype and shape, or a table's columns."""
    if SIGNATURE is None:
        return ""
    if SIGNATURE.inputs.is_tensor_spec():
        return f" {SIGNATURE.inputs}"  # [Tensor('float32', (-1, 784))]
    names = [str(name) for name in SIGNATURE.inputs.input_names()]
    more = f", ... ({len(names)} columns)" if len(names) > 12 else ""
    return f" (columns {', '.join(names[:12])}{more})"


JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def _json_type(value) -> str:
    return JSON_TYPES.get(type(value), "number")


def _as_model_input(data):
    """input_data the model declares nothing for, read as Azure's script reads it."""
    if isinstance(data, str):
        data = json.loads(data)  # input_data given as a JSON string
    if isinstance(data, dict) and "input_data" in data:
        data = data["input_data"]  # an input_data inside input_data
    if isinstance(data, list):
        return np.asarray(data)
    if isinstance(data, dict) and {"columns", "index", "data"} <= data.keys():
        if pd is None:
            raise ValueError("a table needs pandas, which the model's environment does not have")
        return pd.read_json(io.StringIO(json.dumps(data)), orient="split", dtype=False)
    if isinstance(data, dict):
        return {name: np.asarray(value) for name, value in data.items()}
    raise ValueError(f"expected a list (a tensor) or an object (a table, named tensors), got a JSON {_json_type(data)}")


def _schema_reason(err: MlflowException) -> str:
    # MLflow's "Failed to enforce schema of data '<the data>' with schema '<schema>'. Error: <reason>": the reason.
    text = err.message
    return text.rsplit(". Error: ", 1)[-1] if text.startswith("Failed to enforce schema") else text


@input_schema("input_data", INPUT_TYPE)
@input_schema("params", PARAMS_TYPE, optional=True)
@output_schema(OUTPUT_TYPE)
def run(input_data, params=None):
    declared = INPUT_TYPE.real
    try:
        data = input_data if declared is None else _as_declared(input_data, declared)
    except Exception as err:  # inference-schema and pandas raise ValueError, TypeError or a bare Exception
        expected = f"; {HOW_TO_SEND[INPUT_TYPE.kind]}" if INPUT_TYPE.kind else ""
        return _refuse(
            f"input_data does not fit the model's input{_described_input()}: {str(err).rstrip('.')}{expected}"
        )
    is_array_dict = isinstance(data, dict) and data and isinstance(next(iter(data.values())), np.ndarray)
    if not (isinstance(data, np.ndarray) or is_array_dict or (pd is not None and isinstance(data, pd.DataFrame))):
        try:
            data = _as_model_input(data)
        except ValueError as err:
            return _refuse(f"input_data: {err}")
    try:
        result = model.predict(data, params=params) if _takes_params else model.predict(data)
    except MlflowException as err:
        if err.error_code in INPUT_ERRORS:
            return _refuse(f"input_data does not match the model's signature: {_schema_reason(err)}")
        raise
    return _get_jsonable_obj(result, pandas_orient="records")
