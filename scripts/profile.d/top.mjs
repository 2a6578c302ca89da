// node top.mjs PROFILE.cpuprofile UNITS UNIT_NAME [GLUE.js] [PHASE=REGEX ...]
// Markdown: the isolate's busy samples per unit (e.g. per record), each phase's share
// (samples with a frame matching REGEX anywhere on their stack), and the functions
// with the most self time. GLUE.js names wasm-bindgen's anonymous imports.
import { readFileSync } from "fs";
import { labeller } from "./label.mjs";

const [file, units, unitName, glueFile, ...phases] = process.argv.slice(2);
const label = labeller(glueFile);
const profile = JSON.parse(readFileSync(file));
const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map();
for (const node of profile.nodes) for (const child of node.children || []) parent.set(child, node.id);
const rules = phases.map((p) => {
  const at = p.indexOf("=");
  return [p.slice(0, at), new RegExp(p.slice(at + 1))];
});
const self = new Map();
const phase = new Map(rules.map(([name]) => [name, 0]));
let busy = 0;
for (const id of profile.samples) {
  const name = label(nodes.get(id));
  if (name === "(idle)") continue;
  busy++;
  self.set(name, (self.get(name) || 0) + 1);
  const stack = [];
  for (let at = id; at !== undefined; at = parent.get(at)) stack.push(label(nodes.get(at)));
  for (const [phaseName, re] of rules) if (stack.some((frame) => re.test(frame))) phase.set(phaseName, phase.get(phaseName) + 1);
}
const pct = (v) => `${((100 * v) / busy).toFixed(0)}%`;
console.log(`Busy samples: ${busy}, ${(busy / Number(units)).toFixed(3)} per ${unitName}.`);
console.log("");
console.log("| phase (anywhere on the stack) | share of busy samples |");
console.log("|---|---:|");
for (const [name, v] of phase) console.log(`| ${name} | ${pct(v)} |`);
console.log("");
console.log("| function (self time) | share of busy samples |");
console.log("|---|---:|");
for (const [name, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`| \`${name.slice(0, 110)}\` | ${pct(v)} |`);
