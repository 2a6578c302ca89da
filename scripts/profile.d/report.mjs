// node report.mjs METERED.cpuprofile BARE.cpuprofile REQUESTS [GLUE.js]
// Markdown: the isolate's samples per request of each target, and per function
// (self time, Rust hashes dropped) what the metered path adds over the bare route.
// GLUE.js, the bundled wasm-bindgen glue, names its anonymous import functions.
import { readFileSync } from "fs";
import { labeller } from "./label.mjs";

const [meteredFile, bareFile, requests, glueFile] = process.argv.slice(2);
const n = Number(requests);
const label = labeller(glueFile);
function selfTimes(file) {
  const profile = JSON.parse(readFileSync(file));
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map();
  let busy = 0;
  for (const id of profile.samples) {
    const name = label(nodes.get(id));
    self.set(name, (self.get(name) || 0) + 1);
    if (name !== "(idle)") busy++;
  }
  return { self, busy };
}
const metered = selfTimes(meteredFile);
const bare = selfTimes(bareFile);
const per = (map, name) => (map.get(name) || 0) / n;
const rows = [...new Set([...metered.self.keys(), ...bare.self.keys()])]
  .filter((name) => name !== "(idle)")
  .map((name) => [name, per(metered.self, name), per(bare.self, name)])
  .sort((a, b) => b[1] - b[2] - (a[1] - a[2]));
const extra = (metered.busy - bare.busy) / n;
console.log(`Busy samples per request: metered ${(metered.busy / n).toFixed(3)}, bare ${(bare.busy / n).toFixed(3)} ` +
  `(${(metered.busy / bare.busy).toFixed(2)}×); the metered path adds ${extra.toFixed(3)}.`);
console.log("");
console.log("| function (self time) | metered | bare | added | share of what is added |");
console.log("|---|---:|---:|---:|---:|");
for (const [name, m, b] of rows.slice(0, 25)) {
  console.log(`| \`${name.slice(0, 110)}\` | ${m.toFixed(3)} | ${b.toFixed(3)} | ${(m - b).toFixed(3)} | ${((100 * (m - b)) / extra).toFixed(0)}% |`);
}
