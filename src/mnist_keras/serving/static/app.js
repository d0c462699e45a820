// The drawing page: draw on #pad; each change is sent to POST /predict as a PNG upload
// (one request in flight at a time, the latest drawing always last), and the answer
// fills in the digit, the 28x28 image the model read and the ten probabilities.
"use strict";

const NUM_CLASSES = 10;
const LINE_WIDTH = 22; // on a 280 px pad: strokes about as thick, relative to a digit filling it, as MNIST's
const pad = document.getElementById("pad");
const context = pad.getContext("2d");
const seen = document.getElementById("seen");
const seenContext = seen.getContext("2d");
const result = document.getElementById("result");
const digitText = document.getElementById("digit");
const confidenceText = document.getElementById("confidence");
const statusText = document.getElementById("status");
const bars = document.getElementById("bars");
const aboutText = document.getElementById("about");
const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token");
const TOKEN_KEY = "mnist-keras-api-token";

let version = 0;        // bumped on every change to the drawing
let inkDrawn = false;   // anything on the pad since the last clear
let inFlight = false;   // a request is on its way
let clearedAt = 0;      // the version at the last clear: older answers are not shown
let drawing = false;
let last = null;

function buildBars() {
  for (let digit = 0; digit < NUM_CLASSES; digit++) {
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

function showResult(answer) {
  // Input that does not look like one handwritten digit gets no confident digit, only the verdict.
  const notADigit = answer !== null && answer.is_digit === false;
  digitText.textContent = answer === null ? "–" : notADigit ? "not a digit" : String(answer.digit);
  digitText.classList.toggle("not-digit", notADigit);
  confidenceText.textContent = answer === null || notADigit ? "" : (100 * answer.confidence).toFixed(1) + "%";
  for (let digit = 0; digit < NUM_CLASSES; digit++) {
    const probability = answer === null ? 0 : answer.probabilities[digit];
    const bar = document.getElementById("bar-" + digit);
    bar.firstChild.style.width = (100 * probability).toFixed(1) + "%";
    bar.classList.toggle("best", answer !== null && digit === answer.digit);
    document.getElementById("value-" + digit).textContent = answer === null ? "" : (100 * probability).toFixed(1) + "%";
  }
  const pixels = seenContext.createImageData(seen.width, seen.height);
  for (let row = 0; row < seen.height; row++) {
    for (let column = 0; column < seen.width; column++) {
      const level = answer === null ? 0 : Math.round(255 * answer.image[row][column]);
      const offset = 4 * (row * seen.width + column);
      pixels.data.set([level, level, level, 255], offset);
    }
  }
  seenContext.putImageData(pixels, 0, 0);
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
  result.dataset.state = "busy";
  pad.toBlob(async (blob) => {
    let state = "ready";
    try {
      const form = new FormData();
      form.append("file", blob, "digit.png");
      const response = await fetch("/predict", { method: "POST", body: form, headers: tokenHeaders() });
      const body = await response.json();
      if (response.status === 401) tokenForm.hidden = false;
      // Show answers as they come while drawing, but none for a drawing cleared since.
      if (sentVersion > clearedAt) {
        if (response.ok) {
          showResult(body);
          statusText.textContent = "";
        } else {
          showResult(null);
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

function percent(fraction) {
  return (100 * fraction).toFixed(2) + "%";
}

// Which run answers: its recipe, and how well it reads MNIST and real handwriting.
async function showAbout() {
  try {
    const about = await (await fetch("/about")).json();
    const parts = ["Answered by run " + (about.run || about.predictor)];
    if (about.recipe) parts.push("recipe " + about.recipe + (about.model ? " (" + about.model + ")" : ""));
    if (about.test_accuracy != null) parts.push(percent(about.test_accuracy) + " on the MNIST test set");
    if (about.handwriting_accuracy != null) parts.push(percent(about.handwriting_accuracy) + " on real handwriting");
    aboutText.textContent = parts.join(", ") + ".";
  } catch (error) {
    aboutText.textContent = "";
  }
}

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
  inkDrawn = true;
  last = position(event);
  dot(last);
  changed();
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
  changed();
});

function endStroke() {
  drawing = false;
  last = null;
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  resetPad();
  inkDrawn = false;
  version += 1;
  clearedAt = version;
  pad.dataset.version = String(version);
  result.dataset.version = String(version);
  result.dataset.state = "empty";
  statusText.textContent = "";
  showResult(null);
});

buildBars();
resetPad();
showResult(null);
showAbout();
