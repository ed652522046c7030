// Draw a digit, turn it into an MNIST-style 28x28 image, send it to the scoring URI, show the answer.
// No libraries and no network access beyond the scoring URI: the page works offline next to a local endpoint.
"use strict";

const PAD_SIZE = 280;
const STROKE_WIDTH = 24; // about 2.5 px after scaling into MNIST's 20x20 box, like its pen strokes
const INK_THRESHOLD = 0.1; // fainter pixels (antialiasing fringe) do not count towards the ink's bounding box
const KEY_ITEM = "mnist-draw.key"; // sessionStorage only: gone when the tab closes, never in localStorage
const URI_ITEM = "mnist-draw.uri";

const pad = document.getElementById("pad");
const padContext = pad.getContext("2d", { willReadFrequently: true });
const preview = document.getElementById("preview");
const previewContext = preview.getContext("2d");
const statusLine = document.getElementById("status");
const digitBox = document.getElementById("digit");
const bars = document.getElementById("bars");
const uriInput = document.getElementById("uri");
const keyInput = document.getElementById("key");
const keyState = document.getElementById("key-state");

let drawing = false;
let requestNumber = 0;

function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function clearPad() {
  padContext.fillStyle = "#fff";
  padContext.fillRect(0, 0, PAD_SIZE, PAD_SIZE);
  previewContext.fillStyle = "#000";
  previewContext.fillRect(0, 0, 28, 28);
  digitBox.textContent = "?";
  digitBox.dataset.state = "idle";
  bars.replaceChildren();
}

// ---- drawing: pointer events cover mouse, pen and touch ---------------------------------------------------
function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [((event.clientX - box.left) * PAD_SIZE) / box.width, ((event.clientY - box.top) * PAD_SIZE) / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  const [x, y] = padPoint(event);
  padContext.beginPath();
  padContext.moveTo(x, y);
  padContext.lineTo(x + 0.01, y); // a tap leaves a dot
  padContext.stroke();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = padPoint(event);
  padContext.lineTo(x, y);
  padContext.stroke();
});
function endStroke() {
  if (!drawing) return;
  drawing = false;
  predict();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// ---- preprocessing, as MNIST's digits were made ----------------------------------------------------------
// Ink in 0..1 (1 = black pen on the white pad), so the result is white digits on black like MNIST.
function inkOf(context, size) {
  const rgba = context.getImageData(0, 0, size, size).data;
  const ink = new Float32Array(size * size);
  for (let i = 0; i < ink.length; i++) {
    ink[i] = 1 - (0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]) / 255;
  }
  return ink;
}

function inkBox(ink, size) {
  let left = size, top = size, right = -1, bottom = -1;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (ink[y * size + x] > INK_THRESHOLD) {
        left = Math.min(left, x); right = Math.max(right, x);
        top = Math.min(top, y); bottom = Math.max(bottom, y);
      }
    }
  }
  return right < 0 ? null : { left, top, width: right - left + 1, height: bottom - top + 1 };
}

// weights[t][s]: how much of source pixel s falls into target pixel t (each row sums to 1): area averaging,
// which neither drops thin strokes when shrinking nor smears them.
function areaWeights(sourceLength, targetLength) {
  const step = sourceLength / targetLength;
  const weights = [];
  for (let t = 0; t < targetLength; t++) {
    const from = t * step, to = (t + 1) * step;
    const row = new Float32Array(sourceLength);
    for (let s = Math.floor(from); s < Math.min(sourceLength, Math.ceil(to)); s++) {
      row[s] = (Math.min(to, s + 1) - Math.max(from, s)) / step;
    }
    weights.push(row);
  }
  return weights;
}

function resample(ink, size, box, targetWidth, targetHeight) {
  const wx = areaWeights(box.width, targetWidth), wy = areaWeights(box.height, targetHeight);
  const rows = []; // first shrink each source row to targetWidth, then the columns to targetHeight
  for (let y = 0; y < box.height; y++) {
    const row = new Float32Array(targetWidth);
    for (let t = 0; t < targetWidth; t++) {
      let sum = 0;
      for (let x = 0; x < box.width; x++) sum += wx[t][x] * ink[(box.top + y) * size + box.left + x];
      row[t] = sum;
    }
    rows.push(row);
  }
  const out = new Float32Array(targetWidth * targetHeight);
  for (let t = 0; t < targetHeight; t++) {
    for (let x = 0; x < targetWidth; x++) {
      let sum = 0;
      for (let y = 0; y < box.height; y++) sum += wy[t][y] * rows[y][x];
      out[t * targetWidth + x] = sum;
    }
  }
  return out;
}

// Crop to the ink, scale its longer side to 20 px (aspect kept), place it in 28x28 so that its centre of mass
// is at the centre: 784 values in 0..1, row by row. null when nothing is drawn.
function toMnist(ink, size) {
  const box = inkBox(ink, size);
  if (!box) return null;
  const scale = 20 / Math.max(box.width, box.height);
  const width = Math.max(1, Math.round(box.width * scale)), height = Math.max(1, Math.round(box.height * scale));
  const small = resample(ink, size, box, width, height);
  let mass = 0, sumX = 0, sumY = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = small[y * width + x];
      mass += v; sumX += v * (x + 0.5); sumY += v * (y + 0.5);
    }
  }
  // Shift so the centre of mass lands on (14, 14), keeping the whole 20x20 box inside the image.
  const left = Math.min(Math.max(Math.round(14 - sumX / mass), 0), 28 - width);
  const top = Math.min(Math.max(Math.round(14 - sumY / mass), 0), 28 - height);
  const image = new Float32Array(784);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      image[(top + y) * 28 + left + x] = Math.min(1, Math.max(0, small[y * width + x]));
    }
  }
  return image;
}

function showPreview(image) {
  const pixels = previewContext.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const level = Math.round(image[i] * 255);
    pixels.data.set([level, level, level, 255], 4 * i);
  }
  previewContext.putImageData(pixels, 0, 0);
}

// ---- the endpoint --------------------------------------------------------------------------------------------
function showAnswer(probabilities, predicted) {
  digitBox.textContent = String(predicted);
  bars.replaceChildren();
  probabilities.forEach((p, digit) => {
    const label = document.createElement("span");
    label.textContent = String(digit);
    const bar = document.createElement("div");
    bar.className = digit === predicted ? "bar top" : "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    bar.dataset.digit = String(digit);
    const value = document.createElement("span");
    value.textContent = p.toFixed(3);
    bars.append(label, bar, value);
  });
}

async function predict() {
  const image = toMnist(inkOf(padContext, PAD_SIZE), PAD_SIZE);
  if (!image) {
    say("Draw a digit first.", true);
    return;
  }
  showPreview(image);
  const uri = sessionStorage.getItem(URI_ITEM), key = sessionStorage.getItem(KEY_ITEM);
  if (!uri || !key) {
    say("Enter the scoring URI and the endpoint key above, then press Use.", true);
    return;
  }
  const number = ++requestNumber; // a slower earlier answer must not overwrite a later one
  digitBox.dataset.state = "waiting";
  say("Asking the endpoint...");
  let response;
  try {
    response = await fetch(uri, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
      body: JSON.stringify({ data: [Array.from(image, (v) => Number(v.toFixed(4)))] }),
    });
  } catch (error) {
    if (number === requestNumber) {
      digitBox.dataset.state = "error";
      say(`Could not reach ${uri} (${error.message}): is the endpoint up, and does it allow this page's origin (CORS)?`, true);
    }
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (number !== requestNumber) return;
  if (!response.ok) {
    digitBox.dataset.state = "error";
    const why = response.status === 401 ? "the endpoint refused the key" : "the endpoint answered an error";
    say(`${why} (HTTP ${response.status}): ${body.message || response.statusText}`, true);
    return;
  }
  showAnswer(body.probabilities[0], body.predictions[0]);
  digitBox.dataset.state = "done";
  say(`Predicted ${body.predictions[0]} with probability ${Math.max(...body.probabilities[0]).toFixed(3)}.`);
}

// ---- settings: the URI and key, kept for this tab's session only ------------------------------------------
function defaultUri() {
  // Served by the local endpoint (GET /draw/): score on the same origin, so no CORS is needed.
  return location.protocol.startsWith("http") ? `${location.origin}/score` : "";
}

function showKeyState() {
  keyState.textContent = sessionStorage.getItem(KEY_ITEM) ? "key set for this tab" : "no key yet";
}

document.getElementById("settings").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(URI_ITEM, uriInput.value.trim());
  sessionStorage.setItem(KEY_ITEM, keyInput.value.trim());
  keyInput.value = ""; // the key stays in sessionStorage, not on screen
  showKeyState();
  say("Ready: draw a digit.");
});
document.getElementById("clear").addEventListener("click", clearPad);
document.getElementById("predict").addEventListener("click", predict);

padContext.lineWidth = STROKE_WIDTH;
padContext.lineCap = "round";
padContext.lineJoin = "round";
padContext.strokeStyle = "#000";
uriInput.value = sessionStorage.getItem(URI_ITEM) || defaultUri();
showKeyState();
clearPad();
