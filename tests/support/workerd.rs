//! Runs the built wasm under plain `workerd` as several isolates: one service that hosts
//! the Durable Objects, and stateless front services (each its own isolate) bound to
//! the same objects, as a deployment's many isolates are. The config is written by
//! `scripts/bench.d/workerd_config.py`, the bundle by `wrangler deploy --dry-run`.

use super::wrangler::{scratch, ADMIN_TOKEN, KEY_SECRET, UPSTREAM_KEY};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Workerd {
    /// The service that hosts the objects (admin calls go here).
    pub port: u16,
    /// The stateless isolates.
    pub fronts: Vec<u16>,
    child: Child,
    log: PathBuf,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The bundle wrangler would deploy, in `dir/dist`: (JS module, wasm module).
fn bundle(dir: &Path) -> (String, String) {
    let dist = dir.join("dist");
    let wrangler = root().join("node_modules/.bin/wrangler");
    let mut cmd = Command::new(wrangler);
    cmd.args(["deploy", "--dry-run", "--outdir"]).arg(&dist);
    cmd.current_dir(root())
        .env("WRANGLER_SEND_METRICS", "false");
    run(&mut cmd, "wrangler deploy --dry-run");
    let (mut js, mut wasm) = (String::new(), String::new());
    for e in std::fs::read_dir(&dist).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".wasm") {
            wasm = name;
        } else if name.ends_with(".js") || name.ends_with(".mjs") {
            js = name;
        }
    }
    assert!(
        !js.is_empty() && !wasm.is_empty(),
        "bundle in {}",
        dist.display()
    );
    (js, wasm)
}

impl Workerd {
    /// Starts one object host and `fronts` stateless isolates, all on `upstream`.
    pub fn start(upstream: &str, catalog: &str, fronts: usize) -> Workerd {
        let dir = scratch("workerd");
        let (js, wasm) = bundle(&dir);
        std::fs::write(dir.join("catalog.json"), catalog).unwrap();
        std::fs::create_dir_all(dir.join("do")).unwrap();
        let port = free_port();
        let front_ports: Vec<u16> = (0..fronts).map(|_| free_port()).collect();
        let mut cmd = Command::new("python3");
        cmd.arg(root().join("scripts/bench.d/workerd_config.py"));
        cmd.args(["--wrangler", root().join("wrangler.toml").to_str().unwrap()]);
        cmd.args(["--js", &js, "--wasm", &wasm]);
        cmd.args([
            "--instance",
            &format!("{port}:{}", dir.join("do").display()),
        ]);
        for p in &front_ports {
            cmd.args(["--front", &p.to_string()]);
        }
        for (k, v) in [
            ("UPSTREAM_URL", upstream),
            ("UPSTREAM_API_KEY", UPSTREAM_KEY),
            ("ANTHROPIC_UPSTREAM_URL", "http://127.0.0.1:1"),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("KEY_SECRET", KEY_SECRET),
        ] {
            cmd.args(["--var", &format!("{k}={v}")]);
        }
        cmd.args(["--var-file", "CATALOG=catalog.json"]);
        let config = run(&mut cmd, "workerd_config.py");
        std::fs::write(dir.join("config.capnp"), config).unwrap();
        let log = dir.join("workerd.log");
        let workerd = root().join("node_modules/@cloudflare/workerd-linux-64/bin/workerd");
        // A watchdog kills workerd when the test process exits.
        let script = format!(
            "'{workerd}' serve config.capnp --experimental >'{log}' 2>&1 & w=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $w 2>/dev/null; do sleep 0.5; done; kill -- -$$",
            workerd = workerd.display(),
            log = log.display(),
            parent = std::process::id(),
        );
        let child = Command::new("setsid")
            .args(["bash", "-c", &script])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn workerd");
        let w = Workerd {
            port,
            fronts: front_ports,
            child,
            log,
        };
        for p in std::iter::once(w.port).chain(w.fronts.iter().copied()) {
            w.wait_ready(p);
        }
        w
    }

    fn wait_ready(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let r = super::http::request(port, "GET", "/healthz", &[], b"");
                if r.status == 200 && r.text() == "ok" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("workerd did not answer on {port} in 60 s:\n{text}");
    }
}

impl Drop for Workerd {
    fn drop(&mut self) {
        let pgid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}
