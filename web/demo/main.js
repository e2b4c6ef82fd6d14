// The demo page: the page's WebGPU adapter, a model directory fetched file by file, one run
// on its stored inputs (timed on the GPU where timestamp-query exists), checked against
// transformers' stored outputs at the native suite's tolerance (1e-4 + 1e-3·|want|).
import init, { Device, Model, readSafetensors } from "./pkg/vlbridge_web.js";

const status = document.getElementById("status");
const row = (table, key, value, cls) => {
  const tr = document.createElement("tr");
  tr.innerHTML = `<th>${key}</th><td${cls ? ` class="${cls}"` : ""}>${value}</td>`;
  document.getElementById(table).appendChild(tr);
};
const fetchBytes = async (url) => {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
};

async function main() {
  await init();
  const device = await Device.open();
  const info = device.info();
  for (const key of ["name", "backend", "driver", "shaderF16", "subgroups", "timestampQuery", "maxStorageBufferBindingSize"]) {
    row("adapter", key, String(info[key]) || "(not reported)");
  }
  const base = new URLSearchParams(location.search).get("model") ?? "../../tests/data/models/llava/";
  const index = JSON.parse(new TextDecoder().decode(await fetchBytes(base + "model.safetensors.index.json")));
  const shards = [...new Set(Object.values(index.weight_map))].sort();
  const names = ["config.json", "model.safetensors.index.json", ...shards];
  const files = await Promise.all(names.map((n) => fetchBytes(base + n)));
  let start = performance.now();
  const model = Model.load(device, names, files);
  row("run", "model", `${base} (${model.family()}, ${names.length} files)`);
  row("run", "load", `${(performance.now() - start).toFixed(1)} ms`);
  const inputs = readSafetensors(await fetchBytes(base + "connector_inputs.safetensors"));
  const stored = readSafetensors(await fetchBytes(base + "connector_outputs.safetensors"));
  start = performance.now();
  const { outputs, ms, clock } = await model.runTimed(inputs);
  row("run", "first run + timed run", `${(performance.now() - start).toFixed(1)} ms wall clock`);
  row("run", "one run", `${ms.toFixed(3)} ms (${clock})`);
  let passed = true;
  for (const [name, out] of Object.entries(outputs)) {
    const want = stored[name];
    if (!want) { row("run", name, `[${out.shape}] (not stored)`); continue; }
    let maxAbs = 0, bad = 0;
    for (let i = 0; i < want.data.length; i++) {
      const d = Math.abs(out.data[i] - want.data[i]);
      maxAbs = Math.max(maxAbs, d);
      if (!(d <= 1e-4 + 1e-3 * Math.abs(want.data[i]))) bad++;
    }
    const ok = bad === 0 && out.data.length === want.data.length;
    passed &&= ok;
    row("run", name, `[${out.shape}] max abs ${maxAbs.toExponential(2)} vs transformers: ${ok ? "pass" : bad + " fail"}`, ok ? "ok" : "fail");
  }
  status.textContent = passed ? "done: every output matches transformers" : "done: MISMATCH";
  status.className = passed ? "ok" : "fail";
  document.title = passed ? "vlbridge: pass" : "vlbridge: FAIL";
}

main().catch((e) => {
  status.textContent = `error: ${e.message ?? e}`;
  status.className = "fail";
  document.title = "vlbridge: error";
});
