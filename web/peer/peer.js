// vlbridge and onnxruntime-web on one page, one adapter, the same inputs: each row warms both
// up, then alternates timed runs (wall clock from the call until the output is a host array,
// so both include the upload and the read-back), and checks both outputs against torch's.
import * as ort from "./node_modules/onnxruntime-web/dist/ort.webgpu.min.mjs";
import init, { Device, Model, readSafetensors } from "../demo/pkg/vlbridge_web.js";
import { addRow, compare, failed, fetchBytes, fetchModelDirectory, finish, showAdapter, showStatus } from "../demo/page.js";

const params = new URLSearchParams(location.search);
const data = params.get("data") ?? "../../target/web-peer/";
const runs = Number(params.get("runs") ?? 3);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const PROJECTOR_GFLOP = (2 * 576 * (1024 * 4096 + 4096 * 4096)) / 1e9;
// CLIP-L/14-336 at 2 layers: the patch GEMM, then per layer QKV and out (4 d²), MLP (8 d²) and
// attention's two products over 577 tokens.
const CLIP_GFLOP = (2 * 576 * 588 * 1024 + 2 * 2 * 577 * (12 * 1024 * 1024 + 2 * 577 * 1024)) / 1e9;
const ROWS = [
  { name: "llava_projector 576x1024-4096-4096", input: "image_features", onnx: "projector.onnx", want: "projector", gflop: PROJECTOR_GFLOP },
  { name: "llava vision path, CLIP-L/14-336 (2 layers) + projector", input: "pixel_values", onnx: "vision.onnx", want: "vision", gflop: CLIP_GFLOP + PROJECTOR_GFLOP },
];

async function main() {
  await init();
  const device = await Device.open();
  const info = showAdapter(device, "adapter");
  ort.env.wasm.wasmPaths = new URL("./node_modules/onnxruntime-web/dist/", import.meta.url).href;
  ort.env.wasm.numThreads = 1;

  const { names, files } = await fetchModelDirectory(data + "model/");
  const model = Model.load(device, names, files, "f32");
  const inputs = readSafetensors(await fetchBytes(data + "inputs.safetensors"));
  const torch = readSafetensors(await fetchBytes(data + "torch.safetensors"));

  addRow("rows", ["row", "GFLOP", "vlbridge ms", "onnxruntime-web ms", "ratio (ort / vlbridge)", "vlbridge GPU ms", "vlbridge vs torch", "ort vs torch"], { header: true });
  const results = [];
  for (const row of ROWS) {
    showStatus(`running ${row.name}…`);
    console.log(`running ${row.name}…`);
    const input = inputs[row.input];
    const session = await ort.InferenceSession.create(await fetchBytes(data + row.onnx), { executionProviders: ["webgpu"] });
    const ortRun = async () => (await session.run({ [row.input]: new ort.Tensor("float32", input.data, input.shape) }))[session.outputNames[0]].data;
    const oursRun = async () => Object.values(await model.run({ [row.input]: input }))[0].data;
    // runTimed's first run compiles vlbridge's pipelines; ORT's first run compiles its own.
    const { ms: gpuMs, clock } = await model.runTimed({ [row.input]: input });
    let ours, theirs = await ortRun();
    const oursMs = [], ortMs = [];
    for (let i = 0; i < runs; i++) {
      let t = performance.now(); ours = await oursRun(); oursMs.push(performance.now() - t);
      t = performance.now(); theirs = await ortRun(); ortMs.push(performance.now() - t);
    }
    await session.release();
    const want = torch[row.want].data;
    const result = {
      row: row.name, gflop: row.gflop, runs, vlbridge_ms: median(oursMs), ort_ms: median(ortMs), vlbridge_gpu_ms: gpuMs, vlbridge_clock: clock,
      vlbridge_vs_torch: compare(ours, want), ort_vs_torch: compare(theirs, want), vlbridge_vs_ort_max_abs: compare(ours, theirs).maxAbs,
    };
    result.ratio = result.ort_ms / result.vlbridge_ms;
    results.push(result);
    const check = (c) => `${c.pass ? "pass" : "FAIL"} (max abs ${c.maxAbs.toExponential(2)})`;
    addRow("rows", [row.name, row.gflop.toFixed(1), result.vlbridge_ms.toFixed(1), result.ort_ms.toFixed(1), `${result.ratio.toFixed(2)}×`,
      `${gpuMs.toFixed(1)} (${clock})`, check(result.vlbridge_vs_torch), check(result.ort_vs_torch)]);
  }
  const passed = results.every((r) => r.vlbridge_vs_torch.pass && r.ort_vs_torch.pass);
  const adapter = `${info.name || "(unnamed adapter)"}, ${info.backend}, ${navigator.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? navigator.userAgent}`;
  document.getElementById("json").textContent = JSON.stringify({ adapter, info, ort: ort.env.versions, results }, null, 1);
  document.getElementById("markdown").textContent = [
    `| row | GFLOP | vlbridge ms | GFLOP/s | onnxruntime-web ms | GFLOP/s | ratio (ort / vlbridge) | vlbridge GPU ms | vlbridge vs torch (max abs) | onnxruntime-web vs torch (max abs) |`,
    `|---|---|---|---|---|---|---|---|---|---|`,
    ...results.map((r) => `| ${r.row} | ${r.gflop.toFixed(1)} | ${r.vlbridge_ms.toFixed(1)} | ${(r.gflop * 1e3 / r.vlbridge_ms).toFixed(1)} | ${r.ort_ms.toFixed(1)} | ${(r.gflop * 1e3 / r.ort_ms).toFixed(1)} | ${r.ratio.toFixed(2)}× | ${r.vlbridge_gpu_ms.toFixed(1)} | ${r.vlbridge_vs_torch.maxAbs.toExponential(2)} | ${r.ort_vs_torch.maxAbs.toExponential(2)} |`),
  ].join("\n");
  finish(passed, passed ? "done: both match torch on every row" : "done: MISMATCH");
}

main().catch(failed);
