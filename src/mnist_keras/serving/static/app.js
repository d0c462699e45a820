// The drawing page: draw on #pad; each change is sent to POST /predict as a PNG upload
// (one request in flight at a time, the latest drawing always last), and the answer
// fills in the digit, the 28x28 image the model read and the ten probabilities.
import { aboutLine, answerView, drawingPad } from "./drawing.js";

const NUM_CLASSES = 10;
const pad = document.getElementById("pad");
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

// Which run answers: its recipe, and how well it reads MNIST and real handwriting.
async function showAbout() {
  try {
    aboutText.textContent = aboutLine(await (await fetch("/about")).json());
  } catch (error) {
    aboutText.textContent = "";
  }
}

document.getElementById("clear").addEventListener("click", () => {
  drawing.reset();
  inkDrawn = false;
  version += 1;
  clearedAt = version;
  pad.dataset.version = String(version);
  result.dataset.version = String(version);
  result.dataset.state = "empty";
  statusText.textContent = "";
  showResult(null);
});

showAbout();
