//! Files and stored responses through the real worker. The fake upstream is one
//! provider account shared by every customer, as the operator's real account is: only
//! edgemeter's own records keep one customer away from another's files and responses.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::http::Resp;
use support::upstream::FakeUpstream;
use support::{call, customer, issue_key, send, shared, upload};

/// Well-formed ids that no one owns, neither in edgemeter nor upstream.
const NO_FILE: &str = "file-987654321";
const NO_RESPONSE: &str = "resp_987654321";

/// Requests the upstream saw that name `id`, in the path or as `previous_response_id`.
fn touching(up: &FakeUpstream, id: &str) -> usize {
    up.all()
        .iter()
        .filter(|s| {
            let path = s.path.split('?').next().unwrap_or("");
            path.split('/').any(|seg| seg == id) || s.json()["previous_response_id"] == id
        })
        .count()
}

fn new_file(port: u16, key: &str, purpose: &str, name: &str, content: &[u8]) -> Value {
    let r = upload(port, key, purpose, name, content);
    assert_eq!(r.status, 200, "upload: {}", r.text());
    r.json()
}

fn respond(port: u16, key: &str, extra: Value) -> Resp {
    let mut body = json!({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 3});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    call(port, key, "/v1/responses", &body, &[])
}

fn ids(list: &Value) -> Vec<String> {
    let data = list["data"].as_array().cloned().unwrap_or_default();
    data.iter()
        .map(|f| f["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn message(r: &Resp) -> String {
    r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `theirs` is exactly the 404 an unknown id gets, `unknown` standing for `id`.
fn same_as_unknown(theirs: &Resp, unknown: &Resp, unknown_id: &str, id: &str) {
    assert_eq!(
        (theirs.status, unknown.status),
        (404, 404),
        "{}",
        theirs.text()
    );
    assert_eq!(theirs.text(), unknown.text().replace(unknown_id, id));
    theirs.error_type();
}

#[test]
fn customers_sharing_the_account_cannot_reach_each_others_files_or_responses() {
    let env = shared();
    let port = env.worker.port;
    let (_, a) = customer(port, "open");
    let (_, b) = customer(port, "open");
    let content = b"{\"secret\": \"only for a\"}\n";
    let file = new_file(port, &a, "user_data", "a.jsonl", content);
    let fid = file["id"].as_str().unwrap().to_string();
    assert_eq!(
        (file["bytes"].as_u64(), file["purpose"].as_str()),
        (Some(content.len() as u64), Some("user_data")),
        "{file}"
    );
    let r = respond(port, &a, json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let rid = r.json()["id"].as_str().unwrap().to_string();

    let mine = send(port, &a, "GET", "/v1/files").json();
    assert_eq!(ids(&mine), std::slice::from_ref(&fid), "{mine}");
    assert_eq!(
        (&mine["has_more"], &mine["first_id"], &mine["last_id"]),
        (&json!(false), &json!(fid), &json!(fid)),
        "{mine}"
    );
    let r = send(port, &b, "GET", "/v1/files");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ids(&r.json()), Vec::<String>::new(), "{}", r.text());
    assert_eq!(r.json()["has_more"], false);

    let before = (touching(&env.upstream, &fid), touching(&env.upstream, &rid));
    for (method, tail) in [("GET", ""), ("GET", "/content"), ("DELETE", "")] {
        let theirs = send(port, &b, method, &format!("/v1/files/{fid}{tail}"));
        let unknown = send(port, &b, method, &format!("/v1/files/{NO_FILE}{tail}"));
        same_as_unknown(&theirs, &unknown, NO_FILE, &fid);
        assert_eq!(message(&theirs), format!("No such File object: {fid}"));
    }
    for (method, tail) in [("GET", ""), ("GET", "/input_items"), ("DELETE", "")] {
        let theirs = send(port, &b, method, &format!("/v1/responses/{rid}{tail}"));
        let unknown = send(
            port,
            &b,
            method,
            &format!("/v1/responses/{NO_RESPONSE}{tail}"),
        );
        same_as_unknown(&theirs, &unknown, NO_RESPONSE, &rid);
        assert_eq!(message(&theirs), format!("No such Response object: {rid}"));
    }
    let r = respond(port, &b, json!({"previous_response_id": rid}));
    assert_eq!(r.status, 404, "continuing another's response: {}", r.text());
    assert_eq!(
        (touching(&env.upstream, &fid), touching(&env.upstream, &rid)),
        before,
        "B's attempts on A's ids reached the upstream"
    );
    for unknown in [NO_FILE, NO_RESPONSE] {
        assert_eq!(
            touching(&env.upstream, unknown),
            0,
            "{unknown} was forwarded"
        );
    }

    // A's file and response survived all of it
    let r = send(port, &a, "GET", &format!("/v1/files/{fid}"));
    assert_eq!(
        (r.status, r.json()["id"].as_str()),
        (200, Some(fid.as_str()))
    );
    let r = send(port, &a, "GET", &format!("/v1/files/{fid}/content"));
    assert_eq!((r.status, r.body.as_slice()), (200, &content[..]));
    let r = send(port, &a, "GET", &format!("/v1/responses/{rid}"));
    assert_eq!(
        (r.status, r.json()["id"].as_str()),
        (200, Some(rid.as_str()))
    );
    let r = send(port, &a, "GET", &format!("/v1/responses/{rid}/input_items"));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = respond(port, &a, json!({"previous_response_id": rid}));
    assert_eq!(
        r.status,
        200,
        "the owner continues its response: {}",
        r.text()
    );
}

#[test]
fn a_streamed_response_is_its_creators_once_the_stream_ends() {
    let env = shared();
    let port = env.worker.port;
    let (_, a) = customer(port, "open");
    let (_, b) = customer(port, "open");
    let r = respond(port, &a, json!({"stream": true}));
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.contains("event: response.completed"), "{text}");
    let created: Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|e| e["type"] == "response.created")
        .unwrap_or_else(|| panic!("no response.created: {text}"));
    let rid = created["response"]["id"].as_str().unwrap().to_string();

    let r = send(port, &a, "GET", &format!("/v1/responses/{rid}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "completed");
    let before = touching(&env.upstream, &rid);
    let r = send(port, &b, "GET", &format!("/v1/responses/{rid}"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(touching(&env.upstream, &rid), before);
}

#[test]
fn a_customers_file_list_pages_through_its_own_files() {
    let env = shared();
    let port = env.worker.port;
    let (_, a) = customer(port, "open");
    let mut fids = Vec::new();
    // the purposes allowed by default; a second apart, so `created_at` orders them
    for (i, purpose) in ["user_data", "assistants", "vision"].iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(1100));
        }
        let f = new_file(port, &a, purpose, &format!("f{i}.txt"), b"abc");
        fids.push(f["id"].as_str().unwrap().to_string());
    }
    let page = send(port, &a, "GET", "/v1/files?limit=2&order=asc").json();
    assert_eq!(ids(&page), fids[..2], "{page}");
    assert_eq!(page["has_more"], true, "{page}");
    assert_eq!(page["last_id"], fids[1].as_str(), "{page}");
    let next = format!("/v1/files?limit=2&order=asc&after={}", fids[1]);
    let page = send(port, &a, "GET", &next).json();
    assert_eq!(ids(&page), fids[2..], "{page}");
    assert_eq!(page["has_more"], false, "{page}");
    let all = send(port, &a, "GET", "/v1/files?order=desc").json();
    let desc: Vec<String> = fids.iter().rev().cloned().collect();
    assert_eq!(ids(&all), desc, "{all}");
    let vision = send(port, &a, "GET", "/v1/files?purpose=vision").json();
    assert_eq!(ids(&vision), fids[2..], "{vision}");

    // the owner deletes one: gone from the list and upstream
    let r = send(port, &a, "DELETE", &format!("/v1/files/{}", fids[0]));
    assert_eq!((r.status, &r.json()["deleted"]), (200, &json!(true)));
    let r = send(port, &a, "GET", &format!("/v1/files/{}", fids[0]));
    assert_eq!(r.status, 404, "{}", r.text());
    let all = send(port, &a, "GET", "/v1/files?order=asc").json();
    assert_eq!(ids(&all), fids[1..], "{all}");

    // a purpose outside the default list is refused before the upstream
    let name = format!("{}.jsonl", support::unique("batch-input"));
    let r = upload(port, &a, "batch", &name, b"{}\n");
    assert!((400..500).contains(&r.status), "{}", r.text());
    assert!(!env.upstream.all().iter().any(|s| s.body.contains(&name)));
}

#[test]
fn query_parameters_of_the_owned_routes_are_checked() {
    let env = shared();
    let port = env.worker.port;
    let (_, a) = customer(port, "open");
    let r = respond(port, &a, json!({}));
    let rid = r.json()["id"].as_str().unwrap().to_string();
    let seen = env.upstream.all().len();
    for (path, param) in [
        ("/v1/files?colour=red".to_string(), "colour"),
        (format!("/v1/responses/{rid}?stream=true"), "stream"),
        (
            format!("/v1/responses/{rid}/input_items?colour=red"),
            "colour",
        ),
    ] {
        let r = send(port, &a, "GET", &path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{path}: {}", r.text());
    }
    let forwarded = env.upstream.all()[seen..]
        .iter()
        .filter(|s| s.path.contains("colour") || s.path.contains(&rid))
        .count();
    assert_eq!(forwarded, 0);
    let path = format!("/v1/responses/{rid}/input_items?limit=1&order=asc");
    assert_eq!(send(port, &a, "GET", &path).status, 200);
}

#[test]
fn test_keys_reach_no_files_or_stored_responses() {
    let env = shared();
    let port = env.worker.port;
    let (id, live) = customer(port, "open");
    let test = issue_key(port, &id, "test");
    let fid = new_file(port, &live, "user_data", "live.txt", b"live data")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rid = respond(port, &live, json!({})).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = (touching(&env.upstream, &fid), touching(&env.upstream, &rid));
    for path in [
        format!("/v1/files/{fid}"),
        format!("/v1/files/{fid}/content"),
        format!("/v1/responses/{rid}"),
    ] {
        let r = send(port, &test, "GET", &path);
        assert_eq!(r.status, 404, "{path} with a test key: {}", r.text());
    }
    let r = send(port, &test, "GET", "/v1/files");
    assert!(!r.text().contains(&fid), "{}", r.text());
    assert_eq!(
        (touching(&env.upstream, &fid), touching(&env.upstream, &rid)),
        before
    );
}

/// A file id inside a request body is checked like one in a path: another customer's
/// gets 404 and the request never reaches the provider; the owner's passes.
#[test]
fn file_ids_inside_a_body_belong_to_their_owner() {
    let env = shared();
    let port = env.worker.port;
    let (_, a) = customer(port, "open");
    let (_, b) = customer(port, "open");
    let file = new_file(port, &a, "user_data", "a.pdf", b"%PDF-1.4 a");
    let id = file["id"].as_str().unwrap().to_string();
    let input = json!([{"role": "user", "content": [{"type": "input_file", "file_id": id}]}]);
    let before = env.upstream.all().len();
    let theirs = respond(port, &b, json!({"input": input}));
    assert_eq!(theirs.status, 404, "{}", theirs.text());
    assert!(message(&theirs).contains(&id), "{}", theirs.text());
    let forwarded: Vec<_> = env.upstream.all()[before..]
        .iter()
        .filter(|s| s.body.contains(&id))
        .cloned()
        .collect();
    assert!(
        forwarded.is_empty(),
        "B's reference was forwarded: {forwarded:?}"
    );
    let mine = respond(port, &a, json!({"input": input}));
    assert_eq!(mine.status, 200, "{}", mine.text());
    // provider-side tools are billed outside token usage: refused before the provider
    let search = respond(port, &a, json!({"tools": [{"type": "web_search"}]}));
    assert_eq!(
        (search.status, search.json()["error"]["param"].as_str()),
        (400, Some("tools"))
    );
}

/// An upload the provider answers with an id edgemeter cannot record is refused (its
/// owner could never reach the file again) and nothing is metered for it.
#[test]
fn an_upload_that_cannot_be_recorded_is_refused() {
    let port = shared().worker.port;
    let (_, key) = customer(port, "open");
    let name = support::upstream::account::UNREADABLE_ID;
    let r = upload(port, &key, "user_data", name, b"x");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(!r.text().contains("/../"), "{}", r.text());
    let usage = support::settled_usage(port, &key);
    assert_eq!(support::meter(&usage, "requests", "")["requests"], 0);
}

/// A stored response read back carries its usage in the body: that is never metered
/// again, only the read itself counts, as one request.
#[test]
fn reading_a_stored_response_does_not_count_its_tokens_again() {
    let port = shared().worker.port;
    let (_, a) = customer(port, "open");
    let r = respond(port, &a, json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let rid = r.json()["id"].as_str().unwrap().to_string();
    let before = support::settled_usage(port, &a);
    for _ in 0..3 {
        let r = send(port, &a, "GET", &format!("/v1/responses/{rid}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json()["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }
    let after = support::settled_usage(port, &a);
    assert_eq!(
        after["totals"]["tokens"], before["totals"]["tokens"],
        "{after}"
    );
    let responses = support::meter(&after, "responses", "gpt-4o-mini");
    assert_eq!(responses["requests"], 1, "{after}");
}
