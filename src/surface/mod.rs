//! The closed proxy surface: the one table of upstream routes edgemeter serves. A
//! request is matched on its raw method and path, exactly; anything the table does not
//! list is refused with 404 and never reaches the provider. The upstream always gets
//! the table's own canonical path and an allowlisted query, never the client's spelling.

pub mod events;
pub mod fields;
pub mod headers;
pub mod multipart;
pub mod owned;
pub mod references;
pub mod settings;

use crate::error::ApiError;
use crate::request::Meter;

/// A provider resource that belongs to the customer who created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    File,
    Response,
}

impl ResourceKind {
    /// Whether naming a resource of this kind carries its context into the request's
    /// input: a stored response does (`previous_response_id`: the provider reads it all
    /// again), a file is priced by the request that reads it.
    pub fn carries_context(self) -> bool {
        self == ResourceKind::Response
    }

    /// The 404 every caller gets for an id that is not theirs, whether or not it exists.
    pub fn not_found(self, id: &str) -> ApiError {
        let object = match self {
            ResourceKind::File => "File",
            ResourceKind::Response => "Response",
        };
        ApiError::not_found(format!("No such {object} object: {id}")).with_param("id")
    }
}

/// What edgemeter does with a matched request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handling {
    /// A JSON request metered in tokens and forwarded.
    Metered(Meter),
    /// `GET /v1/models`: answered from the catalog.
    ListModels,
    /// `GET /v1/models/{id}`: answered from the catalog.
    GetModel(String),
    /// `POST /v1/files`: a multipart upload, recorded for the customer.
    UploadFile,
    /// `GET /v1/files`: served from the customer's own records.
    ListFiles,
    /// A stateless route the operator opted in, by name, at a fixed price.
    Optional(String),
    /// An operation on a stored resource, forwarded only for its owner.
    Owned {
        kind: ResourceKind,
        id: String,
        /// The owner's record is forgotten once the provider confirms.
        deletes: bool,
    },
}

impl Handling {
    /// Whether a caller with a key of `mode` may use this route. Test keys are answered
    /// by the sandbox, which serves the token-metered routes and the catalog only:
    /// nothing a test key does reaches the provider's account.
    pub fn open_to(&self, mode: crate::keys::Mode) -> Result<(), ApiError> {
        let sandboxed = matches!(
            self,
            Handling::Metered(_) | Handling::ListModels | Handling::GetModel(_)
        );
        if mode == crate::keys::Mode::Live || sandboxed {
            return Ok(());
        }
        let msg = "Stored files and responses, and routes priced per request, are not available with test keys: the sandbox answers the token-metered routes only.";
        Err(ApiError::not_found(msg).with_code("unknown_route"))
    }
}

/// A request matched to the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub handling: Handling,
    /// The canonical upstream path and the allowlisted query (`?a=b`, or empty).
    pub upstream_path: String,
    pub query: Vec<(String, String)>,
}

impl Routed {
    /// The path and query to send upstream.
    pub fn upstream_target(&self) -> String {
        let mut target = self.upstream_path.clone();
        for (i, (name, value)) in self.query.iter().enumerate() {
            target.push(if i == 0 { '?' } else { '&' });
            target.push_str(&encode(name));
            target.push('=');
            target.push_str(&encode(value));
        }
        target
    }

    /// The Durable Object decision this route needs: the resource the caller must own.
    pub fn owned(&self) -> Option<(ResourceKind, &str)> {
        match &self.handling {
            Handling::Owned { kind, id, .. } => Some((*kind, id)),
            _ => None,
        }
    }
}

/// Stateless routes an operator may opt in through the catalog, by name and path. They
/// store nothing and mint no credential; their cost per request is the operator's
/// fixed price. Nothing stateful can be added here by configuration.
pub const OPTIONAL_ROUTES: [(&str, &str); 4] = [
    ("moderations", "/v1/moderations"),
    ("images.generations", "/v1/images/generations"),
    ("audio.speech", "/v1/audio/speech"),
    ("messages.count_tokens", "/v1/messages/count_tokens"),
];

/// The path of an optional route, by name.
pub fn optional_path(name: &str) -> Option<&'static str> {
    OPTIONAL_ROUTES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
}

/// Matches a request against the table and the routes the operator opted in (always
/// `POST`, with no query).
pub fn route_with(
    method: &str,
    path: &str,
    query: &str,
    proxy: &settings::ProxySettings,
) -> Result<Routed, ApiError> {
    let refused = match route(method, path, query) {
        Err(e) if e.status == 404 => e,
        other => return other,
    };
    let opted = OPTIONAL_ROUTES
        .iter()
        .find(|(name, p)| *p == path && proxy.routes.contains_key(*name));
    match opted {
        Some((name, _)) if method == "POST" => Ok(Routed {
            handling: Handling::Optional(name.to_string()),
            upstream_path: path.to_string(),
            query: allowed_query(query, &[])?,
        }),
        _ => Err(refused),
    }
}

/// `GET /v1/models`: the catalog's models only, whatever the provider account has.
pub fn model_list(catalog: &crate::catalog::Catalog) -> serde_json::Value {
    let data: Vec<serde_json::Value> = catalog.models.keys().map(|id| model_object(id)).collect();
    serde_json::json!({"object": "list", "data": data})
}

/// `GET /v1/models/{id}`: a catalog model, or the provider's 404 shape.
pub fn model(catalog: &crate::catalog::Catalog, id: &str) -> Result<serde_json::Value, ApiError> {
    match catalog.models.contains_key(id) {
        true => Ok(model_object(id)),
        false => Err(
            ApiError::not_found(format!("The model `{id}` does not exist."))
                .with_code("model_not_found")
                .with_param("model"),
        ),
    }
}

fn model_object(id: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "edgemeter"})
}

/// One segment of a route's path.
#[derive(Clone, Copy)]
enum Seg {
    Lit(&'static str),
    /// A resource or model id.
    Id,
}

#[derive(Clone, Copy)]
enum Kind {
    Metered(Meter),
    ListModels,
    GetModel,
    UploadFile,
    ListFiles,
    Owned(ResourceKind, bool),
}

struct Route {
    method: &'static str,
    path: &'static [Seg],
    kind: Kind,
    query: &'static [&'static str],
}

use Seg::{Id, Lit};

const LIST_QUERY: &[&str] = &["after", "before", "limit", "order", "include[]"];

/// Every route edgemeter serves. Batches, background responses, realtime, fine-tuning,
/// vector stores, assistants, images and audio are absent on purpose: they cannot be
/// metered exactly or would hand out provider credentials (see the README).
#[rustfmt::skip]
const ROUTES: &[Route] = &[
    Route { method: "POST", path: &[Lit("chat"), Lit("completions")], kind: Kind::Metered(Meter::ChatCompletions), query: &[] },
    Route { method: "POST", path: &[Lit("completions")], kind: Kind::Metered(Meter::Completions), query: &[] },
    Route { method: "POST", path: &[Lit("embeddings")], kind: Kind::Metered(Meter::Embeddings), query: &[] },
    Route { method: "POST", path: &[Lit("responses")], kind: Kind::Metered(Meter::Responses), query: &[] },
    Route { method: "POST", path: &[Lit("messages")], kind: Kind::Metered(Meter::Messages), query: &["beta"] },
    Route { method: "GET", path: &[Lit("models")], kind: Kind::ListModels, query: &[] },
    Route { method: "GET", path: &[Lit("models"), Id], kind: Kind::GetModel, query: &[] },
    Route { method: "POST", path: &[Lit("files")], kind: Kind::UploadFile, query: &[] },
    Route { method: "GET", path: &[Lit("files")], kind: Kind::ListFiles, query: &["after", "limit", "order", "purpose"] },
    Route { method: "GET", path: &[Lit("files"), Id], kind: Kind::Owned(ResourceKind::File, false), query: &[] },
    Route { method: "DELETE", path: &[Lit("files"), Id], kind: Kind::Owned(ResourceKind::File, true), query: &[] },
    Route { method: "GET", path: &[Lit("files"), Id, Lit("content")], kind: Kind::Owned(ResourceKind::File, false), query: &[] },
    Route { method: "GET", path: &[Lit("responses"), Id], kind: Kind::Owned(ResourceKind::Response, false), query: &["include[]"] },
    Route { method: "DELETE", path: &[Lit("responses"), Id], kind: Kind::Owned(ResourceKind::Response, true), query: &[] },
    Route { method: "GET", path: &[Lit("responses"), Id, Lit("input_items")], kind: Kind::Owned(ResourceKind::Response, false), query: LIST_QUERY },
];

/// Ids are what providers issue (`file-…`, `resp_…`, model names): nothing that could
/// change the meaning of a path.
fn valid_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        && s != "."
        && s != ".."
}

/// The path of a raw request URL (`scheme://host/path?query`), as the client spelled it.
pub fn split_url(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let path_start = after_scheme.find('/').unwrap_or(after_scheme.len());
    let rest = &after_scheme[path_start..];
    let rest = rest.split('#').next().unwrap_or("");
    match rest.split_once('?') {
        Some((path, query)) => (path, query),
        None => (rest, ""),
    }
}

fn unknown_route(method: &str, path: &str) -> ApiError {
    let shown: String = path.chars().take(200).collect();
    let msg = format!(
        "Unknown request URL: {method} {shown}. edgemeter serves only the routes in its route table."
    );
    ApiError::not_found(msg).with_code("unknown_route")
}

/// Matches a request against the table: the route, or 404 (unknown route) or 400 (a
/// query parameter the route does not accept, or `stream` on a stored response).
pub fn route(method: &str, path: &str, query: &str) -> Result<Routed, ApiError> {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(unknown_route(method, path));
    };
    let segs: Vec<&str> = rest.split('/').collect();
    for r in ROUTES {
        if r.method != method || r.path.len() != segs.len() {
            continue;
        }
        let mut id = None;
        let fits = r.path.iter().zip(&segs).all(|(p, s)| match p {
            Lit(l) => l == s,
            Id => {
                id = Some(*s);
                valid_id(s)
            }
        });
        if !fits {
            continue;
        }
        let query = allowed_query(query, r.query)?;
        let id = id.unwrap_or_default().to_string();
        let handling = match r.kind {
            Kind::Metered(m) => Handling::Metered(m),
            Kind::ListModels => Handling::ListModels,
            Kind::GetModel => Handling::GetModel(id),
            Kind::UploadFile => Handling::UploadFile,
            Kind::ListFiles => Handling::ListFiles,
            Kind::Owned(kind, deletes) => Handling::Owned { kind, id, deletes },
        };
        return Ok(Routed {
            handling,
            upstream_path: path.to_string(),
            query,
        });
    }
    Err(unknown_route(method, path))
}

/// The query pairs a route accepts, decoded; anything else is refused by name.
fn allowed_query(query: &str, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(name), Some(value)) = (decode(name), decode(value)) else {
            let msg = "The query string is not valid percent-encoded UTF-8.";
            return Err(ApiError::bad_request("invalid_query", msg));
        };
        if !allowed.contains(&name.as_str()) {
            let msg = format!("Unrecognized query parameter: `{name}`.");
            return Err(ApiError::bad_request("unknown_parameter", msg).with_param(name));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// Percent-decodes a query component (`+` is a space, as in forms).
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes a query component: only unreserved characters pass as they are.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
