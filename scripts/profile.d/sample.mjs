// node sample.mjs WS_URL OUT.cpuprofile CMD ARGS...
// Samples one workerd isolate with V8's CPU profiler (through workerd's inspector)
// while CMD runs, and writes the profile (Chrome DevTools can open it).
import { createRequire } from "module";
import { spawn } from "child_process";
import { writeFileSync } from "fs";

const require = createRequire(process.cwd() + "/package.json");
const WebSocket = require("ws");
const [url, out, ...cmd] = process.argv.slice(2);
const ws = new WebSocket(url);
const pending = new Map();
let next = 0;
const call = (method, params = {}) =>
  new Promise((resolve, reject) => {
    const id = ++next;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ id, method, params }));
  });
ws.on("message", (raw) => {
  const msg = JSON.parse(raw);
  const waiter = msg.id && pending.get(msg.id);
  if (!waiter) return;
  pending.delete(msg.id);
  if (msg.error) waiter.reject(new Error(JSON.stringify(msg.error)));
  else waiter.resolve(msg.result);
});
await new Promise((resolve, reject) => ws.on("open", resolve).on("error", reject));
await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 50 });
await call("Profiler.start");
const child = spawn(cmd[0], cmd.slice(1), { stdio: ["ignore", "inherit", "inherit"] });
const code = await new Promise((resolve) => child.on("exit", resolve));
const { profile } = await call("Profiler.stop");
writeFileSync(out, JSON.stringify(profile));
ws.close();
process.exit(code);
