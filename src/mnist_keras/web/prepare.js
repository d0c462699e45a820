// The browser's copy of one preparation path: mnist_keras.inference.images.mnist_style (a grey image of
// any size and polarity → the 28×28 input the model reads) and mnist_keras.inference.decision (the
// ten digits' probabilities and whether it is a digit at all), step for step, so the exported page
// answers as `mnist-keras predict` does. The numbers come from page.json, written by the exporter from
// the Python modules' constants; this file has none of its own. The SciPy and Pillow operations the
// Python path calls are ported with their edge rules (SciPy's "reflect" border, Pillow's resampling
// kernels, Python's round-half-to-even), so the two agree to float32 rounding. A pure module: no DOM,
// so Node runs it too (tests/test_web_export.py checks it against Python on the same images).

export class ImageError extends Error {}

// An image: rows × columns of float64 values, row-major.
function image(rows, columns, data = new Float64Array(rows * columns)) {
  return { rows, columns, data };
}

// Python's round(): halves go to the even neighbour.
export function pyRound(value) {
  if (Math.abs(value % 1) === 0.5) return 2 * Math.round(value / 2);
  return Math.round(value);
}

// `Type.from(source, fn)` and `typed.map(fn)` in a plain loop: V8's built-ins go through the iterator protocol.
function mapped(source, fn, Type = Float64Array) {
  const out = new Type(source.length);
  for (let i = 0; i < source.length; i++) out[i] = fn(source[i], i);
  return out;
}

function sorted(values) {
  return Float64Array.from(values).sort();
}

// numpy.median and numpy.percentile (linear interpolation, as NumPy computes it).
function median(values) {
  const order = sorted(values);
  const middle = order.length >> 1;
  return order.length % 2 ? order[middle] : (order[middle - 1] + order[middle]) / 2;
}

function percentile(values, q) {
  const order = sorted(values);
  const position = (q / 100) * (order.length - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, order.length - 1);
  const fraction = position - below;
  const difference = order[above] - order[below];
  return fraction >= 0.5 ? order[above] - difference * (1 - fraction) : order[below] + difference * fraction;
}

function ptp(values) {
  let low = Infinity, high = -Infinity;
  for (const value of values) {
    if (value < low) low = value;
    if (value > high) high = value;
  }
  return high - low;
}

function maximum(values) {
  let high = -Infinity;
  for (const value of values) if (value > high) high = value;
  return high;
}

function borderValues(img) {
  const { rows, columns, data } = img;
  const values = [];
  for (let c = 0; c < columns; c++) values.push(data[c], data[(rows - 1) * columns + c]);
  for (let r = 1; r < rows - 1; r++) values.push(data[r * columns], data[r * columns + columns - 1]);
  return values;
}

// SciPy's mode="reflect": d c b a | a b c d | d c b a.
function reflect(index, size) {
  const period = 2 * size;
  let folded = ((index % period) + period) % period;
  return folded < size ? folded : period - folded - 1;
}

// ---------------------------------------------------------------- SciPy filters

// One-dimensional pass along rows (axis 0) or columns (axis 1): out[i] = reduce(in[i + start .. i + start + size - 1]),
// the line padded by reflection first so the inner loops index it directly.
function filterAxis(img, axis, size, start, reduce) {
  const { rows, columns, data } = img;
  const out = image(rows, columns);
  const length = axis === 0 ? rows : columns;
  const lines = axis === 0 ? columns : rows;
  const step = axis === 0 ? columns : 1, lineStep = axis === 0 ? 1 : columns;
  const padded = new Float64Array(length + size - 1);
  const values = new Float64Array(length);
  for (let l = 0; l < lines; l++) {
    for (let j = 0; j < padded.length; j++) padded[j] = data[l * lineStep + reflect(j + start, length) * step];
    reduce(padded, values, size);
    for (let i = 0; i < length; i++) out.data[l * lineStep + i * step] = values[i];
  }
  return out;
}

function gaussianFilter(img, sigma) {
  const radius = Math.trunc(4.0 * sigma + 0.5); // scipy's truncate=4.0
  const weights = [];
  let total = 0;
  for (let x = -radius; x <= radius; x++) {
    const weight = Math.exp((-0.5 / (sigma * sigma)) * x * x);
    weights.push(weight);
    total += weight;
  }
  const normalised = Float64Array.from(weights, (weight) => weight / total);
  const correlate = (padded, values, size) => {
    for (let i = 0; i < values.length; i++) {
      let sum = 0;
      for (let k = 0; k < size; k++) sum += normalised[k] * padded[i + k];
      values[i] = sum;
    }
  };
  return filterAxis(filterAxis(img, 0, normalised.length, -radius, correlate), 1, normalised.length, -radius,
                    correlate);
}

// minimum_filter/maximum_filter with a square flat window (separable), origin as SciPy's. Each line by van
// Herk and Gil-Werman's method: running extremes within blocks of the window's length, from the left and
// from the right, so every output takes one comparison of the two, whatever the window (exact: min and max
// do not round).
function rankFilter(img, size, origin, largest) {
  const better = largest ? (a, b) => (a > b ? a : b) : (a, b) => (a < b ? a : b);
  let fromLeft = new Float64Array(0), fromRight = new Float64Array(0);
  const reduce = (padded, values, count) => {
    if (fromLeft.length !== padded.length) {
      fromLeft = new Float64Array(padded.length);
      fromRight = new Float64Array(padded.length);
    }
    for (let i = 0; i < padded.length; i++) {
      fromLeft[i] = i % count === 0 ? padded[i] : better(fromLeft[i - 1], padded[i]);
    }
    for (let i = padded.length - 1; i >= 0; i--) {
      fromRight[i] = i % count === count - 1 || i === padded.length - 1 ? padded[i] : better(fromRight[i + 1], padded[i]);
    }
    for (let i = 0; i < values.length; i++) values[i] = better(fromRight[i], fromLeft[i + count - 1]);
  };
  const start = -(size >> 1) - origin;
  return filterAxis(filterAxis(img, 0, size, start, reduce), 1, size, start, reduce);
}

// grey_dilation mirrors its window: origin 0 becomes -1 for an even size.
const dilate = (img, size) => rankFilter(img, size, size % 2 ? 0 : -1, true);
const erode = (img, size) => rankFilter(img, size, 0, false);
const greyClosing = (img, size) => erode(dilate(img, size), size);
const greyOpening = (img, size) => dilate(erode(img, size), size);

// ---------------------------------------------------------------- binary images (Uint8Array masks)

// ndimage.label with its default 4-connected structure: labels in the order their first pixel is met.
function label(mask, rows, columns) {
  const labels = new Int32Array(rows * columns);
  const boxes = []; // [rowStart, rowStop, columnStart, columnStop], as ndimage.find_objects
  const sizes = [];
  const stack = new Int32Array(rows * columns); // each pixel is pushed at most once
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || labels[start]) continue;
    const number = sizes.length + 1;
    let top = rows, bottom = 0, left = columns, right = 0, size = 0, depth = 0;
    labels[start] = number;
    stack[depth++] = start;
    while (depth > 0) {
      const index = stack[--depth];
      const row = (index / columns) | 0, column = index - row * columns;
      size += 1;
      if (row < top) top = row;
      if (row + 1 > bottom) bottom = row + 1;
      if (column < left) left = column;
      if (column + 1 > right) right = column + 1;
      if (row > 0 && mask[index - columns] && !labels[index - columns]) {
        labels[index - columns] = number;
        stack[depth++] = index - columns;
      }
      if (row < rows - 1 && mask[index + columns] && !labels[index + columns]) {
        labels[index + columns] = number;
        stack[depth++] = index + columns;
      }
      if (column > 0 && mask[index - 1] && !labels[index - 1]) {
        labels[index - 1] = number;
        stack[depth++] = index - 1;
      }
      if (column < columns - 1 && mask[index + 1] && !labels[index + 1]) {
        labels[index + 1] = number;
        stack[depth++] = index + 1;
      }
    }
    sizes.push(size);
    boxes.push([top, bottom, left, right]);
  }
  return { labels, sizes, boxes };
}

// binary_dilation, one iteration, with the 4-connected cross (or only up and down: structure ones((3, 1))).
function binaryDilation(mask, rows, columns, verticalOnly = false) {
  const out = new Uint8Array(mask.length);
  for (let row = 0; row < rows; row++) {
    for (let column = 0; column < columns; column++) {
      const index = row * columns + column;
      out[index] = mask[index] || (row > 0 && mask[index - columns]) || (row < rows - 1 && mask[index + columns])
        || (!verticalOnly && ((column > 0 && mask[index - 1]) || (column < columns - 1 && mask[index + 1]))) ? 1 : 0;
    }
  }
  return out;
}

function anyOf(mask) {
  for (const value of mask) if (value) return true;
  return false;
}

// ---------------------------------------------------------------- Pillow resampling

const FILTERS = {
  bilinear: { support: 1.0, weight: (x) => (x < 0 ? -x : x) < 1.0 ? 1.0 - (x < 0 ? -x : x) : 0.0 },
  lanczos: {
    support: 3.0,
    weight: (x) => (-3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0),
  },
};

function sinc(x) {
  if (x === 0.0) return 1.0;
  const scaled = x * Math.PI;
  return Math.sin(scaled) / scaled;
}

// Pillow's precompute_coeffs: for each output pixel, the first input pixel and the normalised weights.
function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = filter.support * filterScale;
  const reciprocal = 1.0 / filterScale;
  const result = [];
  for (let out = 0; out < outSize; out++) {
    const centre = (out + 0.5) * scale;
    const first = Math.max(0, Math.trunc(centre - support + 0.5));
    const last = Math.min(inSize, Math.trunc(centre + support + 0.5));
    const weights = [];
    let total = 0.0;
    for (let x = 0; x < last - first; x++) {
      const weight = filter.weight((x + first - centre + 0.5) * reciprocal);
      weights.push(weight);
      total += weight;
    }
    result.push({ first, weights: total !== 0.0 ? weights.map((weight) => weight / total) : weights });
  }
  return result;
}

// Image.resize of a mode "F" image (float32 pixels): horizontal pass, then vertical, each rounded to float32.
function resize(img, columns, rows, filterName) {
  const filter = FILTERS[filterName];
  let current = { rows: img.rows, columns: img.columns, data: new Float32Array(img.data) };
  if (columns !== img.columns) {
    const taps = coefficients(img.columns, columns, filter);
    const out = new Float32Array(current.rows * columns);
    for (let row = 0; row < current.rows; row++) {
      for (let column = 0; column < columns; column++) {
        const { first, weights } = taps[column];
        let sum = 0.0;
        for (let k = 0; k < weights.length; k++) sum += current.data[row * current.columns + first + k] * weights[k];
        out[row * columns + column] = sum;
      }
    }
    current = { rows: current.rows, columns, data: out };
  }
  if (rows !== img.rows) {
    const taps = coefficients(img.rows, rows, filter);
    const out = new Float32Array(rows * columns);
    for (let row = 0; row < rows; row++) {
      const { first, weights } = taps[row];
      for (let column = 0; column < columns; column++) {
        let sum = 0.0;
        for (let k = 0; k < weights.length; k++) sum += current.data[(first + k) * columns + column] * weights[k];
        out[row * columns + column] = sum;
      }
    }
    current = { rows, columns, data: out };
  }
  return image(current.rows, current.columns, new Float64Array(current.data));
}

// Image.reduce(factor) of a mode "F" image: the mean of each factor × factor box (partial boxes at the edges).
function reduceFloat(img, factor) {
  const rows = Math.ceil(img.rows / factor), columns = Math.ceil(img.columns / factor);
  const source = new Float32Array(img.data);
  const out = new Float32Array(rows * columns);
  for (let row = 0; row < rows; row++) {
    for (let column = 0; column < columns; column++) {
      let sum = 0.0, count = 0;
      for (let r = row * factor; r < Math.min(img.rows, (row + 1) * factor); r++) {
        for (let c = column * factor; c < Math.min(img.columns, (column + 1) * factor); c++) {
          sum += source[r * img.columns + c];
          count += 1;
        }
      }
      out[row * columns + column] = sum / count;
    }
  }
  return image(rows, columns, new Float64Array(out));
}

// Image.reduce(factor) of an RGBA image as Pillow does it: alpha premultiplied (RGBa), each box summed in
// integers and divided with Pillow's fixed-point reciprocal, then alpha divided out again.
function reduceRGBA(rgba, width, height, factor) {
  const premultiplied = new Uint8Array(rgba.length);
  for (let i = 0; i < rgba.length; i += 4) {
    const alpha = rgba[i + 3];
    for (let band = 0; band < 3; band++) {
      const product = rgba[i + band] * alpha + 128;
      premultiplied[i + band] = ((product >> 8) + product) >> 8;
    }
    premultiplied[i + 3] = alpha;
  }
  const columns = Math.ceil(width / factor), rows = Math.ceil(height / factor);
  const out = new Uint8ClampedArray(rows * columns * 4);
  const sums = new Float64Array(4);
  for (let row = 0; row < rows; row++) {
    const rowStop = Math.min(height, (row + 1) * factor);
    for (let column = 0; column < columns; column++) {
      const columnStop = Math.min(width, (column + 1) * factor);
      const scale = (rowStop - row * factor) * (columnStop - column * factor);
      // Pillow's division_UINT32(scale, 8) in float32, and its rounding term.
      const multiplier = Math.trunc(Math.fround(4294967296 / Math.fround(256 * scale)));
      sums.fill(Math.floor(scale / 2));
      for (let r = row * factor; r < rowStop; r++) {
        for (let c = column * factor; c < columnStop; c++) {
          const offset = 4 * (r * width + c);
          for (let band = 0; band < 4; band++) sums[band] += premultiplied[offset + band];
        }
      }
      const offset = 4 * (row * columns + column);
      for (let band = 0; band < 4; band++) out[offset + band] = Math.floor((sums[band] * multiplier) / 16777216);
      const alpha = out[offset + 3];
      if (alpha !== 255 && alpha !== 0) {
        for (let band = 0; band < 3; band++) out[offset + band] = Math.min(255, Math.floor((255 * out[offset + band]) / alpha));
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- the preparation

export function preparation(settings) {
  const P = settings.preparation;
  const { IMAGE_SIDE } = settings.shape;

  function isMnistStyle(gray) {
    return gray.rows === IMAGE_SIDE && gray.columns === IMAGE_SIDE && maximum(borderValues(gray)) <= P.MNIST_BORDER_LEVEL;
  }

  function isDot(size, box, main) {
    const height = box[1] - box[0], width = box[3] - box[2];
    const mainSide = Math.max(main[1] - main[0], main[3] - main[2]);
    return size >= P.DOT_FILL * height * width && Math.max(height, width) <= P.DOT_ASPECT * Math.min(height, width)
      && Math.max(height, width) <= P.DOT_SIDE_FRACTION * mainSide;
  }

  // keep_strokes: the mask without specks and stray marks.
  function keepStrokes(mask, rows, columns) {
    const { labels, sizes, boxes } = label(mask, rows, columns);
    if (sizes.length <= 1) return mask;
    let largest = 0;
    for (let i = 1; i < sizes.length; i++) if (sizes[i] > sizes[largest]) largest = i;
    const main = boxes[largest];
    const reach = P.STRAY_MARK_GAP * Math.max(main[1] - main[0], main[3] - main[2]);
    const keep = new Uint8Array(sizes.length + 1);
    sizes.forEach((size, index) => {
      const box = boxes[index];
      if (size < P.MIN_COMPONENT_FRACTION * sizes[largest]) return;
      const gap = Math.max(main[0] - box[1], box[0] - main[1], main[2] - box[3], box[2] - main[3], 0);
      if (size < P.STRAY_MARK_FRACTION * sizes[largest] && (gap > reach || (gap > 0 && isDot(size, box, main)))) return;
      keep[index + 1] = 1;
    });
    return mapped(labels, (number) => keep[number], Uint8Array);
  }

  function cropToInk(ink) {
    let top = ink.rows, bottom = -1, left = ink.columns, right = -1;
    for (let row = 0; row < ink.rows; row++) {
      for (let column = 0; column < ink.columns; column++) {
        if (ink.data[row * ink.columns + column]) {
          top = Math.min(top, row); bottom = Math.max(bottom, row);
          left = Math.min(left, column); right = Math.max(right, column);
        }
      }
    }
    const cropped = image(bottom - top + 1, right - left + 1);
    for (let row = top; row <= bottom; row++) {
      for (let column = left; column <= right; column++) {
        cropped.data[(row - top) * cropped.columns + column - left] = ink.data[row * ink.columns + column];
      }
    }
    return cropped;
  }

  // scale_to_box: longer side to DIGIT_BOX_SIDE (Lanczos, as Pillow), peak ink to 1; float32 values.
  function scaleToBox(ink, side = P.DIGIT_BOX_SIDE) {
    const scale = side / Math.max(ink.rows, ink.columns);
    const columns = Math.max(1, pyRound(ink.columns * scale)), rows = Math.max(1, pyRound(ink.rows * scale));
    const resized = (columns === ink.columns && rows === ink.rows)
      ? image(rows, columns, new Float64Array(new Float32Array(ink.data)))
      : resize(ink, columns, rows, "lanczos");
    for (let i = 0; i < resized.data.length; i++) resized.data[i] = Math.min(1, Math.max(0, resized.data[i]));
    const peak = maximum(resized.data);
    if (peak > 0) for (let i = 0; i < resized.data.length; i++) resized.data[i] = Math.fround(resized.data[i] / peak);
    return resized;
  }

  // centre_by_mass: into a black 28×28 field, centre of mass in the middle (float32, as the model reads it).
  function centreByMass(digit) {
    let total = 0, rowSum = 0, columnSum = 0;
    for (let row = 0; row < digit.rows; row++) {
      for (let column = 0; column < digit.columns; column++) {
        const value = digit.data[row * digit.columns + column];
        total += value; rowSum += value * row; columnSum += value * column;
      }
    }
    const clip = (value, high) => Math.min(Math.max(value, 0), high);
    const top = clip(pyRound(P.CENTRE_OF_MASS_TARGET - rowSum / total), IMAGE_SIDE - digit.rows);
    const left = clip(pyRound(P.CENTRE_OF_MASS_TARGET - columnSum / total), IMAGE_SIDE - digit.columns);
    const field = new Float32Array(IMAGE_SIDE * IMAGE_SIDE);
    for (let row = 0; row < digit.rows; row++) {
      for (let column = 0; column < digit.columns; column++) {
        field[(top + row) * IMAGE_SIDE + left + column] = digit.data[row * digit.columns + column];
      }
    }
    return field;
  }

  // stroke_width: twice the area over the edge, of the pixels at half ink or more (an edge pixel has a
  // four-neighbour below half ink, or off the field: binary_erosion's border).
  function strokeWidth(digit) {
    let area = 0, edge = 0;
    const inked = (row, column) => row >= 0 && row < IMAGE_SIDE && column >= 0 && column < IMAGE_SIDE
      && digit[row * IMAGE_SIDE + column] >= 0.5;
    for (let row = 0; row < IMAGE_SIDE; row++) {
      for (let column = 0; column < IMAGE_SIDE; column++) {
        if (!inked(row, column)) continue;
        area++;
        if (!(inked(row - 1, column) && inked(row + 1, column) && inked(row, column - 1) && inked(row, column + 1))) edge++;
      }
    }
    return (2 * area) / Math.max(edge, 1);
  }

  // thinned: a 28×28 input with strokes wider than THICK_STROKE_WIDTH loses its faintest THICK_INK_CUT of ink.
  function thinned(digit) {
    if (strokeWidth(digit) <= P.THICK_STROKE_WIDTH) return digit;
    const cut = P.THICK_INK_CUT;
    return digit.map((value) => Math.min(1, Math.max(0, (value - cut) / (1 - cut))));
  }

  function normalise28(gray) {
    const peak = maximum(gray.data);
    if (peak < P.MIN_INK_CONTRAST) throw new ImageError("no ink found: the image is blank");
    const ink = image(gray.rows, gray.columns, mapped(gray.data, (value) => Math.min(1, Math.max(0, value / peak))));
    const strokes = keepStrokes(mapped(ink.data, (value) => (value > P.INK_THRESHOLD_FRACTION ? 1 : 0), Uint8Array),
                                ink.rows, ink.columns);
    for (let i = 0; i < ink.data.length; i++) ink.data[i] *= strokes[i];
    if (anyOf(ink.data)) {
      const margin = binaryDilation(mapped(ink.data, (value) => (value > 0 ? 1 : 0), Uint8Array), ink.rows, ink.columns);
      for (let i = 0; i < ink.data.length; i++) ink.data[i] *= margin[i];
    }
    const cropped = cropToInk(ink);
    if (Math.max(cropped.rows, cropped.columns) === P.DIGIT_BOX_SIDE) {
      const peakInk = Math.max(maximum(cropped.data), 1e-9);
      return centreByMass(image(cropped.rows, cropped.columns, mapped(cropped.data, (value) => value / peakInk)));
    }
    return centreByMass(scaleToBox(cropped));
  }

  // uneven_background: under uneven light, a function from a grey image to its ink; else null.
  function unevenBackground(gray) {
    if (Math.min(gray.rows, gray.columns) < IMAGE_SIDE) return null;
    const factor = Math.max(1, Math.ceil(Math.max(gray.rows, gray.columns) / P.BACKGROUND_SIDE));
    const small = factor > 1 ? reduceFloat(gray, factor)
      : image(gray.rows, gray.columns, new Float64Array(new Float32Array(gray.data)));
    const window = Math.max(3, pyRound(P.BACKGROUND_WINDOW_FRACTION * Math.max(small.rows, small.columns)));
    const closed = greyClosing(small, window);
    const opened = greyOpening(small, window);
    if (Math.min(ptp(closed.data), ptp(opened.data)) <= P.BACKGROUND_VARIATION) return null;
    const darkContrast = percentile(
      mapped(closed.data, (value, i) => (value - small.data[i]) / Math.max(value, P.MIN_INK_CONTRAST)),
      P.POLARITY_PERCENTILE);
    const lightContrast = percentile(mapped(small.data, (value, i) => value - opened.data[i]), P.POLARITY_PERCENTILE);
    const darkInk = darkContrast >= lightContrast;
    const wider = darkInk ? greyClosing(small, 2 * window) : greyOpening(small, 2 * window);
    const change = darkInk ? mapped(wider.data, (value, i) => value - closed.data[i])
      : mapped(opened.data, (value, i) => value - wider.data[i]);
    if (percentile(change, P.BACKGROUND_CHANGE_PERCENTILE) > P.BACKGROUND_MAX_CHANGE) return null;
    const level = resize(darkInk ? closed : opened, gray.columns, gray.rows, "bilinear").data;
    const clip = (value) => Math.min(1, Math.max(0, value));
    if (darkInk) {
      return (img) => image(img.rows, img.columns,
                            mapped(img.data, (value, i) => clip((level[i] - value) / Math.max(level[i], P.MIN_INK_CONTRAST))));
    }
    return (img) => image(img.rows, img.columns, mapped(img.data, (value, i) => clip(value - level[i])));
  }

  // ruled_lines: the mask's pixels on straight lines across nearly the whole image.
  function ruledLines(mask, height, width) {
    const none = new Uint8Array(mask.length);
    if (Math.min(height, width) < IMAGE_SIDE || !anyOf(mask)) return none;
    const factor = Math.max(1, Math.ceil(Math.max(height, width) / P.LINE_SEARCH_SIDE));
    const smallRows = Math.ceil(height / factor), smallColumns = Math.ceil(width / factor);
    const small = new Uint8Array(smallRows * smallColumns);
    for (let row = 0; row < height; row++) {
      for (let column = 0; column < width; column++) {
        if (mask[row * width + column]) small[Math.floor(row / factor) * smallColumns + Math.floor(column / factor)] = 1;
      }
    }
    const lines = new Uint8Array(small.length);
    for (const transposed of [false, true]) {
      const rows = transposed ? smallColumns : smallRows, columns = transposed ? smallRows : smallColumns;
      const grid = new Uint8Array(rows * columns);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < columns; c++) grid[r * columns + c] = transposed ? small[c * smallColumns + r] : small[r * smallColumns + c];
      }
      let inkedColumns = 0;
      for (let c = 0; c < columns; c++) {
        for (let r = 0; r < rows; r++) if (grid[r * columns + c]) { inkedColumns += 1; break; }
      }
      if (inkedColumns / columns < P.LINE_MIN_COVERAGE) continue;
      const thick = binaryDilation(grid, rows, columns, true);
      const found = new Uint8Array(grid.length);
      const steps = Math.floor((2 * P.LINE_MAX_TILT_DEGREES + 1e-9) / P.LINE_TILT_STEP_DEGREES) + 1;
      for (let step = 0; step < steps; step++) {
        const tilt = -P.LINE_MAX_TILT_DEGREES + step * P.LINE_TILT_STEP_DEGREES;
        const slope = Math.tan((tilt * Math.PI) / 180);
        const shifted = new Int32Array(grid.length);
        let lowest = Infinity;
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < columns; c++) {
            const value = r + pyRound(slope * (c - columns / 2));
            shifted[r * columns + c] = value;
            if (value < lowest) lowest = value;
          }
        }
        let highest = 0;
        for (let i = 0; i < shifted.length; i++) { shifted[i] -= lowest; highest = Math.max(highest, shifted[i]); }
        const length = new Float64Array(highest + 1), filled = new Float64Array(highest + 1);
        for (let i = 0; i < shifted.length; i++) { length[shifted[i]] += 1; filled[shifted[i]] += thick[i]; }
        for (let i = 0; i < shifted.length; i++) {
          const line = shifted[i];
          if (grid[i] && filled[line] >= P.LINE_MIN_COVERAGE * columns && length[line] >= P.LINE_MIN_COVERAGE * columns) {
            found[i] = 1;
          }
        }
      }
      const near = binaryDilation(found, rows, columns);
      let restTop = Infinity, restBottom = -1, restLeft = Infinity, restRight = -1;
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < columns; c++) {
          if (grid[r * columns + c] && !near[r * columns + c]) {
            restTop = Math.min(restTop, r); restBottom = Math.max(restBottom, r);
            restLeft = Math.min(restLeft, c); restRight = Math.max(restRight, c);
          }
        }
      }
      if (restBottom < 0) continue;
      let foundCount = 0;
      for (const value of found) foundCount += value;
      const thickness = foundCount / Math.max(1, label(found, rows, columns).sizes.length) / columns;
      if (P.LINE_MIN_LENGTH_RATIO * (restRight - restLeft + 1) <= columns
          && thickness <= P.LINE_MAX_THICKNESS * (restBottom - restTop + 1)) {
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < columns; c++) {
            if (found[r * columns + c]) lines[transposed ? c * smallColumns + r : r * smallColumns + c] = 1;
          }
        }
      }
    }
    if (!anyOf(lines)) return none;
    const fullSize = new Uint8Array(mask.length);
    for (let row = 0; row < height; row++) {
      for (let column = 0; column < width; column++) {
        fullSize[row * width + column] = lines[Math.floor(row / factor) * smallColumns + Math.floor(column / factor)];
      }
    }
    const edge = binaryDilation(fullSize, height, width);
    return mapped(edge, (value, i) => (value && mask[i] ? 1 : 0), Uint8Array);
  }

  // find_ink + stroke_ink (= ink_map): ink in [0, 1] of one digit's strokes, either polarity.
  function inkMap(gray) {
    const smooth = Math.min(gray.rows, gray.columns) > 2 ? gaussianFilter(gray, P.DETECTION_BLUR_SIGMA) : gray;
    const uneven = unevenBackground(gray);
    let ink, smoothInk, contrast;
    if (uneven !== null) {
      ink = uneven(gray).data;
      smoothInk = uneven(smooth).data;
      contrast = maximum(smoothInk);
    } else {
      const background = median(borderValues(gray));
      let low = Infinity, high = -Infinity;
      for (const value of smooth.data) { low = Math.min(low, value); high = Math.max(high, value); }
      const darker = background - low, lighter = high - background;
      const darkInk = darker > lighter;
      ink = mapped(gray.data, (value) => (darkInk ? background - value : value - background));
      smoothInk = mapped(smooth.data, (value) => (darkInk ? background - value : value - background));
      contrast = Math.max(darker, lighter);
    }
    if (contrast < P.MIN_INK_CONTRAST) {
      throw new ImageError(`no ink found: the image is blank (contrast ${contrast.toFixed(2)} of full scale)`);
    }
    const borderInk = borderValues(image(gray.rows, gray.columns, ink));
    const centre = median(borderInk);
    const noise = P.MAD_TO_SIGMA * median(borderInk.map((value) => Math.abs(value - centre)));
    const threshold = Math.max(P.INK_THRESHOLD_FRACTION * contrast, P.NOISE_SIGMAS * noise);
    const found = mapped(smoothInk, (value) => (value > threshold ? 1 : 0), Uint8Array);
    const ruling = ruledLines(found, gray.rows, gray.columns);
    const mask = mapped(found, (value, i) => (value && !ruling[i] ? 1 : 0), Uint8Array);
    let strokes = keepStrokes(mask, gray.rows, gray.columns);
    if (!anyOf(strokes)) throw new ImageError("no ink found: the image is blank");
    strokes = binaryDilation(strokes, gray.rows, gray.columns);
    const result = image(gray.rows, gray.columns, mapped(ink, (value, i) =>
      Math.min(1, Math.max(0, (value - threshold / 2) / (contrast - threshold / 2))) * strokes[i]));
    if (!anyOf(result.data)) throw new ImageError("no ink found: the image is blank");
    return result;
  }

  // mnist_style: a grey image (values in [0, 1], any size, either polarity) → Float32Array(784), ink = 1.
  function mnistStyle(gray) {
    if (isMnistStyle(gray)) return normalise28(gray);
    return thinned(centreByMass(scaleToBox(cropToInk(inkMap(gray)))));
  }

  // Image.reduce by whole factors to at most WORKING_SIDE, then grey as Pillow's convert("L")
  // (ITU-R 601-2 luma in 16-bit fixed point), transparency flattened as grayscale_array does.
  function greyFromRGBA(rgba, width, height) {
    const factor = Math.ceil(Math.max(width, height) / P.WORKING_SIDE);
    let pixels = rgba, columns = width, rows = height;
    if (factor > 1) {
      columns = Math.ceil(width / factor);
      rows = Math.ceil(height / factor);
      pixels = reduceRGBA(rgba, width, height, factor);
    }
    const count = rows * columns;
    const brightness = new Float64Array(count), opacity = new Float64Array(count);
    let opacitySum = 0, strokeSum = 0;
    for (let i = 0; i < count; i++) {
      const red = pixels[4 * i], green = pixels[4 * i + 1], blue = pixels[4 * i + 2];
      brightness[i] = ((red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16) / 255;
      opacity[i] = pixels[4 * i + 3] / 255;
      opacitySum += opacity[i];
      strokeSum += brightness[i] * opacity[i];
    }
    if (opacitySum === 0) throw new ImageError("no ink found: the image is entirely transparent");
    const background = strokeSum / opacitySum < 0.5 ? 1.0 : 0.0;
    return image(rows, columns, mapped(brightness, (value, i) => value * opacity[i] + background * (1 - opacity[i])));
  }

  return { mnistStyle, greyFromRGBA, image };
}

// ---------------------------------------------------------------- the decision

// digit_probabilities: the ten digits' share, renormalised when the model has an 11th "not a digit" output.
export function digitProbabilities(outputs, settings) {
  const { NUM_CLASSES } = settings.shape;
  const digits = Float32Array.from(outputs.slice(0, NUM_CLASSES));
  if (outputs.length === NUM_CLASSES) return digits;
  let total = 0;
  for (const value of digits) total = Math.fround(total + value);
  total = Math.max(total, 1.1754943508222875e-38); // np.finfo(np.float32).tiny
  return digits.map((value) => value / total);
}

// is_digit: ink coverage, then the 11th output's threshold (or, with ten outputs, the top probability).
export function isDigit(input, outputs, settings) {
  const D = settings.decision, { NUM_CLASSES } = settings.shape;
  let inked = 0;
  for (const value of input) if (value > D.INK_LEVEL) inked += 1;
  if (inked / input.length > D.MAX_INK_COVERAGE) return false;
  if (outputs.length === NUM_CLASSES + 1) return outputs[NUM_CLASSES] < D.NOT_DIGIT_THRESHOLD;
  return maximum(outputs) >= D.MIN_CONFIDENCE;
}

// The record `mnist-keras predict` prints for one image, from the model's outputs for its input.
export function predictionRecord(outputs, input, settings) {
  const probabilities = digitProbabilities(outputs, settings);
  let digit = 0;
  for (let d = 1; d < probabilities.length; d++) if (probabilities[d] > probabilities[digit]) digit = d;
  return {
    digit,
    confidence: probabilities[digit],
    probabilities: Array.from(probabilities),
    is_digit: isDigit(input, outputs, settings),
  };
}
