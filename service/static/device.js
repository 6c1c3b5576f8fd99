// masklite device mode: YuNet + the classifier on this device (onnxruntime-web, WebAssembly). No frame
// leaves the page. Everything the pipeline needs (detector thresholds and input side, crop margin, input
// size, colour order, scale/offset, labels, decision threshold, the `unknown` rule, file names and sha256)
// comes from GET /v1/models, i.e. the model card; this file holds only the algorithms.
//
// The steps mirror masklite/faces.py (YuNet decoding copied from OpenCV's FaceDetectorYN, NMS, the crop
// box) and masklite/pipeline.py (decide_label); tests/web/test_device_parity.py compares the two.

const ORT_URL = "/static/vendor/ort.wasm.bundle.min.mjs";
// the WebAssembly binary only: the bundle carries its own glue code (a prefix would make it import that)
const ORT_WASM = "/static/vendor/ort-wasm-simd-threaded.wasm";
const DETECTOR_RUNTIME = "onnxruntime"; // the card's YuNet with a symbolic input size
const CLASSIFIER_RUNTIME = "onnxruntime-web"; // the card's classifier converted for onnxruntime-web
const STRIDES = [8, 16, 32];
const DIVISOR = 32;
const TOP_K = 5000;

export class DeviceModeError extends Error {}

// A WebAssembly module that uses one SIMD instruction: validates only where WASM SIMD exists
// (onnxruntime-web ships SIMD builds only).
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11,
]);

/** Why this browser cannot run device mode, or null when it can. */
export function unsupportedReason() {
  if (typeof WebAssembly !== "object" || typeof WebAssembly.validate !== "function") {
    return "this browser has no WebAssembly";
  }
  if (!WebAssembly.validate(SIMD_PROBE)) return "this browser's WebAssembly has no SIMD";
  if (!globalThis.crypto?.subtle) return "this page has no WebCrypto here (open it over HTTPS)";
  return null;
}

/** The card's files for device mode, for one precision; throws DeviceModeError when the card has none. */
export function deviceFiles(info, precision) {
  const model = info.models.find((m) => m.precision === precision);
  const classifier = model?.runtime_files?.[CLASSIFIER_RUNTIME];
  const detector = info.detector?.runtime_files?.[DETECTOR_RUNTIME];
  if (!classifier) throw new DeviceModeError(`the model card has no ${CLASSIFIER_RUNTIME} file for ${precision}`);
  if (!detector) throw new DeviceModeError(`the model card has no ${DETECTOR_RUNTIME} file for the detector`);
  return { model, classifier, detector };
}

/** Precisions the card can run on the device. */
export function devicePrecisions(info) {
  return info.models.filter((m) => m.runtime_files?.[CLASSIFIER_RUNTIME]).map((m) => m.precision);
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Download one card file and check it against the card's sha256 (a mismatch refuses device mode). */
async function fetchVerified(entry) {
  const resp = await fetch(entry.url, { cache: "no-cache" });
  if (!resp.ok) throw new DeviceModeError(`could not download ${entry.file} (HTTP ${resp.status})`);
  const bytes = await resp.arrayBuffer();
  const actual = await sha256Hex(bytes);
  if (actual !== entry.sha256) {
    throw new DeviceModeError(
      `${entry.file} does not match the model card: sha256 ${actual.slice(0, 12)}… instead of ` +
        `${entry.sha256.slice(0, 12)}…. Device mode is refused for this file.`,
    );
  }
  return new Uint8Array(bytes);
}

/** WebAssembly threads: they need a cross-origin isolated page (the camera page sends COOP/COEP); one
 * core is left to the camera and the page. `asked` (the page's ?threads=) overrides. */
export function defaultThreads(asked) {
  if (!globalThis.crossOriginIsolated) return 1;
  if (asked > 0) return Math.min(asked, 16);
  return Math.min(4, Math.max(1, (navigator.hardwareConcurrency || 1) - 1));
}

let ortPromise = null;
function loadOrt(threads) {
  ortPromise ??= import(ORT_URL).then((ort) => {
    ort.env.wasm.wasmPaths = { wasm: ORT_WASM };
    ort.env.wasm.numThreads = defaultThreads(threads);
    return ort;
  });
  return ortPromise;
}

/** The device pipeline for one precision: checked files, two onnxruntime-web sessions. */
export async function createPipeline(info, precision, { threads = 0 } = {}) {
  const reason = unsupportedReason();
  if (reason) throw new DeviceModeError(reason);
  const files = deviceFiles(info, precision);
  const [ort, detectorBytes, classifierBytes] = await Promise.all([
    loadOrt(threads),
    fetchVerified(files.detector),
    fetchVerified(files.classifier),
  ]);
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const detector = await ort.InferenceSession.create(detectorBytes, options);
  const classifier = await ort.InferenceSession.create(classifierBytes, options);
  return new DevicePipeline(ort, info, files.model, detector, classifier);
}

class DevicePipeline {
  constructor(ort, info, model, detector, classifier) {
    this.ort = ort;
    this.info = info;
    this.model = model;
    this.detector = detector;
    this.classifier = classifier;
    this.spec = model.input ?? info.input; // this model's own input, else the card default
    this.canvas = document.createElement("canvas"); // the frame at full size: its pixels are read once
  }

  /**
   * Faces in one frame (a video, image, bitmap or canvas of width x height), boxes in its pixels:
   * {faces: [{box, score, label, mask_probability}], image: {width, height},
   *  stages_ms: {capture (the frame's pixels), detect, classify}}.
   */
  async run(source, width, height) {
    const t0 = performance.now();
    this.canvas.width = width;
    this.canvas.height = height;
    const ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(source, 0, 0, width, height);
    const frame = { data: ctx.getImageData(0, 0, width, height).data, width, height };
    const tc = performance.now();
    const found = await this.detect(frame);
    const t1 = performance.now();
    const probs = await this.classify(frame, found.map((f) => f.box));
    const t2 = performance.now();
    const { labels, mask_label: maskLabel, unknown_label: unknownLabel, min_face_size: minFace } = this.info;
    const maskIndex = labels.indexOf(maskLabel);
    const faces = found.map((f, i) => {
      const p = probs[i * labels.length + maskIndex];
      return { box: f.box, score: f.score, mask_probability: p, label: this.decide(p, f.box, minFace, unknownLabel) };
    });
    const stages = { capture: tc - t0, detect: t1 - tc, classify: t2 - t1 };
    return { faces, image: { width, height }, stages_ms: stages };
  }

  // masklite.pipeline.decide_label: `unknown` below the card's smallest face, else the threshold rule
  decide(p, box, minFace, unknownLabel) {
    const { labels, mask_label: maskLabel } = this.info;
    if (Math.min(box[2], box[3]) < minFace) return unknownLabel;
    if (p >= this.model.decision_threshold) return maskLabel;
    return labels.find((l) => l !== maskLabel);
  }

  async detect(frame) {
    const det = this.info.detector;
    const { width, height } = frame;
    // shrunk to the card's detector side like the server (cv2.INTER_AREA), never enlarged
    const scale = Math.min(1, det.max_side / Math.max(width, height));
    const w = Math.max(1, Math.round(width * scale));
    const h = Math.max(1, Math.round(height * scale));
    const rgb = resizeRegion(frame, [0, 0, width, height], w, h);
    const padW = Math.ceil(w / DIVISOR) * DIVISOR;
    const padH = Math.ceil(h / DIVISOR) * DIVISOR;
    // (1, 3, padH, padW) BGR, raw 0..255, zeros outside the image (masklite.faces.make_blob)
    const plane = padW * padH;
    const blob = new Float32Array(3 * plane);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const s = (y * w + x) * 3;
        const d = y * padW + x;
        blob[d] = rgb[s + 2];
        blob[plane + d] = rgb[s + 1];
        blob[2 * plane + d] = rgb[s];
      }
    }
    const input = new this.ort.Tensor("float32", blob, [1, 3, padH, padW]);
    const out = await this.detector.run({ [this.detector.inputNames[0]]: input });
    const rows = decode(out, padW, padH, det.score_threshold);
    const kept = rows.length <= 1 ? rows : nms(rows, det.score_threshold, det.nms_threshold);
    const faces = [];
    for (const r of kept) {
      // back in frame pixels: divided by the scale, as the server does
      const box = clipBox(r[0] / scale, r[1] / scale, r[2] / scale, r[3] / scale, width, height);
      if (box) faces.push({ box, score: r[14] });
    }
    return faces.sort((a, b) => b.score - a.score);
  }

  async classify(frame, boxes) {
    if (!boxes.length) return new Float32Array(0);
    const [inH, inW] = this.spec.size;
    const { scale, offset, color } = this.spec;
    const [r, g, b] = color === "BGR" ? [2, 1, 0] : [0, 1, 2];
    const n = inH * inW * 3;
    const pixels = new Float32Array(boxes.length * n);
    boxes.forEach((box, i) => {
      const region = cropBox(box, this.info.crop_margin, frame.width, frame.height);
      const rgb = resizeRegion(frame, region, inW, inH); // masklite.classifier.resize_crop
      for (let s = 0, o = i * n; s < rgb.length; s += 3) {
        pixels[o++] = rgb[s + r] * scale + offset;
        pixels[o++] = rgb[s + g] * scale + offset;
        pixels[o++] = rgb[s + b] * scale + offset;
      }
    });
    const input = new this.ort.Tensor("float32", pixels, [boxes.length, inH, inW, 3]);
    const out = await this.classifier.run({ [this.classifier.inputNames[0]]: input });
    return out[this.classifier.outputNames[0]].data;
  }
}

// ---------------------------------------------------------------- resizing (OpenCV's, as the server)

/**
 * The region [x, y, w, h] of an RGBA frame resized to dw x dh RGB uint8, as cv2.resize does on the
 * server: INTER_AREA when shrinking, INTER_LINEAR when enlarging (masklite.classifier.resize_crop).
 */
export function resizeRegion(frame, [x0, y0, w, h], dw, dh) {
  const src = frame.data;
  const stride = frame.width * 4;
  const out = new Uint8ClampedArray(dw * dh * 3); // clamps and rounds like saturate_cast<uchar>
  if (w === dw && h === dh) {
    // same size: a copy (a 640x480 camera frame for the detector)
    for (let y = 0, o = 0; y < h; y++) {
      for (let p = (y0 + y) * stride + x0 * 4, end = p + w * 4; p < end; p += 4) {
        out[o++] = src[p];
        out[o++] = src[p + 1];
        out[o++] = src[p + 2];
      }
    }
    return out;
  }
  const shrinking = w > dw || h > dh;
  const cols = flatten(shrinking ? areaWeights(w, dw) : linearWeights(w, dw));
  const rows = flatten(shrinking ? areaWeights(h, dh) : linearWeights(h, dh));
  const acc = new Float32Array(dw * 3);
  for (let oy = 0; oy < dh; oy++) {
    acc.fill(0);
    for (let ty = rows.start[oy]; ty < rows.start[oy + 1]; ty++) {
      const line = (y0 + rows.index[ty]) * stride + x0 * 4;
      const wy = rows.weight[ty];
      for (let ox = 0, a = 0; ox < dw; ox++, a += 3) {
        let r = 0;
        let g = 0;
        let b = 0;
        for (let tx = cols.start[ox]; tx < cols.start[ox + 1]; tx++) {
          const p = line + cols.index[tx] * 4;
          const wx = cols.weight[tx];
          r += src[p] * wx;
          g += src[p + 1] * wx;
          b += src[p + 2] * wx;
        }
        acc[a] += r * wy;
        acc[a + 1] += g * wy;
        acc[a + 2] += b * wy;
      }
    }
    const o = oy * dw * 3;
    for (let i = 0; i < acc.length; i++) out[o + i] = Math.round(acc[i]);
  }
  return out;
}

// [[index, weight], ...] per output pixel -> typed arrays (start offsets, indices, weights): fast loops
function flatten(table) {
  const start = new Int32Array(table.length + 1);
  table.forEach((taps, i) => (start[i + 1] = start[i] + taps.length));
  const index = new Int32Array(start[table.length]);
  const weight = new Float32Array(start[table.length]);
  table.flat().forEach(([i, wt], k) => {
    index[k] = i;
    weight[k] = wt;
  });
  return { start, index, weight };
}

// OpenCV's computeResizeAreaTab: each output pixel averages the source pixels it covers, by coverage
function areaWeights(src, dst) {
  const scale = src / dst;
  const table = [];
  for (let d = 0; d < dst; d++) {
    const f1 = d * scale;
    const f2 = f1 + scale;
    const cell = Math.min(scale, src - f1);
    const s2 = Math.min(Math.floor(f2), src - 1);
    const s1 = Math.min(Math.ceil(f1), s2);
    const taps = [];
    if (s1 - f1 > 1e-3) taps.push([s1 - 1, (s1 - f1) / cell]);
    for (let s = s1; s < s2; s++) taps.push([s, 1 / cell]);
    if (f2 - s2 > 1e-3) taps.push([s2, Math.min(Math.min(f2 - s2, 1), cell) / cell]);
    table.push(taps);
  }
  return table;
}

// INTER_LINEAR: pixel centres aligned, edges replicated
function linearWeights(src, dst) {
  const scale = src / dst;
  const table = [];
  for (let d = 0; d < dst; d++) {
    const f = (d + 0.5) * scale - 0.5;
    const s = Math.floor(f);
    const t = f - s;
    const a = Math.min(Math.max(s, 0), src - 1);
    const b = Math.min(Math.max(s + 1, 0), src - 1);
    table.push(a === b ? [[a, 1]] : [[a, 1 - t], [b, t]]);
  }
  return table;
}

// ---------------------------------------------------------------- YuNet decoding (masklite/faces.py)

/** The 12 head outputs -> candidate rows [x, y, w, h, 10 landmark values, score] above the threshold. */
export function decode(outputs, padW, padH, scoreThreshold) {
  const rows = [];
  for (const stride of STRIDES) {
    const cols = padW / stride;
    const n = cols * (padH / stride);
    const cls = outputs[`cls_${stride}`].data;
    const obj = outputs[`obj_${stride}`].data;
    const bbox = outputs[`bbox_${stride}`].data;
    for (let i = 0; i < n; i++) {
      const score = Math.sqrt(clamp01(cls[i]) * clamp01(obj[i]));
      if (score < scoreThreshold) continue;
      const c = i % cols;
      const r = Math.floor(i / cols);
      const cxy = [(c + bbox[4 * i]) * stride, (r + bbox[4 * i + 1]) * stride];
      const w = Math.exp(bbox[4 * i + 2]) * stride;
      const h = Math.exp(bbox[4 * i + 3]) * stride;
      const row = new Float32Array(15);
      row[0] = cxy[0] - w / 2;
      row[1] = cxy[1] - h / 2;
      row[2] = w;
      row[3] = h;
      row[14] = score;
      rows.push(row);
    }
  }
  return rows;
}

function clamp01(v) {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/** cv2.dnn.NMSBoxes on int-truncated boxes: rows kept, best first. */
export function nms(rows, scoreThreshold, nmsThreshold) {
  const order = rows
    .map((row, i) => [row, i])
    .filter(([row]) => row[14] > scoreThreshold)
    .sort((a, b) => b[0][14] - a[0][14] || a[1] - b[1]) // stable: ties keep their order
    .slice(0, TOP_K)
    .map(([row]) => row);
  const boxes = order.map((r) => r.slice(0, 4).map(Math.trunc));
  const alive = order.map(() => true);
  const kept = [];
  for (let i = 0; i < order.length; i++) {
    if (!alive[i]) continue;
    kept.push(order[i]);
    const [x0, y0, w0, h0] = boxes[i];
    const area0 = Math.max(w0, 0) * Math.max(h0, 0);
    for (let j = i + 1; j < order.length; j++) {
      if (!alive[j]) continue;
      const [x1, y1, w1, h1] = boxes[j];
      const iw = Math.min(x0 + w0, x1 + w1) - Math.max(x0, x1);
      const ih = Math.min(y0 + h0, y1 + h1) - Math.max(y0, y1);
      const inter = iw > 0 && ih > 0 ? iw * ih : 0;
      const union = area0 + Math.max(w1, 0) * Math.max(h1, 0) - inter;
      if (union > 0 && inter / Math.max(union, 1) > nmsThreshold) alive[j] = false;
    }
  }
  return kept;
}

// masklite.faces._clip_box: rounded, clipped to the image; null when under 2 px
function clipBox(x, y, w, h, width, height) {
  const x0 = Math.max(0, pyRound(x));
  const y0 = Math.max(0, pyRound(y));
  const x1 = Math.min(width, pyRound(x + w));
  const y1 = Math.min(height, pyRound(y + h));
  if (x1 - x0 < 2 || y1 - y0 < 2) return null;
  return [x0, y0, x1 - x0, y1 - y0];
}

// masklite.faces.crop_box: the square around the face, grown by `margin` of its longer side, clipped
export function cropBox([x, y, w, h], margin, width, height) {
  const side = Math.max(w, h) * (1 + 2 * margin);
  const cx = x + w / 2;
  const cy = y + h / 2;
  const x0 = Math.max(0, pyRound(cx - side / 2));
  const y0 = Math.max(0, pyRound(cy - side / 2));
  const x1 = Math.min(width, pyRound(cx + side / 2));
  const y1 = Math.min(height, pyRound(cy + side / 2));
  return [x0, y0, Math.max(1, x1 - x0), Math.max(1, y1 - y0)];
}

// Python's round(): halves to even, so boxes match the server's to the pixel
function pyRound(v) {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
