use super::*;

fn names(v: &[(String, String)]) -> Vec<&str> {
    v.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn request_headers_pass_by_allowlist() {
    let incoming = [
        ("Content-Type", "application/json"),
        ("OpenAI-Organization", "org-x"),
        ("OpenAI-Project", "proj_x"),
        ("Cookie", "a=b"),
        ("Idempotency-Key", "k"),
        ("x-stainless-lang", "python"),
        ("anthropic-beta", "a,b"),
        ("anthropic-version", "2023-06-01"),
        ("x-test-tag", "t"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let extra = vec!["x-test-tag".to_string()];
    let beta = vec!["b".to_string()];
    let openai = HeaderPolicy {
        extra: &extra,
        anthropic_beta: &beta,
        anthropic: false,
    };
    let out = forward_request(incoming.clone(), &openai);
    assert_eq!(names(&out), ["content-type", "x-test-tag"]);
    let anthropic = HeaderPolicy {
        anthropic: true,
        ..openai
    };
    let out = forward_request(incoming, &anthropic);
    assert_eq!(
        out,
        [
            ("content-type", "application/json"),
            ("anthropic-beta", "b"),
            ("anthropic-version", "2023-06-01"),
            ("x-test-tag", "t")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
}

#[test]
fn response_headers_keep_no_account_detail() {
    let upstream = [
        ("content-type", "application/json"),
        ("openai-organization", "org-1"),
        ("openai-project", "proj_1"),
        ("x-ratelimit-remaining-requests", "9"),
        ("anthropic-organization-id", "o"),
        ("set-cookie", "c"),
        ("x-request-id", "req_1"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(
        names(&pass_response(upstream)),
        ["content-type", "x-request-id"]
    );
}

#[test]
fn provider_errors_lose_account_details() {
    let e = provider_error(401, b"{}", None);
    assert_eq!(
        (e.status, e.code.as_deref()),
        (502, Some("upstream_auth_error"))
    );
    let e = provider_error(429, b"{}", Some("7"));
    assert_eq!((e.status, e.retry_after_s), (503, Some(7)));
    let leaky = br#"{"error":{"message":"Invalid value for 'temperature' in project proj_9","type":"invalid_request_error","code":"invalid_value","param":"temperature"}}"#;
    let e = provider_error(400, leaky, None);
    assert_eq!((e.status, e.kind), (400, "invalid_request_error"));
    assert_eq!(
        (e.code.as_deref(), e.param.as_deref()),
        (Some("invalid_value"), Some("temperature"))
    );
    assert!(!e.message.contains("proj_9"), "{}", e.message);
    let clean = br#"{"error":{"message":"'messages' is too short","type":"invalid_request_error","code":null,"param":"messages"}}"#;
    assert_eq!(
        provider_error(400, clean, None).message,
        "'messages' is too short"
    );
    let e = provider_error(500, b"not json", None);
    assert_eq!((e.status, e.kind), (502, "api_error"));
}

/// Header names a client might send: every credential and account selector, the
/// allowed ones, the operator's extra, and arbitrary names, in any case.
fn header_name() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let known = prop::sample::select(vec![
        "authorization",
        "x-api-key",
        "cookie",
        "host",
        "openai-organization",
        "openai-project",
        "idempotency-key",
        "anthropic-beta",
        "anthropic-version",
        "content-type",
        "accept",
        "x-extra",
        "x-stainless-os",
        "cf-connecting-ip",
        "x-forwarded-for",
        "user-agent",
        "openai-beta",
    ])
    .prop_map(str::to_string);
    (prop_oneof![known, "[a-zA-Z-]{1,12}"], any::<bool>()).prop_map(|(n, upper)| {
        if upper {
            n.to_ascii_uppercase()
        } else {
            n
        }
    })
}

proptest::proptest! {
    /// Whatever headers a client sends, only the allowlisted names go upstream, and
    /// `anthropic-beta` only with the values the operator listed.
    #[test]
    fn only_allowlisted_headers_are_forwarded(
        headers in proptest::collection::vec((header_name(), "[a-z0-9,-]{0,12}"), 0..12),
        anthropic in proptest::prelude::any::<bool>(),
    ) {
        let extra = vec!["x-extra".to_string()];
        let beta = vec!["b1".to_string()];
        let policy = HeaderPolicy { extra: &extra, anthropic_beta: &beta, anthropic };
        for (name, value) in forward_request(headers, &policy) {
            let allowed = REQUEST_ALLOWED.contains(&name.as_str())
                || name == "x-extra"
                || (anthropic && name == "anthropic-version")
                || (anthropic && name == "anthropic-beta" && value.split(',').all(|v| v == "b1"));
            proptest::prop_assert!(allowed, "{name}: {value} was forwarded");
        }
    }
}

#[test]
fn a_provider_refusal_costs_nothing() {
    assert!(!refused_by_provider(200) && !refused_by_provider(399));
    assert!(refused_by_provider(400) && refused_by_provider(429) && refused_by_provider(503));
}

#[test]
fn reading_only_the_named_headers_forwards_what_reading_all_would() {
    let extra = vec!["x-trace".to_string(), "Authorization".to_string()];
    let betas = vec!["tools-2024".to_string()];
    let sent: Vec<(String, String)> = [
        ("content-type", "application/json"),
        ("accept", "*/*"),
        ("authorization", "Bearer em_live_x"),
        ("user-agent", "OpenAI/Python"),
        ("x-stainless-os", "Linux"),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "tools-2024,other"),
        ("x-trace", "t1"),
        ("openai-organization", "org-x"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for anthropic in [false, true] {
        let policy = HeaderPolicy {
            extra: &extra,
            anthropic_beta: &betas,
            anthropic,
        };
        let named: Vec<String> = request_names(&policy).map(str::to_lowercase).collect();
        let read = sent.iter().filter(|(k, _)| named.contains(k));
        let all = forward_request(sent.clone(), &policy);
        assert_eq!(forward_request(read.cloned(), &policy), all);
        assert!(all.iter().any(|(k, _)| k == "x-trace"));
        assert_eq!(all.iter().any(|(k, _)| k == "anthropic-beta"), anthropic);
    }
    for name in RESPONSE_ALLOWED {
        assert!(RESPONSE_READ.contains(&name));
    }
}

#[test]
fn redirects_and_oversized_answers_are_bad_gateways() {
    assert!(redirect_refused(200).is_ok() && redirect_refused(404).is_ok());
    for status in [301, 302, 307, 308] {
        let e = redirect_refused(status).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_deref()),
            (502, Some("upstream_redirect"))
        );
    }
    let e = too_large_answer(10);
    assert_eq!(
        (e.status, e.code.as_deref()),
        (502, Some("upstream_too_large"))
    );
    assert!(e.message.contains("10-byte"));
}
