// A profile node's name: its function, or for an anonymous wasm-bindgen import the
// import's name from the bundled glue (GLUE.js), or its place; Rust hashes dropped.
import { readFileSync } from "fs";

export function labeller(glueFile) {
  const glue = glueFile ? readFileSync(glueFile, "utf8").split("\n") : [];
  // An import of the glue is `__wbg_<name>_<hash>: __name(function ...` on its line.
  const glueName = (line) => {
    const found = /(__wbg_[A-Za-z0-9_]+|__wbindgen_[A-Za-z0-9_]+): \/\* @__PURE__ \*\/ __name\(function/.exec(glue[line] || "");
    return found && `wasm-bindgen import ${found[1].replace(/_[0-9a-f]{16}$/, "")}`;
  };
  return (node) =>
    (node.callFrame.functionName ||
      glueName(node.callFrame.lineNumber) ||
      `(anonymous ${node.callFrame.url.split("/").pop()}:${node.callFrame.lineNumber})`)
      .replace(/::h[0-9a-f]{16}/g, "")
      .replace(/\|/g, "\\|");
}
