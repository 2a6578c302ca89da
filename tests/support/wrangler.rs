//! Runs the built wasm under `wrangler dev` (workerd) on a free loopback port, with its
//! own config and `--persist-to` directory. The process group is killed on `stop`, and a
//! watchdog kills it when the test process exits, so no server outlives the tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const UPSTREAM_KEY: &str = "sk-upstream-test-secret";
/// The MAC secret customer keys are signed with.
pub const KEY_SECRET: &str = "test-key-secret";

pub struct Worker {
    pub port: u16,
    child: Child,
    log: PathBuf,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under the target dir for one worker's config, state and log.
pub fn scratch(name: &str) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = root()
        .join("target/it")
        .join(format!("{name}-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies the built worker into `dir`, so a rebuild during the tests does not make
/// wrangler reload (and drop in-flight work) under them.
fn copy_build(dir: &Path) -> PathBuf {
    let build = root().join("build");
    assert!(
        build.join("worker/shim.mjs").exists(),
        "build/ is missing: run scripts/build first (scripts/test does)"
    );
    let to = dir.join("build");
    std::fs::create_dir_all(to.join("worker")).unwrap();
    for f in ["index.js", "index_bg.wasm", "worker/shim.mjs"] {
        std::fs::copy(build.join(f), to.join(f)).unwrap_or_else(|e| panic!("copy build/{f}: {e}"));
    }
    to.join("worker/shim.mjs")
}

fn config(dir: &Path, upstream: &str, catalog: &str, vars: &[(&str, &str)]) -> PathBuf {
    let shim = if dir.join("build/worker/shim.mjs").exists() {
        dir.join("build/worker/shim.mjs")
    } else {
        copy_build(dir)
    };
    let toml = format!(
        r#"name = "edgemeter-test"
main = "{shim}"
compatibility_date = "2026-04-01"

[vars]
UPSTREAM_URL = "{upstream}"
UPSTREAM_API_KEY = "{UPSTREAM_KEY}"
{anthropic}
ADMIN_TOKEN = "{ADMIN_TOKEN}"
KEY_SECRET = "{KEY_SECRET}"
MAX_BODY_BYTES = "65536"
CATALOG = '''{catalog}'''
{extra}
[triggers]
crons = ["* * * * *"]

[durable_objects]
bindings = [
  {{ name = "USAGE_COUNTER", class_name = "UsageCounter" }},
  {{ name = "FLUSH_SHARD", class_name = "FlushShard" }},
  {{ name = "LEDGER", class_name = "Ledger" }},
  {{ name = "INVOICE_NUMBERS", class_name = "InvoiceNumbers" }},
]

[[migrations]]
tag = "v1"
new_sqlite_classes = ["UsageCounter", "FlushShard", "Ledger"]

[[migrations]]
tag = "v2"
new_sqlite_classes = ["InvoiceNumbers"]
"#,
        shim = shim.display(),
        // a test may point the Anthropic route at its own fake
        anthropic = if vars.iter().any(|(k, _)| *k == "ANTHROPIC_UPSTREAM_URL") {
            String::new()
        } else {
            "ANTHROPIC_UPSTREAM_URL = \"http://127.0.0.1:1\"".to_string()
        },
        extra = vars
            .iter()
            .map(|(k, v)| format!("{k} = {}\n", toml_string(v)))
            .collect::<String>(),
    );
    let path = dir.join("wrangler.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// `value` as a TOML string: literal, unless it holds a control character, which only
/// a basic string's escapes can carry.
fn toml_string(value: &str) -> String {
    if !value.chars().any(|c| c.is_control() && c != '\t') {
        return format!("'''{value}'''");
    }
    let escaped: String = value
        .chars()
        .map(|c| match c {
            '"' | '\\' => format!("\\{c}"),
            c if c.is_control() => format!("\\u{:04X}", u32::from(c)),
            c => c.to_string(),
        })
        .collect();
    format!("\"{escaped}\"")
}

impl Worker {
    /// Starts a worker whose state lives in `dir` and waits until it answers.
    pub fn start(dir: &Path, upstream: &str, catalog: &str) -> Worker {
        Worker::start_with(dir, upstream, catalog, &[])
    }

    /// Like `start`, with extra `[vars]`.
    pub fn start_with(dir: &Path, upstream: &str, catalog: &str, vars: &[(&str, &str)]) -> Worker {
        // A free port can be taken by a parallel test between finding and binding it:
        // that start is tried again on other ports, a few times.
        for _ in 0..3 {
            match Worker::try_start(dir, upstream, catalog, vars) {
                Ok(w) => return w,
                Err(tail) if tail.contains("Address already in use") => continue,
                Err(tail) => panic!("wrangler exited:\n{tail}"),
            }
        }
        panic!("wrangler found no free port in three tries");
    }

    fn try_start(
        dir: &Path,
        upstream: &str,
        catalog: &str,
        vars: &[(&str, &str)],
    ) -> Result<Worker, String> {
        let port = free_port();
        let cfg = config(dir, upstream, catalog, vars);
        let log = dir.join(format!("wrangler-{port}.log"));
        let wrangler = root().join("node_modules/.bin/wrangler");
        let script = format!(
            "'{wrangler}' dev --config '{cfg}' --local --ip 127.0.0.1 --port {port} --persist-to '{state}' \
             --test-scheduled --inspector-port {inspector} --show-interactive-dev-session=false >'{log}' 2>&1 & w=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $w 2>/dev/null; do sleep 0.5; done; kill -- -$$",
            wrangler = wrangler.display(),
            cfg = cfg.display(),
            state = dir.join("state").display(),
            log = log.display(),
            parent = std::process::id(),
            inspector = free_port(),
        );
        let child = Command::new("setsid")
            .args(["bash", "-c", &script])
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wrangler");
        let mut w = Worker { port, child, log };
        w.wait_ready()?;
        Ok(w)
    }

    /// Waits until the Worker answers; the log's tail when wrangler exited first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("({status}) {}", self.log_tail()));
            }
            // 503 is a running Worker reporting settings that cannot work. Its own
            // answer, not another test's server that took the port meanwhile. A reset
            // while wrangler is still starting is not an answer yet.
            let ours = match super::http::try_request(self.port, "GET", "/healthz", &[], b"") {
                Ok(r) if r.status == 200 => r.text() == "ok",
                Ok(r) if r.status == 503 => r.text().contains("problems"),
                _ => false,
            };
            if ours {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "wrangler did not become ready in 90 s:\n{}",
            self.log_tail()
        );
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Kills wrangler and its workerd children, and waits for them.
    pub fn stop(self) {
        self.signal("-TERM");
    }

    /// Kills wrangler and workerd at once (SIGKILL): nothing gets to finish.
    pub fn kill(self) {
        self.signal("-KILL");
    }

    fn signal(mut self, signal: &str) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
        // workerd may hold the port a moment longer
        std::thread::sleep(Duration::from_millis(300));
    }
}
