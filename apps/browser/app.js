// Run a compact ONNX export bundle in the browser: onnxruntime-web (WASM) for the graphs, tokenizer.js for text,
// a canvas for image preprocessing. No server-side code: any static file server will do (serve.py is one).
//
//   const bundle = await BrowserBundle.load("bundle/");
//   const q = await bundle.embedTexts(["a red star", "ein roter Stern"]);   // [[...D floats], ...]
//   const v = await bundle.embedImageUrl("photo.png");                     // [...D floats]
//
// The page (index.html) also runs itself from its URL, for scripts and tests:
//   index.html?bundle=bundle/&text=a%20red%20star&text=赤い星&image=/files/star.png
// sets window.results = {text: [[...]], image: [[...]], ids: [[...]]} (or window.appError = "...").

import { BundleTokenizer } from "./tokenizer.js";

const ORT_DIST = new URL("node_modules/onnxruntime-web/dist/", import.meta.url).href;

function ortModule() {
  const ort = globalThis.ort;
  if (!ort) throw new Error(`onnxruntime-web is not loaded; run apps/setup.sh (it installs ${ORT_DIST})`);
  ort.env.wasm.wasmPaths = ORT_DIST;
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a plain static server lacks
  return ort;
}

async function fetchOk(url, kind) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot fetch ${url} (${response.status} ${response.statusText})`);
  return kind === "json" ? response.json() : kind === "bytes" ? new Uint8Array(await response.arrayBuffer()) : response.blob();
}

// Python's round(): halves to even (the crop offsets must match compact_bundle.py's).
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export class BrowserBundle {
  constructor(base, manifest, tokenizer, sessions) {
    this.base = base;
    this.manifest = manifest;
    this.tokenizer = tokenizer;
    this.sessions = sessions;
    this.pre = manifest.preprocess;
    this.padTo = (manifest.tokenizer || {}).pad_to || "longest";
  }

  /** Load manifest.json, the tokenizer and both ONNX graphs from the bundle folder at `url`. */
  static async load(url) {
    const ort = ortModule();
    const base = new URL(url.endsWith("/") ? url : `${url}/`, document.baseURI).href;
    const manifest = await fetchOk(new URL("manifest.json", base), "json").catch((e) => {
      throw new Error(`${base} is not an export bundle (no manifest.json): ${e.message}`);
    });
    if (manifest.target !== "onnx") throw new Error(`${base} is a ${manifest.target} bundle; the browser app needs an ONNX bundle`);
    let tokenizer = null;
    if (manifest.tokenizer) {
      const config = await fetchOk(new URL(manifest.tokenizer.config_file || "tokenizer_config.json", base), "json");
      const json = config.type === "hf" ? await fetchOk(new URL(config.file || "tokenizer.json", base), "json") : null;
      tokenizer = BundleTokenizer.fromConfig(config, json);
    }
    const sessions = {};
    for (const entry of manifest.files) {
      if (!entry.path.endsWith(".onnx") || entry.optimized || sessions[entry.tower]) continue;
      const bytes = await fetchOk(new URL(entry.path, base), "bytes");
      const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
      sessions[entry.tower] = { session, entry };
    }
    for (const tower of ["image", "text"]) {
      if (!sessions[tower]) throw new Error(`${base} has no ${tower} ONNX graph`);
    }
    return new BrowserBundle(base, manifest, tokenizer, sessions);
  }

  static rows(tensor) {
    const [n, d] = tensor.dims;
    return Array.from({ length: n }, (_, i) => Array.from(tensor.data.subarray(i * d, (i + 1) * d)));
  }

  async run(tower, feeds) {
    const { session } = this.sessions[tower];
    const out = await session.run(feeds);
    return out[session.outputNames[0]];
  }

  tokenize(texts) {
    if (!this.tokenizer) throw new Error("this bundle has no tokenizer");
    return this.tokenizer.call(texts, this.padTo);
  }

  /** Embeddings of `texts` (rows of D numbers; L2-normalised when the manifest says `normalized`). */
  async embedTexts(texts) {
    const ort = ortModule();
    const { ids, mask } = this.tokenize(texts);
    const dims = [ids.length, ids[0].length];
    const tensors = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(ids.flat(), BigInt), dims),
      attention_mask: new ort.Tensor("int64", BigInt64Array.from(mask.flat(), BigInt), dims),
    };
    const names = this.sessions.text.session.inputNames;
    const feeds = Object.fromEntries(names.map((name) => {
      if (!tensors[name]) throw new Error(`the text graph wants an input ${name}, which the app cannot make`);
      return [name, tensors[name]];
    }));
    return BrowserBundle.rows(await this.run("text", feeds));
  }

  /** CHW float32 pixels of one decoded image: resize (short side or squash) + center crop, then mean/std. */
  preprocess(bitmap) {
    const size = Number(this.pre.image_size);
    const { width: w, height: h } = bitmap;
    let newW;
    let newH;
    if (this.pre.resize_mode === "squash") [newW, newH] = [size, size];
    else if (w <= h) [newW, newH] = [size, Math.floor((size * h) / w)];
    else [newW, newH] = [Math.floor((size * w) / h), size];
    const canvas = new OffscreenCanvas(newW, newH);
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(bitmap, 0, 0, newW, newH); // exact when the image already has the model's size
    const left = this.pre.resize_mode === "squash" ? 0 : roundHalfEven((newW - size) / 2);
    const top = this.pre.resize_mode === "squash" ? 0 : roundHalfEven((newH - size) / 2);
    const rgba = ctx.getImageData(left, top, size, size).data;
    const out = new Float32Array(3 * size * size);
    const plane = size * size;
    for (let c = 0; c < 3; c++) {
      const mean = this.pre.mean[c];
      const std = this.pre.std[c];
      for (let i = 0; i < plane; i++) out[c * plane + i] = (rgba[4 * i + c] / 255 - mean) / std;
    }
    return out;
  }

  /** Embeddings of decoded images (ImageBitmaps or anything drawImage takes with width/height). */
  async embedImages(bitmaps) {
    const ort = ortModule();
    const size = Number(this.pre.image_size);
    const plane = 3 * size * size;
    const data = new Float32Array(bitmaps.length * plane);
    bitmaps.forEach((b, i) => data.set(this.preprocess(b), i * plane));
    const pixels = new ort.Tensor("float32", data, [bitmaps.length, 3, size, size]);
    return BrowserBundle.rows(await this.run("image", { pixel_values: pixels }));
  }

  async embedImageUrl(url) {
    return (await this.embedImages([await decodeImage(await fetchOk(url, "blob"))]))[0];
  }
}

/** Decode an image file (Blob/File) to RGB without colour management or alpha premultiplication. */
export function decodeImage(blob) {
  return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

export const cosine = (a, b) => {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
};

// ---------------------------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------------------------

function table(texts, names, textRows, imageRows) {
  const t = document.createElement("table");
  const head = t.insertRow();
  head.insertCell().textContent = "";
  names.forEach((n) => { head.insertCell().textContent = n; });
  texts.forEach((text, i) => {
    const row = t.insertRow();
    row.insertCell().textContent = text;
    imageRows.forEach((v) => { row.insertCell().textContent = cosine(textRows[i], v).toFixed(3); });
  });
  return t;
}

async function main() {
  const params = new URLSearchParams(location.search);
  const status = document.getElementById("status");
  const setStatus = (s) => { status.textContent = s; };
  const bundleUrl = params.get("bundle") || document.getElementById("bundle").value;
  document.getElementById("bundle").value = bundleUrl;
  let bundle = null;
  const loaded = async () => {
    const wanted = document.getElementById("bundle").value;
    if (!bundle || bundle.base !== new URL(wanted.endsWith("/") ? wanted : `${wanted}/`, document.baseURI).href) {
      setStatus(`loading ${wanted} ...`);
      bundle = await BrowserBundle.load(wanted);
      setStatus(`loaded ${bundle.base}: ${bundle.manifest.embed_dim}-dim embeddings, ` +
        `tokenizer ${bundle.tokenizer ? bundle.manifest.tokenizer.type : "none"}`);
    }
    return bundle;
  };

  // Run from the URL (scripts and tests): ?text=...&text=...&image=URL
  const texts = params.getAll("text");
  const images = params.getAll("image");
  if (texts.length || images.length) {
    try {
      const b = await loaded();
      const results = { text: [], image: [], ids: [] };
      if (texts.length) {
        results.ids = b.tokenize(texts).ids;
        results.text = await b.embedTexts(texts);
      }
      for (const url of images) results.image.push(await b.embedImageUrl(url));
      document.getElementById("output").replaceChildren(table(texts, images, results.text, results.image));
      window.results = results;
      setStatus(`${status.textContent} - embedded ${texts.length} texts and ${images.length} images`);
    } catch (e) {
      window.appError = String(e && e.message ? e.message : e);
      setStatus(`error: ${window.appError}`);
    }
  }

  // Interactive: texts (one per line) against chosen image files.
  document.getElementById("run").addEventListener("click", async () => {
    try {
      const b = await loaded();
      const lines = document.getElementById("texts").value.split("\n").map((s) => s.trim()).filter(Boolean);
      const files = Array.from(document.getElementById("files").files);
      const textRows = lines.length ? await b.embedTexts(lines) : [];
      const imageRows = files.length ? await b.embedImages(await Promise.all(files.map(decodeImage))) : [];
      document.getElementById("output").replaceChildren(table(lines, files.map((f) => f.name), textRows, imageRows));
    } catch (e) {
      setStatus(`error: ${e && e.message ? e.message : e}`);
    }
  });
}

if (typeof document !== "undefined" && document.getElementById("status")) {
  main();
}
