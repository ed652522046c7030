"""The scoring script aml-local supplies for an MLflow model batch-deployed with no code_configuration (Azure's
generated batch driver). endpoints/batch/deployment.py copies it into the deployment; a scoring job's workers
(aml_local/jobs/minibatch_worker.py) import it, call init() once and run() per mini-batch, in the deployment's
environment (the model's own requirements): so it imports nothing of aml_local, only the standard library, numpy,
pandas and mlflow (and Pillow for images, when the environment has it).

What it does, as the Azure ML page "Deploy MLflow models in batch deployments" describes Azure's generated script:
- the model is $AZUREML_MODEL_DIR/$MLFLOW_MODEL_FOLDER, loaded with mlflow.pyfunc.load_model ("Batch deployments
  support deploying MLflow models with a pyfunc flavor only");
- each file is read by its extension: .csv, .parquet and .pqt as a pandas DataFrame (typed by the signature's
  columns when it has them: MLflow's predict enforces the signature), .png, .jpg, .jpeg, .tiff, .bmp and .gif as a
  numpy array (uint8 when the model declares no tensor; reshaped to the signature's tensor shape when it does);
  any other type fails that file ("File type 'avro' is not supported");
- predict is called once per file, and the result has one row per data point: `row` (the row's index in its file,
  tabular input only), `prediction` (as the model returned it) and the file's name, in that order;
- a file that cannot be read or scored is logged ("ERROR:azureml:Error processing input file: '<path>'. Exception:
  ...", "Troubleshoot batch endpoints") and left out of the result, so it counts as a failed item; when no file of the
  mini-batch could be scored, run() raises pandas' "No objects to concatenate", as the page describes.
"""

import logging
import os

import numpy as np
import pandas as pd
from mlflow.pyfunc import load_model

logger = logging.getLogger("azureml")
TABULAR = (".csv", ".parquet", ".pqt")
IMAGES = (".png", ".jpg", ".jpeg", ".tiff", ".bmp", ".gif")
model = None
tensor_spec = None


def init():
    global model, tensor_spec
    logging.basicConfig()  # "ERROR:azureml:..." on the worker's stderr, its log (the format the page quotes)
    missing = [name for name in ("AZUREML_MODEL_DIR", "MLFLOW_MODEL_FOLDER") if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not set: the deployment says where its MLflow model is with them")
    model = load_model(os.path.join(os.environ["AZUREML_MODEL_DIR"], os.environ["MLFLOW_MODEL_FOLDER"]))
    signature = model.metadata.signature
    inputs = signature.inputs if signature is not None else None
    if inputs is not None and inputs.is_tensor_spec() and len(inputs.inputs) == 1:
        tensor_spec = inputs.inputs[0]


def _read_image(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        data = np.asarray(image)
    if tensor_spec is None:
        return data.astype(np.uint8)[np.newaxis, ...]
    shape = tuple(1 if size == -1 else size for size in (tensor_spec.shape or data.shape))
    return data.astype(tensor_spec.type).reshape(shape)


def _read(path: str):
    extension = os.path.splitext(path)[1].lower()
    if extension == ".csv":
        return pd.read_csv(path)
    if extension in (".parquet", ".pqt"):
        return pd.read_parquet(path)
    if extension in IMAGES:
        return _read_image(path)
    raise ValueError(f"File type '{extension.lstrip('.') or path}' is not supported")


def _as_rows(prediction) -> list:
    """One prediction per data point, as the model returned it: a number, or a list for a row of several values."""
    if isinstance(prediction, pd.DataFrame):
        values = prediction.to_numpy()
        return [row[0] if len(row) == 1 else row.tolist() for row in values]
    if isinstance(prediction, pd.Series):
        return prediction.tolist()
    values = np.asarray(prediction)
    if values.ndim == 0:
        return [values.item()]
    return [row.tolist() if isinstance(row, np.ndarray) else row for row in values]


def run(mini_batch):
    results = []
    for path in mini_batch:
        name = os.path.basename(path)
        try:
            data = _read(path)
            rows = _as_rows(model.predict(data))
        except Exception as error:
            logger.error("Error processing input file: '%s'. Exception: %s", path, error)
            continue
        if isinstance(data, pd.DataFrame):
            results.append(pd.DataFrame({"row": range(len(rows)), "prediction": rows, "file": name}))
        else:
            results.append(pd.DataFrame({"prediction": rows[:1], "file": name}))
    return pd.concat(results, ignore_index=True)
