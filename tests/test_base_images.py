"""Every base image the repo's YAML names (`image:`, in environment specs or inline environments) is on the allowed
list, aml_local/assets/base_images.json, with its tag: documented images only, each with the source that documents it.
Another tool (the environment builder) reads that list, so its shape is checked too."""

import json
import pathlib
import subprocess

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
ALLOWED = json.loads((REPO_ROOT / "aml_local" / "assets" / "base_images.json").read_text())


def images_in(node):
    """Every `image:` value in a YAML document, at any depth (an environment spec's own, or an inline environment's)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from images_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from images_in(item)


def repo_yaml_files():
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.yml", "*.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO_ROOT / name for name in listed if (REPO_ROOT / name).is_file()]


def split(reference):
    name, _, tag = reference.rpartition(":")
    return (name, tag) if name and "/" not in tag else (reference, "latest")


def test_the_allowed_list_has_the_shape_its_readers_expect():
    assert set(ALLOWED) == {"source_note", "images"} and ALLOWED["source_note"]
    for image, entry in ALLOWED["images"].items():
        assert set(entry) == {"tags", "python", "packages", "source"}, image
        assert image.startswith("mcr.microsoft.com/azureml/") and ":" not in image, image
        assert entry["tags"] and all(isinstance(tag, str) and tag for tag in entry["tags"]), image
        assert entry["python"] is None or entry["python"].count(".") == 1, image
        assert isinstance(entry["packages"], list), image
        assert entry["source"].startswith("https://"), image
        if image.endswith("-inference"):
            assert "azureml-inference-server-http" in entry["packages"], image


def test_every_image_in_the_repos_yaml_is_allowed_with_its_tag():
    found = {}
    for path in repo_yaml_files():
        for document in yaml.safe_load_all(path.read_text()):
            for reference in images_in(document):
                found.setdefault(reference, []).append(str(path.relative_to(REPO_ROOT)))
    assert len(found) == 3, found  # the training (CPU and GPU) and inference environments
    for reference, where in found.items():
        image, tag = split(reference)
        assert image in ALLOWED["images"], f"{reference} ({', '.join(where)}) is not in the allowed list"
        assert tag in ALLOWED["images"][image]["tags"], f"{reference} ({', '.join(where)}): tag {tag} is not allowed"


def test_the_undocumented_image_is_caught():
    # The inference image this repo named before: on neither the prebuilt-images page nor in Azure's examples.
    image, tag = split("mcr.microsoft.com/azureml/minimal-py311-inference:latest")
    assert (image, tag) == ("mcr.microsoft.com/azureml/minimal-py311-inference", "latest")
    assert image not in ALLOWED["images"]
