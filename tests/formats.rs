//! The flush formats checked by real parsers: CloudEvents batches by the CloudEvents
//! Python SDK (installed by scripts/setup into target/sdk-venv).

use edgemeter::flush::{record_id, render, Batch, Format, UsageRecord};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn record(customer: &str, tokens: u64) -> UsageRecord {
    UsageRecord {
        id: record_id(
            customer,
            1_764_547_200_000,
            "chat.completions",
            "gpt-4o-mini",
            (1, 3),
            false,
        ),
        customer: customer.into(),
        period_start_ms: 1_764_547_200_000,
        period_end_ms: 1_767_225_600_000,
        meter: "chat.completions".into(),
        model: "gpt-4o-mini".into(),
        seq_from: 1,
        seq_to: 3,
        requests: 3,
        input_tokens: tokens,
        output_tokens: 12,
        cache_write_tokens: 4,
        cache_write_1h_tokens: 2,
        audio_tokens: 1,
        plan: "open".into(),
        recorded_at_ms: 1_764_600_000_123,
        ..UsageRecord::default()
    }
}

/// Runs the SDK's parser on a body; returns (success, output).
fn parse_with_sdk(body: &[u8]) -> (bool, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/sdk-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    let mut child = Command::new(python)
        .arg(root.join("tests/sdk/check_cloudevents.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn cloudevents_batches_parse_with_the_cloudevents_sdk() {
    let batch = Batch::new(vec![record("acme", 100), record("bolt", 7)]);
    let (content_type, body) = render(Format::CloudEvents, &batch, 1_764_600_000_000);
    assert_eq!(content_type, "application/cloudevents-batch+json");
    let (ok, out) = parse_with_sdk(&body);
    assert!(ok, "the SDK refused the batch:\n{out}");
    let ids: Vec<&str> = out.lines().collect();
    let mut expected: Vec<&str> = batch.records.iter().map(|r| r.id.as_str()).collect();
    expected.sort();
    assert_eq!(ids, expected);

    // The check can fail: an event without a source is refused.
    let mut broken: serde_json::Value = serde_json::from_slice(&body).unwrap();
    broken[0].as_object_mut().unwrap().remove("source");
    let (ok, out) = parse_with_sdk(broken.to_string().as_bytes());
    assert!(!ok && out.contains("source"), "{out}");
}
