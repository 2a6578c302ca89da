//! Tests of `request`.
use super::*;

#[test]
fn stream_gets_include_usage_injected_and_remembers_the_client_did_not_ask() {
    let body = br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hello there"}]}"#;
    let p = prepare("/v1/chat/completions", body).unwrap();
    assert!(p.stream && !p.client_wants_usage);
    let sent: Value = serde_json::from_slice(p.upstream_body.as_ref().unwrap()).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["messages"][0]["content"], "Hello there");
    // "user" (4) + "Hello there" (11) = 15 chars -> 4 tokens, + 8 + 4 per message
    assert_eq!(p.input_estimate, 16);
    // bound: the messages as JSON, punctuation counted twice: [] 2 + 2 per item,
    // {} 2 + key + 6 per key ("role" 10, "content" 13), strings + 2 ("user" 6,
    // "Hello there" 13) = 4 + 25 + 19 = 48 bytes, + 12 overhead
    assert_eq!(p.input_reserve, 60);
}

#[test]
fn client_that_asked_for_usage_is_forwarded_as_parsed() {
    let body =
        br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let p = prepare("/v1/chat/completions", body).unwrap();
    assert!(p.client_wants_usage);
    let sent: Value = serde_json::from_slice(p.upstream_body.as_ref().unwrap()).unwrap();
    assert_eq!(sent, serde_json::from_slice::<Value>(body).unwrap());
    // the parsed object, not the client's bytes: white space and duplicates are gone
    let spaced = br#"{ "model": "m", "model": "n", "messages": [] }"#;
    let plain = prepare("/v1/chat/completions", spaced).unwrap();
    assert!(!plain.stream);
    assert_eq!(
        plain.upstream_body.unwrap(),
        br#"{"messages":[],"model":"n"}"#
    );
}

#[test]
fn output_cap_comes_from_any_spelling() {
    let p = prepare(
        "/v1/chat/completions",
        br#"{"model":"m","max_completion_tokens":77}"#,
    );
    assert_eq!(p.unwrap().output_cap, Some(77));
    let p = prepare("/v1/messages", br#"{"model":"m","max_tokens":5}"#).unwrap();
    assert_eq!((p.meter, p.output_cap), (Meter::Messages, Some(5)));
    let e = prepare("/v1/completions", br#"{"model":"m","max_tokens":-1}"#).unwrap_err();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("max_tokens")));
}

#[test]
fn bad_bodies_are_rejected_in_openai_shape() {
    let e = prepare("/v1/chat/completions", b"{not json").unwrap_err();
    assert_eq!((e.status, e.code.as_deref()), (400, Some("invalid_json")));
    let e = prepare("/v1/chat/completions", b"[1,2]").unwrap_err();
    assert_eq!(e.status, 400);
    let e = prepare("/v1/embeddings", br#"{"input":"x"}"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("model"));
    let e = prepare(
        "/v1/chat/completions",
        br#"{"model":"m","stream":true,"stream_options":3}"#,
    );
    assert_eq!(e.unwrap_err().param.as_deref(), Some("stream_options"));
}

#[test]
fn inline_images_count_per_image_not_per_byte_and_token_arrays_count() {
    let with_image = |data: &str| {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{data}"}}}}]}}]}}"#
        );
        prepare("/v1/chat/completions", body.as_bytes()).unwrap()
    };
    let (big, small) = (with_image(&"A".repeat(100_000)), with_image("AA"));
    assert_eq!(
        (big.input_estimate, big.input_reserve),
        (small.input_estimate, small.input_reserve)
    );
    // "user" and "image_url" (13 chars) -> 4 tokens + one image at 765 + 12 overhead
    assert_eq!(big.input_estimate, 781);
    // text bound: the JSON around the image (77 bytes) + 12; the image's URL is
    // bounded per model once the model is known (`bounds::apply`)
    assert_eq!((big.input_reserve, big.media.images), (89, 1));
    let p = prepare("/v1/embeddings", br#"{"model":"m","input":[[1,2,3]]}"#).unwrap();
    // three token ids -> 3 tokens + 8; embeddings reserve no output
    assert_eq!(
        (p.input_estimate, p.input_reserve, p.output_cap),
        (11, 11, Some(0))
    );
}

#[test]
fn every_generated_choice_is_reserved() {
    let ask = |extra: &str| {
        let body = format!(r#"{{"model":"m","prompt":"hi","max_tokens":50{extra}}}"#);
        prepare("/v1/completions", body.as_bytes()).map(|p| p.ask())
    };
    assert_eq!(ask("").unwrap().choices, 1);
    assert_eq!(ask(r#","n":4"#).unwrap().choices, 4);
    // all best_of candidates are generated, n of them returned
    assert_eq!(ask(r#","n":2,"best_of":5"#).unwrap().choices, 5);
    let e = ask(r#","n":0"#).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("n"));
    assert!(ask(r#","best_of":100000"#).is_err());
    let plan = crate::catalog::Plan::default();
    // 50 tokens per choice * 4 choices
    let reserve = crate::counter_state::reserve_of(&plan, &ask(r#","n":4"#).unwrap());
    assert_eq!(reserve.output, 200);
    let huge = crate::request::AdmitAsk {
        output_cap: Some(u64::MAX),
        choices: 4,
        ..ask("").unwrap()
    };
    assert_eq!(
        crate::counter_state::reserve_of(&plan, &huge).output,
        u64::MAX
    );
}

#[test]
fn text_that_starts_like_a_data_url_stays_in_the_bound() {
    let text = format!("data: {}", "x".repeat(10_000));
    let body = serde_json::json!({"model": "m", "input": text}).to_string();
    let p = prepare("/v1/responses", body.as_bytes()).unwrap();
    assert!(p.input_reserve >= 10_006, "{}", p.input_reserve);
}

#[test]
fn output_cap_is_added_under_the_field_each_api_reads() {
    let body = br#"{"model":"m","messages":[]}"#;
    let capped = |m| {
        serde_json::from_slice::<Value>(
            &with_output_cap(m, body, 64, "max_completion_tokens").unwrap(),
        )
        .unwrap()
    };
    assert_eq!(capped(Meter::ChatCompletions)["max_completion_tokens"], 64);
    assert_eq!(capped(Meter::Messages)["max_tokens"], 64);
    assert_eq!(capped(Meter::Responses)["max_output_tokens"], 64);
    assert_eq!(
        with_output_cap(Meter::Embeddings, body, 64, "max_tokens"),
        None
    );
}

#[test]
fn a_cap_spliced_in_gives_the_object_parsing_would() {
    let parsed = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();
    let bodies: [&[u8]; 6] = [
        br#"{"model":"m","messages":[]}"#,
        br#"{}"#,
        br#"{ }"#,
        br#" {"model":"m"}"#,
        br#"{"model":"m","max_tokens":9}"#,
        br#"{"model":"m","tools":[{"parameters":{"max_completion_tokens":1}}]}"#,
    ];
    for body in bodies {
        let Ok(Value::Object(mut json)) = serde_json::from_slice::<Value>(body) else {
            panic!("a test body is an object");
        };
        json.insert("max_completion_tokens".into(), Value::from(64));
        let capped = with_output_cap(Meter::ChatCompletions, body, 64, "max_completion_tokens");
        assert_eq!(parsed(&capped.unwrap()), Value::Object(json), "{body:?}");
    }
    // A body naming a cap anywhere is parsed, not spliced: no member is doubled.
    let named = br#"{"model":"m","max_tokens":9}"#;
    assert_eq!(splice_cap(named, "max_completion_tokens", 64), None);
    assert!(splice_cap(br#"{"model":"m"}"#, "max_tokens", 64).is_some());
    let text = with_output_cap(Meter::ChatCompletions, named, 64, "max_tokens").unwrap();
    assert_eq!(
        String::from_utf8(text)
            .unwrap()
            .matches("max_tokens")
            .count(),
        1
    );
}

#[test]
fn other_paths_are_plain_requests() {
    let p = prepare("/v1/models", b"").unwrap();
    assert_eq!(
        (p.meter, p.meter.by_tokens(), p.model.as_str()),
        (Meter::Request, false, "")
    );
}
