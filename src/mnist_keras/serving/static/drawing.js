// What the served drawing page (app.js) and the exported one (`export --format web`, page.js) share: the pad
// one draws on, the answer panel (digit or "not a digit", the ten bars, the 28×28 input the model read),
// and the line saying which run answers. Each page decides where its answers come from.

const LINE_WIDTH = 22; // on a 280 px pad: strokes about as thick, relative to a digit filling it, as MNIST's

// Pointer drawing on `pad`; `changed()` after every stroke or piece of one. Returns reset() (a blank pad).
export function drawingPad(pad, changed) {
  const context = pad.getContext("2d", { willReadFrequently: true });
  let drawing = false;
  let last = null;

  function reset() {
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, pad.width, pad.height);
    context.strokeStyle = "#000000";
    context.fillStyle = "#000000";
    context.lineWidth = LINE_WIDTH;
    context.lineCap = "round";
    context.lineJoin = "round";
  }

  function position(event) {
    const box = pad.getBoundingClientRect();
    return {
      x: (event.clientX - box.left) * (pad.width / box.width),
      y: (event.clientY - box.top) * (pad.height / box.height),
    };
  }

  pad.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    drawing = true;
    last = position(event);
    context.beginPath();
    context.arc(last.x, last.y, LINE_WIDTH / 2, 0, 2 * Math.PI);
    context.fill();
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
  const endStroke = () => {
    drawing = false;
    last = null;
  };
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  reset();
  return { context, reset };
}

// The answer panel: #digit, #confidence, #bars (one per digit), #seen (28×28) and #result's data-answer.
export function answerView(digitCount) {
  const digitText = document.getElementById("digit");
  const confidenceText = document.getElementById("confidence");
  const bars = document.getElementById("bars");
  const seen = document.getElementById("seen");
  const seenContext = seen.getContext("2d");
  const result = document.getElementById("result");
  for (let digit = 0; digit < digitCount; digit++) {
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

  // `answer` as `predict` prints it (or null for none), and the model's input as 784 values (or null).
  function show(answer, input) {
    // Input that does not look like one handwritten digit gets no confident digit, only the verdict.
    const notADigit = answer !== null && answer.is_digit === false;
    digitText.textContent = answer === null ? "–" : notADigit ? "not a digit" : String(answer.digit);
    digitText.classList.toggle("not-digit", notADigit);
    confidenceText.textContent = answer === null || notADigit ? "" : (100 * answer.confidence).toFixed(1) + "%";
    for (let digit = 0; digit < digitCount; digit++) {
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

  show(null, null);
  return { show };
}

function percent(fraction) {
  return (100 * fraction).toFixed(2) + "%";
}

// Which run answers: its recipe, and how well it reads MNIST and real handwriting (/about's fields).
export function aboutLine(about) {
  const parts = ["Answered by run " + (about.run || about.predictor)];
  if (about.recipe) parts.push("recipe " + about.recipe + (about.model ? " (" + about.model + ")" : ""));
  if (about.test_accuracy != null) parts.push(percent(about.test_accuracy) + " on the MNIST test set");
  if (about.handwriting_accuracy != null) parts.push(percent(about.handwriting_accuracy) + " on real handwriting");
  return parts.join(", ") + ".";
}
