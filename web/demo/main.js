// The demo page: the page's WebGPU adapter, a model directory fetched file by file, then what
// it holds: the connector on its stored inputs, the vision path on stored pixel_values, and a
// picture through the directory's own image processor, tower and connector (timed on the GPU
// where timestamp-query exists). Each output with a stored counterpart is checked against
// transformers' at the native suite's tolerance (1e-4 + 1e-3·|want|).
import init, { Device, Model, readSafetensors } from "./pkg/vlbridge_web.js";
import { addRow, compare, failed, fetchBytes, fetchModelDirectory, fetchOptional, finish, showAdapter } from "./page.js";

const row = (key, value, cls) => addRow("run", [key, value], { cls });

// One timed run of `inputs`; each output compared with `stored[name]` where it exists.
// Resolves to whether every compared output passed.
async function runAndCheck(model, label, inputs, stored) {
  const start = performance.now();
  const { outputs, ms, clock } = await model.runTimed(inputs);
  row(`${label}: first run + timed run`, `${(performance.now() - start).toFixed(1)} ms wall clock`);
  row(`${label}: one run`, `${ms.toFixed(3)} ms (${clock})`);
  let passed = true;
  for (const [name, out] of Object.entries(outputs)) {
    const want = stored?.[name];
    if (!want) { row(`${label}: ${name}`, `[${out.shape}] (no stored output to compare)`); continue; }
    const { maxAbs, bad, pass } = compare(out.data, want.data);
    const ok = pass && String(out.shape) === String(want.shape);
    passed &&= ok;
    const verdict = ok ? "pass" : pass ? `shape [${want.shape}] stored` : `${bad} fail`;
    row(`${label}: ${name}`, `[${out.shape}] max abs ${maxAbs.toExponential(2)} vs transformers: ${verdict}`, ok ? "ok" : "fail");
  }
  return passed;
}

// The picture through the directory's processor, tower and connector.
async function picture(model, bytes, label, stored) {
  const url = URL.createObjectURL(new Blob([bytes]));
  document.getElementById("picture").src = url;
  const start = performance.now();
  const inputs = model.preprocess([bytes]);
  const shapes = Object.entries(inputs).map(([k, v]) => `${k} [${v.shape}]`).join(", ");
  row(`${label}: image processor`, `${shapes} in ${(performance.now() - start).toFixed(1)} ms`);
  return runAndCheck(model, label, inputs, stored);
}

async function main() {
  await init();
  const device = await Device.open();
  showAdapter(device, "adapter");
  const params = new URLSearchParams(location.search);
  const base = params.get("model") ?? "../../tests/data/vision/llava/";
  const { names, files } = await fetchModelDirectory(base);
  const processor = await fetchOptional(base + "preprocessor_config.json");
  if (processor) { names.push("preprocessor_config.json"); files.push(processor); }
  const start = performance.now();
  const model = Model.load(device, names, files);
  row("model", `${base} (${model.family()}, ${names.length} files)`);
  row("load", `${(performance.now() - start).toFixed(1)} ms`);

  let passed = true;
  const stored = async (file) => { const b = await fetchOptional(base + file); return b && readSafetensors(b); };
  const connectorInputs = await stored("connector_inputs.safetensors");
  if (connectorInputs) passed &&= await runAndCheck(model, "connector", connectorInputs, await stored("connector_outputs.safetensors"));
  const visionInputs = await stored("vision_inputs.safetensors");
  if (visionInputs) passed &&= await runAndCheck(model, "pixel_values", visionInputs, await stored("vision_outputs.safetensors"));
  if (processor) {
    document.getElementById("pictures").hidden = false;
    const image = params.get("image") ?? base + "preprocess/photo.png";
    // Stored features exist for the directory's own photo (from Pillow-backend pixels, which
    // vlbridge's processor reproduces); another picture gets shapes and times only.
    const features = image === base + "preprocess/photo.png" ? await stored("preprocess/photo_features.safetensors") : null;
    const want = features && { image_features: features.image_features_slow };
    passed &&= await picture(model, await fetchBytes(image), "picture", want);
    document.getElementById("file").addEventListener("change", async (e) => {
      for (const f of e.target.files) {
        await picture(model, new Uint8Array(await f.arrayBuffer()), f.name, null).catch((err) => row(f.name, `error: ${err.message ?? err}`, "fail"));
      }
    });
  }
  finish(passed, passed ? "done: every output matches transformers" : "done: MISMATCH");
}

main().catch(failed);
