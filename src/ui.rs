//! The web dashboard under `/ui/`: its files are compiled into the binary (no files on disk
//! at run time, nothing from another origin), gzip-compressed once on first use and kept in
//! memory, served with ETags and the dashboard's security headers. Every path that is not an
//! asset is a page route and gets the app shell; the page itself asks the API who is signed in.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// The policy of every `/ui/` answer: only our own origin, no inline code, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the page's files are served from: `/ui/assets/<name>`.
const ASSETS_PREFIX: &str = "assets/";

/// One embedded file: its name under `/ui/assets/` (the shell has none), type and bytes.
struct Source {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! source {
    ($name:literal, $type:expr) => {
        Source { name: $name, content_type: $type, body: include_bytes!(concat!("ui/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const SOURCES: &[Source] = &[
    source!("index.html", "text/html; charset=utf-8"),
    source!("app.css", "text/css; charset=utf-8"),
    source!("icon.svg", "image/svg+xml"),
    source!("app.js", JS),
    source!("api.js", JS),
    source!("dom.js", JS),
    source!("format.js", JS),
    source!("sse.js", JS),
    source!("store.js", JS),
    source!("signin.js", JS),
    source!("sessions.js", JS),
    source!("session.js", JS),
    source!("profiles.js", JS),
    source!("overview.js", JS),
];

/// A file ready to serve: identity and gzip bodies, and the ETag of its content.
pub struct Asset {
    pub name: &'static str,
    content_type: &'static str,
    identity: &'static [u8],
    pub gzip: Vec<u8>,
    etag: String,
}

/// Every asset, compressed once, the first time any `/ui/` path is asked for.
pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| SOURCES.iter().map(prepare).collect());

fn prepare(source: &Source) -> Asset {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(source.body);
    let gzip = encoder.finish().unwrap_or_default();
    let digest = Sha256::digest(source.body);
    let etag = format!("\"{}\"", hex::encode(&digest[..12]));
    Asset {
        name: source.name,
        content_type: source.content_type,
        identity: source.body,
        gzip,
        etag,
    }
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// The `/ui` routes, with the dashboard's headers on every answer (404s included).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(shell))
        .route("/ui/{*path}", get(page_or_asset))
        .layer(map_response(security_headers))
}

async fn shell(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(asset) => serve(asset, &headers),
        None => ApiError::NotFound("no such page").into_response(),
    }
}

async fn page_or_asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match path.strip_prefix(ASSETS_PREFIX) {
        Some(name) => match find(name).filter(|asset| asset.name != "index.html") {
            Some(asset) => serve(asset, &headers),
            None => ApiError::NotFound("no such file").into_response(),
        },
        // A last segment with a dot looks like a file the page never had (`/ui/x.js`).
        None if path.rsplit('/').next().is_some_and(|last| last.contains('.')) => {
            ApiError::NotFound("no such file").into_response()
        }
        None => shell(headers).await,
    }
}

/// An asset's answer: 304 when the browser already has it, gzip when the browser accepts it.
/// `no-cache` makes the browser revalidate each time (cheap: a 304), so a new binary's page
/// is never mixed with an old one's modules.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&asset.etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if if_none_match(request, &asset.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    if accepts_gzip(request) {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        (headers, asset.gzip.clone()).into_response()
    } else {
        (headers, asset.identity).into_response()
    }
}

fn if_none_match(request: &HeaderMap, etag: &str) -> bool {
    request.get_all(header::IF_NONE_MATCH).iter().filter_map(|value| value.to_str().ok()).any(
        |value| {
            value
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
        },
    )
}

/// True when `Accept-Encoding` lists `gzip` (or `*`) without `q=0`.
pub fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|param| {
                param.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_encoding(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        assert!(accepts_gzip(&with_encoding("gzip, deflate, br")));
        assert!(accepts_gzip(&with_encoding("br;q=1, GZIP;q=0.5")));
        assert!(!accepts_gzip(&with_encoding("gzip;q=0")));
        assert!(!accepts_gzip(&with_encoding("br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    /// The whole page (every script and style sheet, compressed) stays under 200 KB.
    #[test]
    fn page_weight_stays_under_budget() {
        let total: usize = ASSETS.iter().map(|asset| asset.gzip.len()).sum();
        assert!(total < 200 * 1024, "the dashboard weighs {total} bytes compressed");
    }

    /// No page file runs inline code or sets inline styles (the CSP would block them).
    #[test]
    fn no_inline_script_or_style() {
        for asset in ASSETS.iter() {
            let text = String::from_utf8_lossy(asset.identity);
            for forbidden in ["innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", " style=\""]
            {
                assert!(!text.contains(forbidden), "{} contains {forbidden}", asset.name);
            }
        }
        let shell = String::from_utf8_lossy(find("index.html").unwrap().identity).into_owned();
        assert!(!shell.contains("<script>"), "the shell has an inline script");
        assert!(!shell.contains("<style"), "the shell has an inline style");
    }
}
