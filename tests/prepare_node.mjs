// For tests/test_web_export.py: run the page's prepare.js under Node on images sent as JSON on stdin.
// Input: {"prepare": path to prepare.js, "settings": page.json's content, "greys": [{rows, columns, data}],
// "rgba": [{width, height, base64}], "records": [{outputs, input}]}. Output: {"inputs": [784 floats or
// {"error": message}], "greys": [grey values or {"error": message}], "records": [predictionRecord's answers]}.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const request = JSON.parse(readFileSync(0, "utf8"));
const { preparation, predictionRecord } = await import(pathToFileURL(request.prepare).href);
const { mnistStyle, greyFromRGBA, image } = preparation(request.settings);

function attempt(work) {
  try {
    return Array.from(work());
  } catch (error) {
    return { error: String(error.message) };
  }
}

const inputs = (request.greys || []).map((grey) =>
  attempt(() => mnistStyle(image(grey.rows, grey.columns, Float64Array.from(grey.data)))));
const greys = (request.rgba || []).map((rgba) =>
  attempt(() => greyFromRGBA(new Uint8ClampedArray(Buffer.from(rgba.base64, "base64")), rgba.width, rgba.height).data));
const records = (request.records || []).map(({ outputs, input }) =>
  predictionRecord(outputs, Float32Array.from(input), request.settings));
process.stdout.write(JSON.stringify({ inputs, greys, records }));
