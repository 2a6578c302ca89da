//! The prompt bound against the shapes an attacker would send: structure without
//! text, payloads hidden behind a media `type`, fields outside the usual prompt ones.
use super::*;
use serde_json::json;

fn size(body: Value) -> PromptSize {
    measure(body.as_object().unwrap())
}

/// At least one token per byte of the body as JSON (every field but the model).
fn at_least_its_bytes(body: Value) {
    let bound = size(body.clone()).bound;
    let mut rest = body.as_object().unwrap().clone();
    rest.remove("model");
    let bytes = Value::Object(rest).to_string().len() as u64;
    assert!(bound >= bytes, "bound {bound} < {bytes} bytes: {body}");
}

#[test]
fn structure_without_text_is_bounded_by_its_bytes() {
    let nulls = vec![Value::Null; 5_000];
    let empties = vec![json!([]); 5_000];
    let floats = vec![json!(1.234_567_890_123_456_7e-300); 500];
    let tool_use = json!({"type": "tool_use", "id": "t1", "name": "f",
        "input": {"a": nulls, "b": empties, "c": floats, "d": [true, false]}});
    let body = json!({"model": "m", "max_tokens": 5,
        "messages": [{"role": "assistant", "content": [tool_use]}]});
    at_least_its_bytes(body);
}

#[test]
fn a_media_type_hides_nothing_but_its_own_payload() {
    let big = "x".repeat(100_000);
    // An audio part without audio data, and an image part with a stowaway field.
    let fake_audio = json!({"type": "input_audio", "x": big});
    let fake_image =
        json!({"type": "image", "source": {"type": "url", "url": "https://x/i.png"}, "x": big});
    for part in [fake_audio, fake_image] {
        let body = json!({"model": "m", "input": [{"role": "user", "content": [part]}]});
        assert!(size(body).bound > 100_000);
    }
    // A real image's data is left to the model's per-image bound.
    let image =
        json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{big}")}});
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [image]}]});
    let s = size(body);
    assert_eq!(s.media.images, 1);
    assert!(s.bound < 1_000, "{}", s.bound);
}

#[test]
fn every_field_a_provider_reads_is_measured() {
    let big = "y".repeat(50_000);
    for field in [
        "functions",
        "response_format",
        "text",
        "suffix",
        "tool_choice",
        "system",
    ] {
        let body = json!({"model": "m", "messages": [], field: {"schema": big}});
        assert!(size(body).bound > 50_000, "{field}");
    }
    // but not what is never prompt
    let body = json!({"model": "m", "messages": [], "metadata": {"k": big}});
    assert!(size(body).bound < 1_000);
}

#[test]
fn only_a_pre_tokenized_prompt_counts_a_token_per_number() {
    let ids = json!({"model": "m", "prompt": [1, 2, 3]});
    assert_eq!(size(ids).bound, 3 + 8);
    let nested = json!({"model": "m", "input": [[1, 2], [3]]});
    assert_eq!(size(nested).bound, 3 + 8);
    // numbers anywhere else are text: 1234567890 is 10 bytes
    let tool = json!({"model": "m", "tools": [{"default": 1_234_567_890}]});
    let s = size(tool);
    assert!(s.bound >= 10 + 600, "{}", s.bound);
}

#[test]
fn tools_add_the_providers_hidden_prompt_and_cache_writes_are_noticed() {
    let plain = size(json!({"model": "m", "messages": []}));
    let tools = size(json!({"model": "m", "messages": [], "tools": [{"name": "f"}]}));
    assert!(tools.bound >= plain.bound + 600);
    assert_eq!(plain.cache_writes, CacheWrites::None);
    let cached = json!({"model": "m", "system": [
        {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]});
    assert_eq!(size(cached).cache_writes, CacheWrites::OneHour);
    let prediction =
        json!({"model": "m", "prediction": {"type": "content", "content": "z".repeat(300)}});
    assert!(size(prediction).prediction_bytes > 300);
}
