"""What a deployment YAML names that online and batch deployments take alike: its code_configuration (a local folder
with the scoring script in it, copied in so that later edits do not change the deployment), an inline model (copied in
as Azure registers it, an anonymous version 1), the references it records (model, environment, compute), and for an
MLflow model deployed without code (Azure's no-code deployment) the MLmodel's flavors and the requirements the model
lists, from which its environment is built."""

import shutil
from pathlib import Path

import yaml

from aml_local import AmlLocalError
from aml_local.assets import model
from aml_local.assets.env_spec import SpecBuilder


def no_code(entity) -> bool:
    """Whether the YAML gives no scoring script at all (Azure's no-code deployment, for an MLflow model)."""
    configuration = entity.code_configuration
    return configuration is None or not (configuration.code or configuration.scoring_script)


def copy_code(entity, file, into: Path) -> tuple[Path, Path, str]:
    """Copy code_configuration.code (a folder, relative to the YAML's) to into/<its name>; (the folder, its copy, the
    scoring script)."""
    configuration = entity.code_configuration
    if configuration is None or not configuration.code or not configuration.scoring_script:
        raise AmlLocalError(
            f"{file}: code_configuration: code and scoring_script are required (only a model of type mlflow_model "
            "deploys without them)"
        )
    code = str(configuration.code)
    if code.startswith("azureml:"):
        raise AmlLocalError(f"{file}: code_configuration.code {code}: a registered code asset; give a local folder")
    source = (Path(entity.base_path or Path(file).resolve().parent) / code).resolve()
    if not source.is_dir():
        raise AmlLocalError(f"{file}: code_configuration.code {code}: {source} is not a folder")
    script = str(configuration.scoring_script)
    if not (source / script).is_file():
        raise AmlLocalError(f"{file}: code_configuration.scoring_script {script}: no such file in {source}")
    target = into / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git", "*.egg-info"))
    return source, target, script


def inline_model(reference, file, folder: Path) -> tuple[str, Path, str, Path]:
    """An inline model (an azure.ai.ml Model with a path, relative to the YAML's folder) copied by its own name into
    folder/azureml-models/<name>/1, as Azure registers it: an anonymous version 1 under a generated name. (Its id as
    show prints it, AZUREML_MODEL_DIR, its type, the copy.)"""
    base_dir = Path(reference.base_path or Path(file).resolve().parent)
    source, _ = model.resolve_source(str(reference.path), base_dir, field="model.path")
    name = reference.name or "model"
    model_dir = folder / "azureml-models" / name / "1"
    model_dir.mkdir(parents=True)
    target = model_dir / source.name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return f"azureml:/local/models/{name}/versions/1", model_dir, reference.type or "custom_model", target


def recorded_reference(value):
    """A model, environment or compute as a deployment records it: a reference as azureml:<...>; an inline one by its
    kind only (noted, not built)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.startswith("azureml:") else f"azureml:{value}"
    return f"inline {type(value).__name__.lower()}"


def mlmodel_flavors(model_path: Path, file) -> dict:
    mlmodel = model_path / "MLmodel"
    try:
        return (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors") or {}
    except (OSError, yaml.YAMLError, AttributeError) as err:
        raise AmlLocalError(f"{file}: model: {mlmodel} cannot be read as an MLmodel file ({err})") from None


def mlflow_requirements(model_path: Path, pyfunc: dict) -> SpecBuilder:
    """The MLflow model's own requirements as an environment to finish: MLflow writes them as conda.yaml, and as
    python_env.yaml with requirements.txt (its python_function flavor's `env` names them); mlflow alone when it
    lists none. Its Python is the one they name, else the flavor's python_version."""
    mlmodel = model_path / "MLmodel"
    files = pyfunc.get("env") or {}
    files = files if isinstance(files, dict) else {"conda": files}  # MLflow 1.x wrote `env: conda.yaml`
    builder = SpecBuilder(name=f"MLflow model {model_path.name}", source=str(mlmodel))
    conda = model_path / (files.get("conda") or "conda.yaml")
    python_env = model_path / (files.get("virtualenv") or "python_env.yaml")
    if conda.is_file():
        builder.read_conda(str(conda), origin=str(conda), base_dir=None)
    elif python_env.is_file():
        try:
            described = yaml.safe_load(python_env.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise AmlLocalError(f"{python_env}: cannot be read ({err})") from None
        if described.get("python"):
            builder.add_conda_spec(f"python={described['python']}", origin=str(python_env), where="python")
        for line in described.get("dependencies") or []:
            builder.add_pip_line(str(line), origin=str(python_env), base_dir=model_path)
    elif (model_path / "requirements.txt").is_file():
        builder.add_pip_line("-r requirements.txt", origin=str(mlmodel), base_dir=model_path)
    else:
        builder.add_pip_line("mlflow", origin=f"{mlmodel} (it lists no requirements)", base_dir=None)
    if builder.python is None and pyfunc.get("python_version"):
        builder.add_conda_spec(f"python={pyfunc['python_version']}", origin=str(mlmodel), where="python")
    return builder
