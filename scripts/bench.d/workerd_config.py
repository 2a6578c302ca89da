#!/usr/bin/env python3
"""Writes the workerd config (capnp) that scripts/bench serves the built Worker with.

The Worker's bindings come from wrangler.toml, as `wrangler deploy` would set them:
[vars] become text (or JSON) bindings and every Durable Object binding gets its own
namespace, with SQLite for the classes a migration lists in `new_sqlite_classes`.
`--var NAME=VALUE` overrides a variable, `--var-file NAME=PATH` embeds a file as one.

Each `--instance PORT:DISK_DIR` adds one copy of the Worker listening on
127.0.0.1:PORT, with its Durable Object storage in DISK_DIR. Each `--front PORT` adds
a stateless copy on PORT, its own isolate, whose Durable Object bindings reach the
first instance's objects: several isolates metering the same customers. `--bare-js PORT:UPSTREAM`
adds the baseline every target is held against: a JavaScript Worker of a few lines that
forwards each request to UPSTREAM and returns its answer, metering nothing. Binding kinds this script
does not know (KV, R2, queues, ...) are an error rather than silently left out.

usage: workerd_config.py --wrangler wrangler.toml --js NAME --wasm NAME
           --instance PORT:DIR [--instance ...] [--front PORT ...] [--bare-js PORT:UPSTREAM]
           [--var N=V ...] [--var-file N=PATH ...]
The module files are expected in dist/ beside the written config.
"""

import argparse
import json
import sys
import tomllib

KNOWN_KEYS = {
    "name", "main", "compatibility_date", "compatibility_flags", "vars",
    "durable_objects", "migrations", "triggers", "build", "workers_dev", "route",
    "routes", "observability", "account_id", "limits", "placement", "keep_vars",
    "minify", "no_bundle", "rules", "find_additional_modules", "base_dir",
    "preserve_file_names", "upload_source_maps", "logpush", "tail_consumers", "dev",
    "send_metrics", "env",
}


# The baseline: what any Worker in front of the provider costs at least.
BARE_JS = """export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.UPSTREAM_URL + url.pathname + url.search, {
      method: request.method,
      headers: { "content-type": request.headers.get("content-type") || "application/json" },
      body: request.method === "GET" ? undefined : await request.arrayBuffer(),
    });
  },
};
"""


def text(s: str) -> str:
    """A capnp text literal (JSON string escapes are valid capnp escapes for these)."""
    return json.dumps(s, ensure_ascii=False)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wrangler", required=True)
    ap.add_argument("--js", required=True)
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--instance", action="append", required=True)
    ap.add_argument("--var", action="append", default=[])
    ap.add_argument("--var-file", action="append", default=[])
    ap.add_argument("--front", action="append", default=[])
    ap.add_argument("--bare-js")
    args = ap.parse_args()

    with open(args.wrangler, "rb") as f:
        cfg = tomllib.load(f)
    unknown = sorted(set(cfg) - KNOWN_KEYS)
    if unknown:
        print(f"workerd_config.py: wrangler.toml has settings this bench does not "
              f"reproduce: {', '.join(unknown)}", file=sys.stderr)
        return 1

    bindings = []
    object_bindings = []
    overrides = dict(v.split("=", 1) for v in args.var)
    files = dict(v.split("=", 1) for v in args.var_file)
    names = list(cfg.get("vars", {})) + [n for n in overrides if n not in cfg.get("vars", {})]
    names += [n for n in files if n not in names]
    for name in names:
        if name in files:
            bindings.append(f"(name = {text(name)}, text = embed {text(files[name])})")
        elif name in overrides:
            bindings.append(f"(name = {text(name)}, text = {text(overrides[name])})")
        else:
            value = cfg["vars"][name]
            if isinstance(value, str):
                bindings.append(f"(name = {text(name)}, text = {text(value)})")
            else:
                bindings.append(f"(name = {text(name)}, json = {text(json.dumps(value))})")

    sqlite = {c for m in cfg.get("migrations", []) for c in m.get("new_sqlite_classes", [])}
    classes = []
    for b in cfg.get("durable_objects", {}).get("bindings", []):
        if b.get("script_name"):
            print(f"workerd_config.py: Durable Object binding {b['name']} lives in another "
                  "script; not supported", file=sys.stderr)
            return 1
        bindings.append(f"(name = {text(b['name'])}, durableObjectNamespace = {text(b['class_name'])})")
        object_bindings.append((b["name"], b["class_name"]))
        if b["class_name"] not in classes:
            classes.append(b["class_name"])

    flags = ", ".join(text(f) for f in cfg.get("compatibility_flags", []))

    def edge_worker(name, worker_bindings, extra):
        """The built Worker as one workerd worker (its own isolate)."""
        return [
            f"const {name} :Workerd.Worker = (",
            "  modules = [",
            f"    (name = {text(args.js)}, esModule = embed {text('dist/' + args.js)}),",
            f"    (name = {text(args.wasm)}, wasm = embed {text('dist/' + args.wasm)}),",
            "  ],",
            f"  compatibilityDate = {text(cfg['compatibility_date'])},",
            f"  compatibilityFlags = [{flags}],",
            "  bindings = [",
            *(f"    {b}," for b in worker_bindings),
            "  ],",
            *extra,
            '  globalOutbound = "loopback",',
            ");",
            "",
        ]
    out = ['using Workerd = import "/workerd/workerd.capnp";', ""]
    services, sockets, workers = [], [], []
    for i, spec in enumerate(args.instance):
        port, disk = spec.split(":", 1)
        services.append(f'(name = "worker{i}", worker = .worker{i})')
        services.append(f'(name = "disk{i}", disk = (path = {text(disk)}, writable = true))')
        sockets.append(f'(name = "http{i}", address = "127.0.0.1:{port}", http = (), service = "worker{i}")')
        namespaces = ", ".join(
            f'(className = {text(c)}, uniqueKey = "edgemeter-bench-{i}-{c}", enableSql = {str(c in sqlite).lower()})'
            for c in classes)
        workers += edge_worker(f"worker{i}", bindings, [
            f"  durableObjectNamespaces = [{namespaces}],",
            f'  durableObjectStorage = (localDisk = "disk{i}"),',
        ])
    # Fronts: the same modules and variables, the objects of worker0.
    plain = [b for b in bindings if "durableObjectNamespace" not in b]
    remote = [f"(name = {text(n)}, durableObjectNamespace = (className = {text(c)}, serviceName = \"worker0\"))"
              for n, c in object_bindings]
    for j, port in enumerate(args.front):
        services.append(f'(name = "front{j}", worker = .front{j})')
        sockets.append(f'(name = "front{j}", address = "127.0.0.1:{port}", http = (), service = "front{j}")')
        workers += edge_worker(f"front{j}", plain + remote, [])
    if args.bare_js:
        port, upstream = args.bare_js.split(":", 1)
        services.append('(name = "barejs", worker = .barejs)')
        sockets.append(f'(name = "barejs", address = "127.0.0.1:{port}", http = (), service = "barejs")')
        workers += [
            "const barejs :Workerd.Worker = (",
            f'  modules = [(name = "bare.js", esModule = {text(BARE_JS)})],',
            f"  compatibilityDate = {text(cfg['compatibility_date'])},",
            f"  bindings = [(name = \"UPSTREAM_URL\", text = {text(upstream)})],",
            '  globalOutbound = "loopback",',
            ");",
            "",
        ]
    services.append('(name = "loopback", network = (allow = ["local", "private", "public"]))')
    out += [
        "const config :Workerd.Config = (",
        "  services = [",
        *(f"    {s}," for s in services),
        "  ],",
        "  sockets = [",
        *(f"    {s}," for s in sockets),
        "  ],",
        ");",
        "",
        *workers,
    ]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
