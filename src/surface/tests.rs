use super::*;
use proptest::prelude::*;

#[test]
fn metered_routes_match_exactly() {
    let r = route("POST", "/v1/chat/completions", "").unwrap();
    assert_eq!(r.handling, Handling::Metered(Meter::ChatCompletions));
    assert_eq!(r.upstream_target(), "/v1/chat/completions");
    for alias in [
        "/v1/chat/%63ompletions",
        "/v1/chat/completions/",
        "/v1//chat/completions",
        "/v1/Chat/completions",
        "/v1/chat/./completions",
        "/v1/chat/completions;x",
        "/v2/chat/completions",
        "/v1/fine_tuning/jobs",
        "/v1/batches",
        "/v1/realtime/client_secrets",
        "/v1/responses/compact",
    ] {
        let e = route("POST", alias, "").unwrap_err();
        assert_eq!(
            (e.status, e.code.as_deref()),
            (404, Some("unknown_route")),
            "{alias}"
        );
    }
    assert_eq!(
        route("GET", "/v1/chat/completions", "").unwrap_err().status,
        404
    );
}

#[test]
fn owned_routes_carry_the_resource_and_allowlisted_query() {
    let r = route(
        "GET",
        "/v1/responses/resp_1/input_items",
        "limit=2&include%5B%5D=a+b",
    )
    .unwrap();
    assert_eq!(r.owned(), Some((ResourceKind::Response, "resp_1")));
    assert_eq!(
        r.upstream_target(),
        "/v1/responses/resp_1/input_items?limit=2&include%5B%5D=a%20b"
    );
    let e = route("GET", "/v1/responses/resp_1", "stream=true").unwrap_err();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("stream")));
    let d = route("DELETE", "/v1/files/file-9", "").unwrap();
    assert_eq!(
        d.handling,
        Handling::Owned {
            kind: ResourceKind::File,
            id: "file-9".into(),
            deletes: true
        }
    );
    assert_eq!(route("GET", "/v1/files/..", "").unwrap_err().status, 404);
    assert_eq!(route("GET", "/v1/files/a%2Fb", "").unwrap_err().status, 404);
}

#[test]
fn urls_split_as_spelled() {
    assert_eq!(split_url("http://h:1/v1//x?a=b#f"), ("/v1//x", "a=b"));
    assert_eq!(
        split_url("https://h/v1/chat/%63ompletions"),
        ("/v1/chat/%63ompletions", "")
    );
}

/// Path segments a client might try: real route words, ids, encodings and dot tricks.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "chat",
            "completions",
            "embeddings",
            "responses",
            "messages",
            "models",
            "files",
            "content",
            "input_items",
            "batches",
            "fine_tuning",
            "jobs",
            "realtime",
            "",
            ".",
            "..",
            "%63ompletions",
            "Chat",
            "file-1",
            "resp_1",
            "vector_stores",
            "assistants",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z0-9_%./-]{0,8}",
    ]
}

proptest! {
    /// Whatever path, method and query a client sends, a request is forwarded only when
    /// the table lists its method and exact path shape, and only the listed query names
    /// go upstream.
    #[test]
    fn only_listed_routes_are_forwarded(
        method in prop::sample::select(vec!["GET", "POST", "DELETE", "PUT", "PATCH"]),
        segs in prop::collection::vec(segment(), 0..5),
        trailing in any::<bool>(),
        query in prop::collection::vec(("[a-z_%5BD]{1,8}", "[a-z0-9%]{0,4}"), 0..3),
    ) {
        let mut path = format!("/v1/{}", segs.join("/"));
        if trailing { path.push('/'); }
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let q = q.join("&");
        if let Ok(r) = route(method, &path, &q) {
            let listed = ROUTES.iter().find(|spec| {
                spec.method == method
                    && path.strip_prefix("/v1/").is_some_and(|rest| {
                        let parts: Vec<&str> = rest.split('/').collect();
                        parts.len() == spec.path.len()
                            && spec.path.iter().zip(&parts).all(|(p, s)| match p {
                                Lit(l) => l == s,
                                Id => valid_id(s),
                            })
                    })
            });
            let spec = listed.expect("forwarded a route the table does not list");
            prop_assert_eq!(&r.upstream_path, &path);
            prop_assert!(!path.contains("//") && !path.ends_with('/') && !path.contains('%'));
            for (name, _) in &r.query {
                prop_assert!(spec.query.contains(&name.as_str()));
            }
            let target = r.upstream_target();
            prop_assert!(target.starts_with(&path));
        }
    }
}

fn opted_in(
    json: serde_json::Value,
) -> Result<settings::ProxySettings, crate::catalog::CatalogError> {
    let proxy: settings::ProxySettings = serde_json::from_value(json).unwrap();
    proxy.validate().map(|_| proxy)
}

#[test]
fn only_opted_in_stateless_routes_are_added() {
    let proxy = opted_in(serde_json::json!({"routes": {"moderations": {"per_request": "0.25", "fields": ["model", "input"]}}})).unwrap();
    let r = route_with("POST", "/v1/moderations", "", &proxy).unwrap();
    assert_eq!(r.handling, Handling::Optional("moderations".into()));
    assert_eq!(
        route_with("GET", "/v1/moderations", "", &proxy)
            .unwrap_err()
            .status,
        404
    );
    let e = route_with("POST", "/v1/images/generations", "", &proxy).unwrap_err();
    assert_eq!(e.status, 404);
    assert_eq!(
        route_with(
            "POST",
            "/v1/moderations",
            "",
            &settings::ProxySettings::default()
        )
        .unwrap_err()
        .status,
        404
    );
    // the table's own routes are unchanged
    assert!(route_with("POST", "/v1/chat/completions", "", &proxy).is_ok());
}

#[test]
fn stateful_routes_and_bad_prices_cannot_be_opted_in() {
    for (routes, path) in [
        (
            serde_json::json!({"batches": {"per_request": "1", "fields": ["input_file_id"]}}),
            "$.proxy.routes.batches",
        ),
        (
            serde_json::json!({"realtime.client_secrets": {"per_request": "1", "fields": ["session"]}}),
            "$.proxy.routes.realtime.client_secrets",
        ),
        (
            serde_json::json!({"moderations": {"per_request": "-1", "fields": ["input"]}}),
            "$.proxy.routes.moderations.per_request",
        ),
        (
            serde_json::json!({"moderations": {"per_request": "1", "fields": []}}),
            "$.proxy.routes.moderations.fields",
        ),
        (
            serde_json::json!({"moderations": {"per_request": "1", "fields": ["input", "metadata"]}}),
            "$.proxy.routes.moderations.fields[1]",
        ),
    ] {
        let e = opted_in(serde_json::json!({"routes": routes})).unwrap_err();
        assert_eq!(e.path, path, "{}", e.message);
    }
}

#[test]
fn test_keys_reach_only_what_the_sandbox_answers() {
    use crate::keys::Mode;
    let owned = Handling::Owned {
        kind: ResourceKind::File,
        id: "file-a".into(),
        deletes: true,
    };
    let open = [
        Handling::Metered(Meter::ChatCompletions),
        Handling::ListModels,
        Handling::GetModel("m".into()),
    ];
    let closed = [
        Handling::UploadFile,
        Handling::ListFiles,
        Handling::Optional("moderations".into()),
        owned,
    ];
    for h in open.iter().chain(&closed) {
        assert!(h.open_to(Mode::Live).is_ok(), "{h:?}");
    }
    for h in &open {
        assert!(h.open_to(Mode::Test).is_ok(), "{h:?}");
    }
    for h in &closed {
        let e = h.open_to(Mode::Test).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_deref()),
            (404, Some("unknown_route")),
            "{h:?}"
        );
    }
}

#[test]
fn only_a_stored_response_carries_its_context() {
    assert!(ResourceKind::Response.carries_context());
    assert!(!ResourceKind::File.carries_context());
}
