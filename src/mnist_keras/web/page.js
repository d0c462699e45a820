// The exported drawing page: draw on #pad (or choose or drop an image file) and the model reads it in this
// browser, with ONNX Runtime Web's WebAssembly build (./ort/, shipped beside the page; nothing is fetched
// from anywhere else). The drawing goes through prepare.js, the port of `mnist-keras predict`'s own
// preparation and decision, so the answer is the one `predict` gives for the same pixels. One reading at a
// time, the latest input always last; #result's data-version says which input the answer is for.
import { aboutLine, answerView, drawingPad } from "./drawing.js";
import { ImageError, predictionRecord, preparation } from "./prepare.js";

const SETTINGS_FILE = "page.json";
const ORT_MODULE = "./ort/ort.wasm.min.mjs";
const pad = document.getElementById("pad");
const result = document.getElementById("result");
const statusText = document.getElementById("status");
const fileInput = document.getElementById("file");
const drawing = drawingPad(pad, () => submit(padGrey, ""));

let view = null;       // the answer panel, once page.json says how many digits
let settings = null;   // page.json
let prepare = null;    // prepare.js's functions, with page.json's constants
let ort = null;        // the ONNX Runtime Web module
let session = null;    // the model, once loaded
let version = 0;       // bumped on every new input (a stroke, a file, a clear)
let clearedAt = 0;     // the version at the last clear: older answers are not shown
let pending = null;    // the newest input not yet read: { version, grey: () => grey image, source }
let busy = false;

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
      view.show(answer, input);
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
    if (job.version > clearedAt) view.show(null, null);
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
  const pixels = drawing.context.getImageData(0, 0, pad.width, pad.height);
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
  drawing.reset();
  submit(() => fileGrey(file), file.name);
}

document.getElementById("clear").addEventListener("click", () => {
  drawing.reset();
  pending = null;
  version += 1;
  clearedAt = version;
  pad.dataset.version = String(version);
  result.dataset.version = String(version);
  result.dataset.state = session === null ? result.dataset.state : "empty";
  statusText.textContent = "";
  if (view !== null) view.show(null, null);
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

function unsupported(message) {
  const notice = document.getElementById("unsupported");
  notice.textContent = message;
  notice.hidden = false;
  statusText.textContent = message;
  result.dataset.state = "unsupported";
}

async function start() {
  if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
    unsupported("This browser cannot run the model: it has no WebAssembly (or it is turned off). "
      + "Use a current Chrome, Edge, Firefox or Safari, or allow WebAssembly for this site.");
    return;
  }
  try {
    settings = await (await fetch(SETTINGS_FILE)).json();
    prepare = preparation(settings);
    view = answerView(settings.shape.NUM_CLASSES);
    document.getElementById("about").textContent = aboutLine(settings.about);
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
