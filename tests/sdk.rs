//! The official OpenAI and Anthropic Python SDKs work unchanged through edgemeter.
//! `scripts/setup` installs them into `target/sdk-venv`.

mod support;

use serde_json::json;
use std::path::PathBuf;
use support::{admin, customer, meter, settled_usage, shared};

#[test]
fn official_sdks_work_unchanged() {
    let env = shared();
    let port = env.worker.port;
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sdk-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    let (id, live) = customer(port, "open");
    let test = admin(
        port,
        "POST",
        &format!("/admin/v1/customers/{id}/keys"),
        &json!({"mode": "test"}),
    );
    let test = test.json()["key"].as_str().unwrap().to_string();
    let (_, tight) = customer(port, "tpm");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/check_sdks.py");
    let out = std::process::Command::new(python)
        .args([
            script.to_str().unwrap(),
            &port.to_string(),
            &live,
            &test,
            &tight,
        ])
        .output()
        .expect("run the SDK checks");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "SDK checks failed:\n{text}");

    // Everything the SDKs did was metered: 4 chat calls upstream, and 2 in the sandbox
    // on the test key's own counter, apart from live usage.
    let usage = settled_usage(port, &live);
    assert_eq!(meter(&usage, "messages", "claude-test")["requests"], 0);
    assert_eq!(
        meter(&usage, "chat.completions", "gpt-4o-mini")["requests"],
        4
    );
    assert_eq!(
        meter(&usage, "embeddings", "text-embedding-3-small")["requests"],
        1
    );
    let claude = meter(&settled_usage(port, &test), "messages", "claude-test");
    assert_eq!(
        (claude["requests"].as_u64(), claude["output"].as_u64()),
        (Some(2), Some(8))
    );
}
