// The drawing page: draw on #pad; each change is sent as a PNG upload (one request in flight
// at a time, the latest drawing always last). One digit goes to POST /predict, whose answer
// fills in the digit, the 28x28 image the model read and the ten probabilities; a number
// (the wider pad) goes to POST /read, whose answer gives the text read and each mark's box,
// drawn over the pad with its digit and confidence.
import { aboutLine, answerView, drawingPad } from "./drawing.js";

const NUM_CLASSES = 10;
// The pad's size for each mode, in CSS pixels (the canvas has as many pixels, so /read's boxes are in them).
const PAD_SIZES = { digit: [280, 280], number: [700, 280] };
const ROUTES = { digit: "/predict", number: "/read" };
const pad = document.getElementById("pad");
const boxes = document.getElementById("boxes");
const boxesContext = boxes.getContext("2d");
const numberText = document.getElementById("text");
const marksList = document.getElementById("marks");
const result = document.getElementById("result");
const statusText = document.getElementById("status");
const aboutText = document.getElementById("about");
const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token");
const TOKEN_KEY = "mnist-keras-api-token";

let version = 0;        // bumped on every change to the drawing
let inkDrawn = false;   // anything on the pad since the last clear
let inFlight = false;   // a request is on its way
let clearedAt = 0;      // the version at the last clear: older answers are not shown
let mode = "digit";     // "digit" or "number"

const view = answerView(NUM_CLASSES);
const drawing = drawingPad(pad, () => {
  inkDrawn = true;
  changed();
});

// An answer from the service (its `image` is 28 rows), or null for none. Global: tests/test_browser.py
// checks the page's rule on answers it makes up.
function showResult(answer) {
  view.show(answer, answer === null ? null : answer.image.flat());
}
window.showResult = showResult;

// POST /read's answer (or null for none): the text, and each mark boxed over the drawing, digits in green
// with their confidence, other marks in orange, dashed.
function showReading(reading) {
  boxesContext.clearRect(0, 0, boxes.width, boxes.height);
  marksList.replaceChildren();
  numberText.textContent = reading === null ? "–" : reading.text || "no digits";
  result.dataset.answer = reading === null ? "" : JSON.stringify(reading);
  if (reading === null) return;
  boxesContext.font = "bold 15px system-ui, sans-serif";
  boxesContext.lineWidth = 2;
  for (const mark of reading.lines.flat()) {
    const [x0, y0, x1, y1] = mark.box;
    const label = mark.is_digit ? mark.digit + " " + (100 * mark.confidence).toFixed(0) + "%" : "not a digit";
    boxesContext.strokeStyle = boxesContext.fillStyle = mark.is_digit ? "#1f9d55" : "#c66a00";
    boxesContext.setLineDash(mark.is_digit ? [] : [5, 4]);
    boxesContext.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0 - 1, y1 - y0 - 1);
    boxesContext.fillText(label, x0 + 2, Math.max(14, y0 - 4));
    const item = document.createElement("li");
    item.textContent = mark.is_digit ? mark.digit + " at " + (100 * mark.confidence).toFixed(1) + "%" : "not a digit";
    item.classList.toggle("not-digit", !mark.is_digit);
    marksList.append(item);
  }
}

function changed() {
  version += 1;
  pad.dataset.version = String(version);
  requestPrediction();
}

function requestPrediction() {
  if (inFlight || !inkDrawn || result.dataset.version === String(version)) return;
  inFlight = true;
  const sentVersion = version;
  const show = mode === "number" ? showReading : showResult;
  result.dataset.state = "busy";
  pad.toBlob(async (blob) => {
    let state = "ready";
    try {
      const form = new FormData();
      form.append("file", blob, mode + ".png");
      const response = await fetch(ROUTES[mode], { method: "POST", body: form, headers: tokenHeaders() });
      const body = await response.json();
      if (response.status === 401) tokenForm.hidden = false;
      // Show answers as they come while drawing, but none for a drawing cleared (or a mode left) since.
      if (sentVersion > clearedAt) {
        if (response.ok) {
          show(body);
          statusText.textContent = "";
        } else {
          show(null);
          statusText.textContent = body.error || "the service could not read this drawing";
          state = "error";
        }
      }
    } catch (error) {
      statusText.textContent = "cannot reach the service: " + error;
      state = "error";
    } finally {
      inFlight = false;
      if (sentVersion > clearedAt) {
        result.dataset.version = String(sentVersion);
        result.dataset.state = state;
      }
      // The drawing changed while we waited: read the latest one.
      if (sentVersion !== version) requestPrediction();
    }
  }, "image/png");
}

// A service started with an API token refuses the page's requests (401) until the user gives it the token;
// it is kept in this browser only, and sent as the API asks.
function tokenHeaders() {
  const token = window.localStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  window.localStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
  tokenForm.hidden = true;
  statusText.textContent = "";
  result.dataset.version = "";
  requestPrediction();
});

// Which run answers: its recipe, and how well it reads MNIST and real handwriting.
async function showAbout() {
  try {
    aboutText.textContent = aboutLine(await (await fetch("/about")).json());
  } catch (error) {
    aboutText.textContent = "";
  }
}

function clear() {
  drawing.reset();
  inkDrawn = false;
  version += 1;
  clearedAt = version;
  pad.dataset.version = String(version);
  result.dataset.version = String(version);
  result.dataset.state = "empty";
  statusText.textContent = "";
  showResult(null);
  showReading(null);
}

document.getElementById("clear").addEventListener("click", clear);

// One digit or a number: the pad takes the mode's size (blank), and the panel shows that mode's answer.
function setMode(chosen) {
  mode = chosen;
  const [width, height] = PAD_SIZES[mode];
  for (const canvas of [pad, boxes]) {
    canvas.width = width;
    canvas.height = height;
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
  }
  result.dataset.mode = mode;
  clear();
}

for (const choice of document.querySelectorAll('input[name="mode"]')) {
  choice.addEventListener("change", () => setMode(choice.value));
}

showAbout();
