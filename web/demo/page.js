// What the demo page and the peer page (web/peer) share: fetching a model directory, the
// adapter table, the native suite's comparison rule, and the outcome in the page's title, which
// scripts/web_screenshot.py waits for ("vlbridge: pass", "vlbridge: FAIL", "vlbridge: error").

export const fetchBytes = async (url) => {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
};

export const fetchOptional = (url) => fetchBytes(url).catch(() => null);

// A Hugging Face model directory at `base` (a URL ending in "/"): config.json, the shard index
// and every shard it names, as the names and bytes `Model.load` takes.
export async function fetchModelDirectory(base) {
  const index = JSON.parse(new TextDecoder().decode(await fetchBytes(base + "model.safetensors.index.json")));
  const shards = [...new Set(Object.values(index.weight_map))].sort();
  const names = ["config.json", "model.safetensors.index.json", ...shards];
  return { names, files: await Promise.all(names.map((n) => fetchBytes(base + n))) };
}

// One row of the table `id`: every cell a <th> with `header`, the last one styled `cls`.
export function addRow(id, cells, { header = false, cls } = {}) {
  const tr = document.createElement("tr");
  cells.forEach((text, i) => {
    const cell = document.createElement(header || i === 0 ? "th" : "td");
    cell.textContent = text;
    if (cls && i === cells.length - 1) cell.className = cls;
    tr.appendChild(cell);
  });
  document.getElementById(id).appendChild(tr);
}

// The adapter's name, backend, features and binding limit in the table `id`; returns them.
export function showAdapter(device, id) {
  const info = device.info();
  for (const key of ["name", "backend", "driver", "shaderF16", "subgroups", "timestampQuery", "maxStorageBufferBindingSize"]) {
    addRow(id, [key, String(info[key]) || "(not reported)"]);
  }
  return info;
}

// The native suite's rule: |got - want| <= 1e-4 + 1e-3·|want| everywhere, and equal lengths.
export function compare(got, want) {
  let maxAbs = 0, bad = got.length === want.length ? 0 : 1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    maxAbs = Math.max(maxAbs, d);
    if (!(d <= 1e-4 + 1e-3 * Math.abs(want[i]))) bad++;
  }
  return { maxAbs, bad, pass: bad === 0 };
}

const status = () => document.getElementById("status");

export const showStatus = (text) => { status().textContent = text; };

// The page's outcome: the status line and the title.
export function finish(passed, text) {
  status().textContent = text;
  status().className = passed ? "ok" : "fail";
  document.title = passed ? "vlbridge: pass" : "vlbridge: FAIL";
}

// For `main().catch(..)`: an error ends the page as "vlbridge: error".
export function failed(error) {
  status().textContent = `error: ${error.message ?? error}`;
  status().className = "fail";
  document.title = "vlbridge: error";
}
