"""The draw-a-digit page (aml_local/draw/) in headless Chromium, served by the session's local endpoint (conftest's
mnist_deployment: the trained_model_dir model, 4 epochs on all of the real MNIST, behind the endpoint's router):
mouse strokes drawn on the pad, the 28x28 image the page sends (ink box, centre of mass, the preview showing exactly
it), the prediction and its ten bars, and where the key is kept.

Needs Chromium (Debian's `chromium`, or Google Chrome; CHROMIUM=/path picks one) and the real MNIST (MNIST_DATA):
the tiny fixtures do not train a model that reads hand-drawn digits. Without either, the tests skip and say why
(DRAW_PAGE_TEST=required, as make test-browser and CI set, makes a missing browser a failure).
UPDATE_DOCS_IMAGES=1 also writes the screenshot to docs/images/draw-page.png (make docs-images).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "google-chrome", "google-chrome-stable", "chromium-browser")

# Strokes on the 280x280 pad, as a person would draw these digits: lists of (x, y) points, one list per stroke.
ELLIPSE = [(140 + 58 * np.sin(t), 140 - 95 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 41)]
DRAWN_DIGITS = {
    1: [[(150, 40), (130, 240)]],
    7: [[(70, 55), (210, 55), (115, 245)]],
    0: [ELLIPSE],
}


def browser_path():
    chosen = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not chosen or not os.access(chosen, os.X_OK):
        why = f"no Chromium found ({', '.join(BROWSERS)}; or set CHROMIUM): apt-get install chromium"
        if os.environ.get("DRAW_PAGE_TEST") == "required":  # make test-browser and CI: a skip would hide it
            pytest.fail(why)
        pytest.skip(why)
    return chosen


@pytest.fixture(scope="module")
def real_mnist():
    folder = os.environ.get("MNIST_DATA", "")
    path = (REPO_ROOT / folder).resolve() if folder else None
    if not path or not path.is_dir():
        pytest.skip("MNIST_DATA is not set to a folder: a model that reads drawn digits needs the real MNIST")
    return path


@pytest.fixture(scope="module")
def endpoint(real_mnist, mnist_deployment):
    """The session's deployment of the trained model (the project's endpoint.yml and blue-deployment.yml, behind the
    endpoint's router: tests/conftest.py's mnist_deployment): (page URL, scoring URI, key)."""
    _, deployed = mnist_deployment
    uri = deployed.target.scoring_uri
    return uri.replace("/score", "/draw/"), uri, deployed.target.key


@pytest.fixture(scope="module")
def browser():
    executable = browser_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev group has it)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    yield context.new_page()
    context.close()


def use_key(page, url, uri, key):
    page.goto(url)
    page.fill("#uri", uri)
    page.fill("#key", key)
    page.click("#settings button[type=submit]")


def draw(page, strokes):
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
        page.mouse.up()


def preview_pixels(page) -> np.ndarray:
    red = page.evaluate(
        "Array.from(document.getElementById('preview').getContext('2d').getImageData(0, 0, 28, 28).data)"
        ".filter((_, i) => i % 4 === 0)"
    )
    return np.array(red, dtype=float).reshape(28, 28) / 255


def test_the_page_is_served_without_a_key_and_scoring_still_needs_one(endpoint):
    import urllib.error
    import urllib.request

    url, uri, _ = endpoint
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/html")
        assert b'src="draw.js"' in answer.read()
    with urllib.request.urlopen(url + "draw.js", timeout=10) as answer:
        assert answer.headers["Content-Type"] == "text/javascript"
    for missing in ("../serving.py", "nothing.js", "%2e%2e/keys.json"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + missing, timeout=10)
        assert refused.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(uri, data=b'{"data": []}', method="POST"), timeout=10)
    assert refused.value.code == 401


def test_explores_sample_requests_are_predicted_as_their_labels(endpoint, real_mnist, tmp_path):
    import urllib.request

    _, uri, key = endpoint
    for index in (0, 1, 2, 3):  # a 7, a 2, a 1 and a 0
        request_file = tmp_path / f"{index}.json"
        explore = [sys.executable, REPO_ROOT / "src/explore.py", "--data-folder", real_mnist, "--sample", index]
        printed = subprocess.run(
            [*map(str, explore), "--request-file", str(request_file)], capture_output=True, text=True
        )
        label = int(printed.stdout.rsplit("label ", 1)[1])
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        with urllib.request.urlopen(
            urllib.request.Request(uri, request_file.read_bytes(), headers), timeout=10
        ) as answer:
            assert json.load(answer)["predictions"] == [label], f"test image {index}"


def test_drawn_digits_are_sent_as_mnist_images_and_predicted(page, endpoint, tmp_path):  # no browser: skip first
    url, uri, key = endpoint
    use_key(page, url, uri, key)
    for digit, strokes in DRAWN_DIGITS.items():
        page.click("#clear")
        with page.expect_request(lambda r: r.url == uri and r.method == "POST") as sent:
            draw(page, strokes)
        page.wait_for_selector("#digit[data-state=done]", timeout=15000)
        request = sent.value
        assert request.headers["authorization"] == f"Bearer {key}"
        image = np.array(json.loads(request.post_data)["data"][0])
        assert image.shape == (784,) and image.min() >= 0 and image.max() <= 1
        image = image.reshape(28, 28)
        # As MNIST: the ink fits a 20x20 box with its longer side filling it, centred by mass in the 28x28 field.
        rows, columns = np.flatnonzero(image.max(axis=1) > 0.1), np.flatnonzero(image.max(axis=0) > 0.1)
        height, width = rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1
        assert max(height, width) in (19, 20) and min(height, width) <= 20, (digit, height, width)
        centre = [np.sum(image.sum(axis=axis) * (np.arange(28) + 0.5)) / image.sum() for axis in (1, 0)]
        assert np.allclose(centre, 14, atol=1.0), (digit, centre)
        # The preview is the image that was sent (8 bits per pixel on the canvas).
        assert np.abs(preview_pixels(page) - image).max() <= 1 / 255 + 1e-6
        shown = int(page.text_content("#digit"))
        widths = page.eval_on_selector_all("#bars .bar", "bars => bars.map(b => parseFloat(b.style.width))")
        assert shown == digit, f"drew a {digit}, the page shows {shown}; bars: {widths}"
        assert len(widths) == 10 and int(np.argmax(widths)) == digit and abs(sum(widths) - 100) < 1
        if digit == 7:
            page.screenshot(path=tmp_path / "draw-page.png")
    assert (tmp_path / "draw-page.png").stat().st_size > 10_000
    if os.environ.get("UPDATE_DOCS_IMAGES"):
        (REPO_ROOT / "docs/images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "draw-page.png", REPO_ROOT / "docs/images/draw-page.png")


def test_the_key_is_asked_for_kept_for_the_tab_only_and_a_wrong_one_is_reported(browser, page, endpoint):
    url, uri, key = endpoint
    page.goto(url)
    assert page.input_value("#uri") == uri, "served by the endpoint, the page scores on its own origin"
    draw(page, DRAWN_DIGITS[1])
    assert "Enter the scoring URI and the endpoint key" in page.text_content("#status")
    use_key(page, url, uri, "not-" + key)
    draw(page, DRAWN_DIGITS[1])
    page.wait_for_selector("#digit[data-state=error]", timeout=15000)
    assert "refused the key (HTTP 401)" in page.text_content("#status")

    use_key(page, url, uri, key)
    assert page.input_value("#key") == "", "the key does not stay on screen"
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("sessionStorage.getItem('mnist-draw.key')") == key
    page.reload()  # the same tab keeps it
    draw(page, DRAWN_DIGITS[1])
    page.wait_for_selector("#digit[data-state=done]", timeout=15000)
    other_tab = browser.new_context().new_page()  # a new session starts without it
    other_tab.goto(url)
    assert other_tab.evaluate("sessionStorage.length") == 0 and other_tab.evaluate("localStorage.length") == 0
    other_tab.context.close()
