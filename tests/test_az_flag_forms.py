"""az's flag forms for online-endpoint/online-deployment/model/compute create and update (issue 22, part 1): the forms
Azure's own example scripts use, each as az does it (azext_mlv2/manual/custom/*.py of Azure/azure-cli-extensions),
and the command lines of Azure/azureml-examples cli/deploy-moe-minimal-single-model-registered.sh and
cli/deploy-moe-binary-payloads.sh with `aml-local` for `az ml`, on files of our own shaped like the samples'."""

import http.client
import json
import pathlib
import shutil
import textwrap
import uuid

import pytest

from aml_local import cli

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys, *argv):
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return json.loads(out) if out.strip().startswith(("{", "[")) else out.strip()


def refused(capsys, *argv):
    code, out, err = run(capsys, *argv)
    assert code == 1, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), err
    return lines[0]


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_online_endpoint_create_from_flags(home, capsys):
    shown = ok(capsys, "online-endpoint", "create", "-n", "Flags-Only", "--auth-mode", "key", "-g", "rg", "-w", "ws")
    assert shown["name"] == "flags-only" and shown["auth_mode"] == "key"  # az lower-cases --name
    assert shown["provisioning_state"] == "Succeeded" and shown["scoring_uri"].startswith("http://127.0.0.1:")
    assert ok(capsys, "online-endpoint", "show", "--name", "flags-only", "--query", "provisioning_state", "-o", "tsv")
    assert "--file/-f or --name/-n" in refused(capsys, "online-endpoint", "create")
    assert "mutually exclusive" in refused(capsys, "online-endpoint", "create", "-n", "other", "--local", "--no-wait")
    assert "key only" in refused(capsys, "online-endpoint", "create", "-n", "tokens", "--auth-mode", "aml_token")
    assert "--set" in refused(capsys, "online-endpoint", "update", "-n", "flags-only", "--set", "traffic.x=1")
    ok(capsys, "online-endpoint", "delete", "-n", "flags-only", "--yes", "--no-wait")


def test_model_create_forms(home, tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "w.txt").write_text("1")
    yml = write(tmp_path / "model.yml", "name: tiny\nversion: 1\npath: weights\n")
    shown = ok(capsys, "model", "create", "-f", yml, "--set", "version=7", "description=set")
    assert (shown["name"], shown["version"], shown["description"]) == ("tiny", "7", "set")
    shown = ok(capsys, "model", "create", "-f", yml, "--set", "version=8", "--version", "9", "--tags", "a=b")
    assert shown["version"] == "9" and shown["tags"]["a"] == "b"  # the flag is appended after --set: it wins
    shown = ok(capsys, "model", "create", "-n", "bare", "-v", "2", "-p", tmp_path / "weights", "-t", "custom_model")
    assert (shown["name"], shown["version"], shown["type"]) == ("bare", "2", "custom_model")
    assert "give --file, or --name and --path" in refused(capsys, "model", "create", "-n", "nopath")
    assert "--registry-name" in refused(capsys, "model", "create", "-f", yml, "--registry-name", "azureml")


def test_compute_create_from_flags(home, tmp_path, capsys):
    argv = ["compute", "create", "-n", "cpu-cluster", "--type", "amlcompute", "--min-instances", "0"]
    shown = ok(capsys, *argv, "--max-instances", "5", "--size", "Standard_DS3_v2", "--no-wait")
    assert (shown["name"], shown["type"], shown["min_instances"], shown["max_instances"]) == (
        "cpu-cluster",
        "amlcompute",
        0,
        5,
    )
    assert shown["size"] == "Standard_DS3_v2"
    yml = write(tmp_path / "compute.yml", "name: from-file\ntype: amlcompute\nmax_instances: 2\n")
    assert ok(capsys, "compute", "create", "-f", yml, "--set", "max_instances=3")["max_instances"] == 3
    assert "--name/-n and --type/-t" in refused(capsys, "compute", "create", "-n", "cpu")
    assert "--vnet-name" in refused(capsys, "compute", "create", "-n", "cpu", "-t", "amlcompute", "--vnet-name", "v")


@pytest.fixture
def samples(tmp_path, project_environments):
    """Files shaped like the samples' (cli/endpoints/online/...): our own tiny model and scoring scripts."""
    project_environments(tmp_path)
    online = tmp_path / "endpoints" / "online"
    write(online / "model-1" / "model" / "weights.json", '{"scale": 2}')
    write(
        online / "model-1" / "onlinescoring" / "score.py",
        """
        import json, os
        def init():
            global scale
            folder = os.environ["AZUREML_MODEL_DIR"]
            found = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if f == "weights.json"]
            scale = json.load(open(found[0]))["scale"]
        def run(raw_data):
            return [scale * x for x in json.loads(raw_data)["data"]]
        """,
    )
    write(online / "model-1" / "sample-request.json", '{"data": [1, 2, 3]}')
    minimal = online / "managed" / "minimal" / "single-model-registered"
    env = (REPO_ROOT / "environments" / "inference.conda.yaml").read_text()
    image = "mcr.microsoft.com/azureml/minimal-py312-inference:latest"
    write(minimal / "env.yml", env)
    write(minimal / "model.yml", "name: minimalregistered\nversion: {{MODEL_VERSION}}\npath: ../../../model-1/model\n")
    write(
        minimal / "deployment.yml",
        f"""
        name: smr
        endpoint_name: {{{{ENDPOINT_NAME}}}}
        model: azureml:minimalregistered:{{{{MODEL_VERSION}}}}
        code_configuration:
          code: ../../../model-1/onlinescoring
          scoring_script: score.py
        environment:
          image: {image}
          conda_file: env.yml
        instance_type: Standard_DS3_v2
        instance_count: 1
        """,
    )
    binary = online / "managed" / "binary-payloads"
    write(binary / "env.yml", env)
    write(
        binary / "code" / "single-file-to-file-score.py",
        """
        from azureml.contrib.services.aml_request import rawhttp
        from azureml.contrib.services.aml_response import AMLResponse
        def init():
            pass
        @rawhttp
        def run(request):
            return AMLResponse(request.files["file"].read()[::-1], 200)
        """,
    )
    write(
        binary / "code" / "multi-file-to-json-score.py",
        """
        from azureml.contrib.services.aml_request import rawhttp
        def init():
            pass
        @rawhttp
        def run(request):
            return {f.filename: len(f.read()) for f in request.files.getlist("file[]")}
        """,
    )
    write(
        binary / "binary-payloads-deployment.yml",
        f"""
        name: binary-payload
        endpoint_name: <ENDPOINT_NAME>
        model:
          path: .
        code_configuration:
          code: code
          scoring_script: <SCORING_SCRIPT>
        environment:
          image: {image}
          conda_file: env.yml
        instance_type: Standard_DS2_v2
        instance_count: 1
        """,
    )
    (binary / "input.jpg").write_bytes(b"\xff\xd8 not really a peacock \xff\xd9")
    return tmp_path


def change_vars(path: pathlib.Path, **values) -> pathlib.Path:
    """The scripts' change_vars: FILE_ with each {{VAR}} replaced."""
    text = path.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    target = path.with_name(path.name + "_")
    target.write_text(text)
    return target


def multipart(fields: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, filename, data in fields
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(url: str, key: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    host, rest = url.removeprefix("http://").split("/", 1)
    connection = http.client.HTTPConnection(host, timeout=60)
    try:
        connection.request(
            "POST", "/" + rest, body=body, headers={"Authorization": f"Bearer {key}", "Content-Type": content_type}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_deploy_moe_minimal_single_model_registered(home, samples, capsys, monkeypatch):
    monkeypatch.chdir(samples)
    endpoint_name, model_version = "endpt-moe-4242", "4242"
    base_path = pathlib.Path("endpoints/online/managed/minimal/single-model-registered")
    try:
        ok(capsys, "online-endpoint", "create", "-n", endpoint_name)
        status = ok(
            capsys, "online-endpoint", "show", "--name", endpoint_name, "--query", "provisioning_state", "-o", "tsv"
        )
        assert status.rsplit(".", 1)[-1].upper() == "SUCCEEDED"
        model_yml = change_vars(base_path / "model.yml", MODEL_VERSION=model_version)
        ok(capsys, "model", "create", "-f", model_yml)
        model_yml.unlink()
        deployment_yml = change_vars(
            base_path / "deployment.yml", ENDPOINT_NAME=endpoint_name, MODEL_VERSION=model_version
        )
        ok(capsys, "online-deployment", "create", "-f", deployment_yml, "--all-traffic")
        deployment_yml.unlink()
        argv = ["online-deployment", "show", "--name", "smr", "--endpoint", endpoint_name]
        assert ok(capsys, *argv, "--query", "provisioning_state", "-o", "tsv").upper() == "SUCCEEDED"
        key = ok(
            capsys, "online-endpoint", "get-credentials", "-n", endpoint_name, "--query", "primaryKey", "-o", "tsv"
        )
        url = ok(capsys, "online-endpoint", "show", "-n", endpoint_name, "--query", "scoring_uri", "-o", "tsv")
        body = pathlib.Path("endpoints/online/model-1/sample-request.json").read_bytes()
        assert post(url, key, body, "application/json") == (200, b"[2, 4, 6]")
    finally:
        ok(capsys, "online-endpoint", "delete", "-y", "-n", endpoint_name, "--no-wait")


def test_deploy_moe_binary_payloads(home, samples, capsys, monkeypatch):
    monkeypatch.chdir(samples)
    endpoint_name = "endpt-moe-777"
    base_path = "endpoints/online/managed/binary-payloads"
    picture = pathlib.Path(base_path, "input.jpg").read_bytes()
    try:
        ok(capsys, "online-endpoint", "create", "-n", endpoint_name)
        status = ok(
            capsys, "online-endpoint", "show", "--name", endpoint_name, "--query", "provisioning_state", "-o", "tsv"
        )
        assert status == "Succeeded"
        # The sample's YAML keeps <ENDPOINT_NAME> and <SCORING_SCRIPT>: -e and --set replace them, as az's
        # params_override does.
        ok(
            capsys,
            "online-deployment",
            "create",
            "-e",
            endpoint_name,
            "-f",
            f"{base_path}/binary-payloads-deployment.yml",
            "--set",
            "code_configuration.scoring_script=single-file-to-file-score.py",
            "--all-traffic",
        )
        key = ok(
            capsys, "online-endpoint", "get-credentials", "-n", endpoint_name, "--query", "primaryKey", "-o", "tsv"
        )
        url = ok(capsys, "online-endpoint", "show", "-n", endpoint_name, "--query", "scoring_uri", "-o", "tsv")
        code, out, _ = run(capsys, "online-deployment", "get-logs", "-n", "binary-payload", "-e", endpoint_name)
        assert code == 0 and out.strip()
        argv = ["online-deployment", "show", "--name", "binary-payload", "--endpoint", endpoint_name]
        assert ok(capsys, *argv, "--query", "provisioning_state", "-o", "tsv") == "Succeeded"
        body, content_type = multipart([("file", "input.jpg", picture)])
        status, output = post(url, key, body, content_type)
        assert (status, output) == (200, picture[::-1])
        pathlib.Path(base_path, "output.jpg").write_bytes(output)
        ok(
            capsys,
            "online-deployment",
            "update",
            "-e",
            endpoint_name,
            "-n",
            "binary-payload",
            "--set",
            "code_configuration.scoring_script=multi-file-to-json-score.py",
        )
        body, content_type = multipart([("file[]", "input.jpg", picture), ("file[]", "output.jpg", output)])
        status, answer = post(url, key, body, content_type)
        assert status == 200 and json.loads(answer) == {"input.jpg": len(picture), "output.jpg": len(picture)}
        # az takes -n/-e from the YAML when only -f is given (ml_online_deployment_update, _ml_online_deployment_show).
        updated = change_vars(pathlib.Path(base_path, "binary-payloads-deployment.yml"))
        updated.write_text(updated.read_text().replace("<ENDPOINT_NAME>", endpoint_name))
        shown = ok(
            capsys,
            "online-deployment",
            "update",
            "-f",
            updated,
            "--set",
            "code_configuration.scoring_script=multi-file-to-json-score.py",
            "instance_count=1",
        )
        assert (shown["name"], shown["endpoint_name"]) == ("binary-payload", endpoint_name)
    finally:
        ok(capsys, "online-endpoint", "delete", "-n", endpoint_name, "--no-wait", "--yes")
        shutil.rmtree(samples / "endpoints", ignore_errors=True)
