// The exported drawing page: draw on #pad (or choose or drop an image file) and the model reads it in this
// browser, with ONNX Runtime Web's WebAssembly build (./ort/, shipped beside the page; nothing is fetched
// from anywhere else). The drawing goes through prepare.js, the port of `mnist-keras predict`'s own
// preparation and decision, so the answer is the one `predict` gives for the same pixels. One reading at a
// time, the latest input always last; #result's data-version says which input the answer is for.
import { ImageError, predictionRecord, preparation } from "./prepare.js";

const SETTINGS_FILE = "page.json";
const ORT_MODULE = "./ort/ort.wasm.min.mjs";
const LINE_WIDTH = 22; // as the served page: on a 280 px pad, strokes about as thick as MNIST's
const pad = document.getElementById("pad");
const context = pad.getContext("2d", { willReadFrequently: true });
const seen = document.getElementById("seen");
const seenContext = seen.getContext("2d");
const result = document.getElementById("result");
const digitText = document.getElementById("digit");
const confidenceText = document.getElementById("confidence");
const statusText = document.getElementById("status");
const bars = document.getElementById("bars");
const fileInput = document.getElementById("file");

let settings = null;   // page.json
let prepare = null;    // prepare.js's functions, with page.json's constants
let ort = null;        // the ONNX Runtime Web module
let session = null;    // the model, once loaded
let version = 0;       // bumped on every new input (a stroke, a file, a clear)
let clearedAt = 0;     // the version at the last clear: older answers are not shown
let pending = null;    // the newest input not yet read: { version, grey: () => grey image, source }
let busy = false;
let drawing = false;
let last = null;

function buildBars(count) {
  for (let digit = 0; digit < count; digit++) {
    const label = document.createElement("span");
    label.textContent = String(digit);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.id = "bar-" + digit;
    bar.appendChild(document.createElement("span"));
    const value = document.createElement("span");
    value.className = "value";
    value.id = "value-" + digit;
    bars.append(label, bar, value);
  }
}

function resetPad() {
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, pad.width, pad.height);
  context.strokeStyle = "#000000";
  context.fillStyle = "#000000";
  context.lineWidth = LINE_WIDTH;
  context.lineCap = "round";
  context.lineJoin = "round";
}

// The answer (or null for none): digit or "not a digit", the ten bars, and the 28×28 input it came from.
function showResult(answer, input) {
  const notADigit = answer !== null && answer.is_digit === false;
  digitText.textContent = answer === null ? "–" : notADigit ? "not a digit" : String(answer.digit);
  digitText.classList.toggle("not-digit", notADigit);
  confidenceText.textContent = answer === null || notADigit ? "" : (100 * answer.confidence).toFixed(1) + "%";
  for (let digit = 0; digit < bars.children.length / 3; digit++) {
    const probability = answer === null ? 0 : answer.probabilities[digit];
    const bar = document.getElementById("bar-" + digit);
    bar.firstChild.style.width = (100 * probability).toFixed(1) + "%";
    bar.classList.toggle("best", answer !== null && digit === answer.digit);
    document.getElementById("value-" + digit).textContent = answer === null ? "" : (100 * probability).toFixed(1) + "%";
  }
  const pixels = seenContext.createImageData(seen.width, seen.height);
  for (let index = 0; index < seen.width * seen.height; index++) {
    const level = input ? Math.round(255 * input[index]) : 0;
    pixels.data.set([level, level, level, 255], 4 * index);
  }
  seenContext.putImageData(pixels, 0, 0);
  result.dataset.answer = answer === null ? "" : JSON.stringify({ ...answer, image: input ? Array.from(input) : null });
}

// ---------------------------------------------------------------- reading

function submit(grey, source) {
  version += 1;
  pad.dataset.version = String(version);
  pending = { version, grey, source };
  readLatest();
}

async function readLatest() {
  if (busy || pending === null || session === null) return;
  const job = pending;
  pending = null;
  busy = true;
  result.dataset.state = "busy";
  let state = "ready";
  let message = "";
  try {
    const started = performance.now();
    const input = prepare.mnistStyle(await job.grey());
    const prepared = performance.now();
    const { NUM_PIXELS } = settings.shape;
    const feeds = { [settings.model.input]: new ort.Tensor("float32", input, [1, NUM_PIXELS]) };
    const outputs = (await session.run(feeds))[session.outputNames[0]].data;
    const answer = predictionRecord(Array.from(outputs), input, settings);
    const milliseconds = performance.now() - started;
    if (job.version > clearedAt) {
      showResult(answer, input);
      // How long this reading took (pixels to answer), and its two parts: for benchmarks/web_page.py.
      result.dataset.milliseconds = milliseconds.toFixed(2);
      result.dataset.prepareMilliseconds = (prepared - started).toFixed(2);
      result.dataset.answeredAt = performance.now().toFixed(2);
      message = (job.source ? job.source + ": " : "") + "read in " + milliseconds.toFixed(1) + " ms in this browser";
    }
  } catch (error) {
    state = "error";
    message = (job.source ? job.source + ": " : "") + (error instanceof ImageError ? error.message
      : "could not read it (" + error + ")");
    if (job.version > clearedAt) showResult(null, null);
  } finally {
    busy = false;
    if (job.version > clearedAt) {
      result.dataset.version = String(job.version);
      result.dataset.state = state;
      statusText.textContent = message;
    }
    readLatest();
  }
}

function padGrey() {
  const pixels = context.getImageData(0, 0, pad.width, pad.height);
  return prepare.greyFromRGBA(pixels.data, pad.width, pad.height);
}

// An image file's pixels as decoded by the browser (EXIF orientation applied, no colour conversion).
async function fileGrey(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { premultiplyAlpha: "none", colorSpaceConversion: "none" });
  } catch (error) {
    throw new ImageError("not an image this browser can decode (PNG, JPEG, GIF, WebP, BMP, ...)");
  }
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const fileContext = canvas.getContext("2d", { willReadFrequently: true });
  fileContext.drawImage(bitmap, 0, 0);
  bitmap.close();
  const pixels = fileContext.getImageData(0, 0, canvas.width, canvas.height);
  return prepare.greyFromRGBA(pixels.data, canvas.width, canvas.height);
}

function readFile(file) {
  resetPad();
  submit(() => fileGrey(file), file.name);
}

// ---------------------------------------------------------------- drawing

function position(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: (event.clientX - box.left) * (pad.width / box.width),
    y: (event.clientY - box.top) * (pad.height / box.height),
  };
}

function dot(point) {
  context.beginPath();
  context.arc(point.x, point.y, LINE_WIDTH / 2, 0, 2 * Math.PI);
  context.fill();
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = position(event);
  dot(last);
  submit(padGrey, "");
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  event.preventDefault();
  const point = position(event);
  context.beginPath();
  context.moveTo(last.x, last.y);
  context.lineTo(point.x, point.y);
  context.stroke();
  last = point;
  submit(padGrey, "");
});

function endStroke() {
  drawing = false;
  last = null;
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  resetPad();
  pending = null;
  version += 1;
  clearedAt = version;
  pad.dataset.version = String(version);
  result.dataset.version = String(version);
  result.dataset.state = session === null ? result.dataset.state : "empty";
  statusText.textContent = "";
  showResult(null, null);
});

fileInput.addEventListener("change", () => {
  if (fileInput.files.length) readFile(fileInput.files[0]);
  fileInput.value = "";
});
pad.addEventListener("dragover", (event) => {
  event.preventDefault();
  pad.classList.add("dropping");
});
pad.addEventListener("dragleave", () => pad.classList.remove("dropping"));
pad.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dropping");
  if (event.dataTransfer.files.length) readFile(event.dataTransfer.files[0]);
});

// ---------------------------------------------------------------- start

function percent(fraction) {
  return (100 * fraction).toFixed(2) + "%";
}

function showAbout(about) {
  const parts = ["Answered by run " + about.run];
  if (about.recipe) parts.push("recipe " + about.recipe + (about.model ? " (" + about.model + ")" : ""));
  if (about.test_accuracy != null) parts.push(percent(about.test_accuracy) + " on the MNIST test set");
  if (about.handwriting_accuracy != null) parts.push(percent(about.handwriting_accuracy) + " on real handwriting");
  document.getElementById("about").textContent = parts.join(", ") + ".";
}

function unsupported(message) {
  const notice = document.getElementById("unsupported");
  notice.textContent = message;
  notice.hidden = false;
  statusText.textContent = message;
  result.dataset.state = "unsupported";
}

async function start() {
  resetPad();
  if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
    unsupported("This browser cannot run the model: it has no WebAssembly (or it is turned off). "
      + "Use a current Chrome, Edge, Firefox or Safari, or allow WebAssembly for this site.");
    return;
  }
  try {
    settings = await (await fetch(SETTINGS_FILE)).json();
    prepare = preparation(settings);
    buildBars(settings.shape.NUM_CLASSES);
    showResult(null, null);
    showAbout(settings.about);
    document.getElementById("ort-version").textContent = settings.onnxruntime_web;
    ort = await import(ORT_MODULE);
    ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
    // Threads need SharedArrayBuffer, which only a cross-origin isolated page (COOP and COEP headers) has;
    // a plain static host (GitHub Pages, python -m http.server) gets the single-threaded path.
    if (!self.crossOriginIsolated) ort.env.wasm.numThreads = 1;
    document.body.dataset.threads = String(ort.env.wasm.numThreads ?? "default");
    session = await ort.InferenceSession.create(settings.model.file, { executionProviders: ["wasm"] });
  } catch (error) {
    statusText.textContent = "could not start the model: " + error;
    result.dataset.state = "error";
    return;
  }
  performance.mark("model-ready");
  statusText.textContent = "";
  result.dataset.state = pending === null ? "empty" : result.dataset.state;
  readLatest();
}

start();
