//! The reverse-proxy path to agents: request/response rewriting, streaming, SSE heartbeats,
//! upgrades. Knows no processes: it is given an [`Endpoint`] and a request, and reports what
//! it saw through [`Activity`].
//!
//! Submodules: `headers` (rewriting, trusted proxies), `body` (request body limit and read
//! timeout), `budget` (open streams per user), `sse` (event streams: frame boundaries,
//! heartbeat, drain), `upgrade` (WebSocket tunnel).

mod body;
mod budget;
mod headers;
mod pool;
mod sse;
mod upgrade;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;

pub use body::{BodyStalled, StallLimitedBody, stalled_after};
pub use budget::{StreamBudget, StreamTicket};
pub use headers::{Cidr, Peer};
pub use pool::{AgentConnections, EndpointCheck, enter_worker};
pub use sse::{FrameBoundary, PING};

use crate::config::Config;
use crate::cors::CorsSettings;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::shutdown::Shutdown;
use crate::telemetry::Direction;

/// Everything the proxy path takes from the configuration, prepared once at startup.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Drop the caller's credentials (`credential_headers`, `Authorization`, `Cookie`).
    pub strip_credentials: bool,
    /// Headers that carry credentials besides `Authorization`: the static API key header
    /// (`auth.static.header_name`) and a custom GitHub token header.
    pub credential_headers: Vec<HeaderName>,
    /// Longest wait for a new connection to an agent.
    pub connect_timeout: Duration,
    /// Longest wait for an agent's response headers; `None` = no limit.
    pub header_timeout: Option<Duration>,
    /// Idle time after which an event stream gets a `: ping`; `None` = never.
    pub sse_heartbeat: Option<Duration>,
    /// Largest request body passed on; `0` = no limit.
    pub max_body_bytes: u64,
    /// Peers whose `X-Forwarded-*`/`Forwarded` headers are kept.
    pub trusted_proxies: Vec<Cidr>,
    /// `cors.allowed_origins`, for installing [`crate::cors::cors`].
    pub cors: Arc<CorsSettings>,
    /// Open streams per user, against `proxy.max_streams_per_user`.
    pub streams: Arc<StreamBudget>,
    /// Longest pause inside a request body; `None` = no limit.
    pub body_read_timeout: Option<Duration>,
    /// Add [`AGENT_PAGE_SANDBOX`] to every proxied answer (not `proxy.trust_agent_pages`).
    pub sandbox_agent_pages: bool,
}

/// The CSP every proxied answer carries unless `proxy.trust_agent_pages` (security.md rule
/// 20): an agent's page runs in an opaque origin, so its requests carry no usable cookie of
/// the person viewing it.
pub const AGENT_PAGE_SANDBOX: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-downloads";

impl ProxySettings {
    pub fn from_config(config: &Config) -> Self {
        let proxy = &config.proxy;
        let seconds = |value: u64| (value > 0).then(|| Duration::from_secs(value));
        Self {
            strip_credentials: proxy.strip_credentials,
            credential_headers: [
                &config.auth.static_keys.header_name,
                &config.auth.github.token_header,
            ]
            .into_iter()
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .filter(|name| name != header::AUTHORIZATION)
            .collect(),
            connect_timeout: Duration::from_secs(proxy.connect_timeout_seconds),
            header_timeout: seconds(proxy.header_timeout_seconds),
            sse_heartbeat: seconds(proxy.sse_heartbeat_seconds),
            max_body_bytes: proxy.max_body_bytes,
            // Validation rejected bad CIDRs already; anything unparsable is simply not trusted.
            trusted_proxies: proxy.trusted_proxies.iter().filter_map(|c| Cidr::parse(c)).collect(),
            cors: Arc::new(CorsSettings::from_config(&config.cors)),
            streams: Arc::new(StreamBudget::new(proxy.max_streams_per_user)),
            body_read_timeout: seconds(proxy.body_read_timeout_seconds),
            sandbox_agent_pages: !proxy.trust_agent_pages,
        }
    }
}

/// Hooks so the session layer can track idleness and notice dead agents. All methods are
/// cheap and synchronous; they are called on the request path.
pub trait Activity: Send + Sync + 'static {
    /// Every forwarded request, before it is sent.
    fn request_seen(&self);
    /// An event stream (`text/event-stream`) or upgraded connection started.
    fn stream_opened(&self);
    /// ... and ended: called exactly once per `stream_opened`, also when the client left.
    fn stream_closed(&self);
    /// The agent could not be reached, or dropped the connection before answering: a hint
    /// to check on it.
    fn upstream_refused(&self);
}

/// Splits `/{id}/rest/of/path?q=1` (exactly as received, still percent-encoded) into
/// `("{id}", "/rest/of/path?q=1")`; `/{id}` or `/{id}/` → `("{id}", "/")`, keeping a query
/// (`/{id}?x` → `"/?x"`). Nothing is decoded or normalised. `None` without an id.
pub fn split_session_path(path_and_query: &str) -> Option<(&str, Cow<'_, str>)> {
    let rest = path_and_query.strip_prefix('/')?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (id, tail) = rest.split_at(end);
    if id.is_empty() {
        return None;
    }
    let upstream =
        if tail.starts_with('/') { Cow::Borrowed(tail) } else { Cow::Owned(format!("/{tail}")) };
    Some((id, upstream))
}

/// Forwards `request` (whose URI is the original one, e.g. `/{id}/events?x`) to the agent at
/// `endpoint`, targeting `upstream_path_and_query`. Never panics; every failure of our
/// own is an [`ApiError`] JSON response. Event streams and upgrades live on after this
/// returns, inside the response body / a spawned tunnel; they, and bodies of unknown length,
/// count against `user`'s stream budget while open (429 past it).
#[allow(clippy::too_many_arguments)] // the interface the session routes call
pub async fn forward(
    connections: &Arc<AgentConnections>,
    settings: &ProxySettings,
    shutdown: &Shutdown,
    endpoint: &Endpoint,
    upstream_path_and_query: &str,
    peer: &Peer,
    user: &Arc<str>,
    activity: Arc<dyn Activity>,
    request: Request<Body>,
) -> Response {
    activity.request_seen();
    let target = Target { endpoint, path_and_query: upstream_path_and_query, peer, user };
    match forward_inner(connections, settings, shutdown, target, activity, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

struct Target<'a> {
    endpoint: &'a Endpoint,
    path_and_query: &'a str,
    peer: &'a Peer,
    user: &'a Arc<str>,
}

async fn forward_inner(
    connections: &Arc<AgentConnections>,
    settings: &ProxySettings,
    shutdown: &Shutdown,
    target: Target<'_>,
    activity: Arc<dyn Activity>,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let limit = settings.max_body_bytes;
    let declared = content_length(&parts.headers);
    if limit > 0 && declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }

    let client_upgrade = if headers::is_upgrade_request(&parts.headers) {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    };
    let upgrading = client_upgrade.is_some();
    // Taken before the agent is asked: a refused upgrade never reaches it.
    let upgrade_ticket = if upgrading { Some(stream_ticket(settings, target.user)?) } else { None };

    let uri = upstream_uri(target.path_and_query)?;
    let context = headers::RequestContext {
        upstream_host: target.endpoint.host_header(),
        peer: target.peer,
        strip_credentials: settings.strip_credentials,
        credential_headers: &settings.credential_headers,
        uri_authority: parts.uri.authority().map(Authority::as_str),
    };
    headers::rewrite_request(&mut parts.headers, &context, upgrading);
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();

    // Bodiless requests (most of them) skip both wrappers: the size limit and the byte count.
    let body = if http_body::Body::is_end_stream(&body) {
        body
    } else if limit > 0 && declared.is_none() {
        Body::new(counted(body::LimitedBody::new(body, limit), Direction::ToAgent))
    } else {
        Body::new(counted(body, Direction::ToAgent))
    };
    let sent = connections.send(
        target.endpoint,
        settings.connect_timeout,
        Request::from_parts(parts, body),
    );
    let result = match settings.header_timeout {
        Some(timeout) => match tokio::time::timeout(timeout, sent).await {
            Ok(result) => result,
            Err(_) => {
                let endpoint = target.endpoint;
                tracing::debug!(%endpoint, ?timeout, "agent sent no response headers");
                return Err(ApiError::AgentTimeout {
                    message: format!(
                        "the agent did not answer within {} seconds",
                        timeout.as_secs_f64()
                    ),
                    details: None,
                });
            }
        },
        None => sent.await,
    };
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            return Err(upstream_failure(&error, limit, target.endpoint.port(), &*activity));
        }
    };

    let (mut parts, incoming) = response.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(client_upgrade), Some(agent_upgrade), Some(ticket)) =
            (client_upgrade, parts.extensions.remove::<OnUpgrade>(), upgrade_ticket)
        else {
            let endpoint = target.endpoint;
            tracing::warn!(%endpoint, "agent switched protocols unasked; refusing");
            return Err(unavailable("the agent sent an invalid answer"));
        };
        headers::rewrite_response(&mut parts.headers, true);
        upgrade::tunnel(client_upgrade, agent_upgrade, shutdown, activity, ticket);
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    headers::rewrite_response(&mut parts.headers, false);
    if settings.sandbox_agent_pages {
        // Added beside any policy of the agent's: a browser enforces all of them.
        parts
            .headers
            .append(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(AGENT_PAGE_SANDBOX));
    }

    drop(upgrade_ticket);

    let body = if is_event_stream(&parts.headers) {
        // Refused here, the agent's stream is dropped and its connection closed.
        let ticket = stream_ticket(settings, target.user)?;
        let guard = sse::StreamGuard::open(activity, ticket);
        let stream = sse::SseBody::new(incoming, settings.sse_heartbeat, shutdown, guard);
        Body::new(counted(stream, Direction::ToClient))
    } else {
        let port = target.endpoint.port();
        let open_ended = !http_body::Body::is_end_stream(&incoming)
            && http_body::Body::size_hint(&incoming).exact().is_none();
        let body = counted(incoming, Direction::ToClient).map_err(move |error| {
            tracing::warn!(port, %error, "the agent broke off a response; cutting it off");
            error
        });
        if open_ended {
            Body::new(budget::Ticketed::new(body, stream_ticket(settings, target.user)?))
        } else {
            Body::new(body)
        }
    };
    Ok(Response::from_parts(parts, body))
}

/// A place in `user`'s stream budget, or 429.
fn stream_ticket(settings: &ProxySettings, user: &Arc<str>) -> Result<StreamTicket, ApiError> {
    settings.streams.try_open(user).ok_or_else(|| {
        tracing::debug!(user_id = %user, "stream budget reached; refusing another stream");
        ApiError::QuotaExceeded {
            message: format!(
                "too many open streams: at most {} per user (proxy.max_streams_per_user)",
                settings.streams.max()
            ),
            retry_after_seconds: 5,
        }
    })
}

/// `body`, with its data bytes added to the proxied-bytes metric as they pass.
fn counted<B>(
    body: B,
    direction: Direction,
) -> http_body_util::combinators::MapFrame<
    B,
    impl FnMut(http_body::Frame<bytes::Bytes>) -> http_body::Frame<bytes::Bytes>,
>
where
    B: http_body::Body<Data = bytes::Bytes>,
{
    let bytes = crate::telemetry::proxied_bytes(direction);
    body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            bytes.increment(data.len() as u64);
        }
        frame
    })
}

/// The origin-form request target for the agent: the path exactly as given. Where the request
/// goes is decided by the endpoint alone, never by anything in the path.
fn upstream_uri(path_and_query: &str) -> Result<Uri, ApiError> {
    let invalid = || ApiError::bad_request("invalid_request", "invalid request target");
    if !path_and_query.starts_with('/') {
        return Err(invalid());
    }
    let path_and_query = PathAndQuery::try_from(path_and_query).map_err(|_| invalid())?;
    Ok(Uri::from(path_and_query))
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.trim_start()
            .get(..17)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("text/event-stream"))
    })
}

fn unavailable(message: &str) -> ApiError {
    ApiError::AgentUnavailable {
        code: "agent_unavailable",
        message: message.to_string(),
        details: None,
    }
}

/// Maps a failure before response headers: our body limit → 413, the client's own body
/// failing → 400, anything else is the agent's → 502 (and the session layer hears of it).
fn upstream_failure(
    error: &pool::SendError,
    limit: u64,
    port: u16,
    activity: &dyn Activity,
) -> ApiError {
    if body::is_body_too_large(error) {
        return ApiError::PayloadTooLarge { limit };
    }
    if let Some(stalled) = body::stalled_after(error) {
        tracing::debug!(port, "the client's request body stalled");
        return ApiError::RequestTimeout { seconds: stalled.as_secs() };
    }
    if client_body_failed(error) {
        tracing::debug!(port, error = %error_chain(error), "the client's request body failed");
        return ApiError::bad_request("invalid_request", "the request body could not be read");
    }
    tracing::debug!(port, error = %error_chain(error), "agent unreachable");
    activity.upstream_refused();
    unavailable("the agent is not reachable")
}

fn client_body_failed(error: &pool::SendError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(hyper_error) = error.downcast_ref::<hyper::Error>()
            && hyper_error.is_user()
        {
            return true;
        }
        current = error.source();
    }
    false
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        current = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_paths_split_into_id_and_the_rest_as_received() {
        let id = "11111111-1111-4111-8111-111111111111";
        let split = |p: &str| split_session_path(p).map(|(i, r)| (i.to_string(), r.into_owned()));
        let expect = |rest: &str| Some((id.to_string(), rest.to_string()));
        assert_eq!(split(&format!("/{id}/events")), expect("/events"));
        assert_eq!(split(&format!("/{id}/events?x=1&y")), expect("/events?x=1&y"));
        assert_eq!(split(&format!("/{id}")), expect("/"));
        assert_eq!(split(&format!("/{id}/")), expect("/"));
        assert_eq!(split(&format!("/{id}?x")), expect("/?x"));
        assert_eq!(split(&format!("/{id}/?x")), expect("/?x"));
        assert_eq!(
            split(&format!("/{id}/..%2F..%2Fetc/passwd?x=%2e")),
            expect("/..%2F..%2Fetc/passwd?x=%2e")
        );
        assert_eq!(split(&format!("/{id}//double//slash")), expect("//double//slash"));
        assert_eq!(split(&format!("/{id}/%2e%2e/a/./b")), expect("/%2e%2e/a/./b"));
        assert_eq!(split("/..%2Fadmin/x"), Some(("..%2Fadmin".into(), "/x".into())));
        assert_eq!(split("/"), None);
        assert_eq!(split(""), None);
        assert_eq!(split("//x"), None);
        assert_eq!(split("/?x"), None);
        assert_eq!(split("no-slash"), None);
    }

    #[test]
    fn upstream_requests_are_origin_form() {
        let u = upstream_uri("//evil.example/x?y=%2e").unwrap();
        assert_eq!(u.host(), None, "nothing in the path becomes an authority");
        assert_eq!(u.to_string(), "//evil.example/x?y=%2e");
        assert_eq!(upstream_uri("/..%2F..%2Fetc/passwd").unwrap().path(), "/..%2F..%2Fetc/passwd");
        assert!(upstream_uri("@evil.example/").is_err());
        assert!(upstream_uri("evil.example/").is_err());
        assert!(upstream_uri("").is_err());
    }

    #[test]
    fn event_streams_are_recognised_by_content_type() {
        let with = |v: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            is_event_stream(&headers)
        };
        assert!(with("text/event-stream"));
        assert!(with("Text/Event-Stream; charset=utf-8"));
        assert!(!with("application/json"));
        assert!(!with("text/event"));
        assert!(!is_event_stream(&http::HeaderMap::new()));
    }

    #[test]
    fn settings_follow_the_config() {
        let mut config = Config::default();
        config.proxy.sse_heartbeat_seconds = 0;
        config.proxy.trusted_proxies = vec!["10.0.0.0/8".into()];
        config.auth.static_keys.header_name = "X-My-Key".into();
        let settings = ProxySettings::from_config(&config);
        assert_eq!(settings.sse_heartbeat, None);
        assert_eq!(settings.header_timeout, Some(Duration::from_secs(120)));
        assert_eq!(settings.credential_headers[0].as_str(), "x-my-key");
        assert!(settings.trusted_proxies[0].contains("10.9.8.7".parse().unwrap()));
        assert!(settings.strip_credentials);
        assert!(settings.sandbox_agent_pages);
        config.proxy.trust_agent_pages = true;
        assert!(!ProxySettings::from_config(&config).sandbox_agent_pages);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::split_session_path;

    proptest! {
        #[test]
        fn the_id_is_the_first_segment_and_the_rest_is_forwarded_byte_exact(
            id in "[a-z0-9-]{1,40}",
            rest in "(/[!-~&&[^?#]]{0,20}){0,4}",
            query in proptest::option::of("[!-~&&[^#]]{0,20}"),
        ) {
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            let path = format!("/{id}{rest}{query}");
            let (found, upstream) = split_session_path(&path).expect("splits");
            prop_assert_eq!(found, id.as_str());
            let expected_path = if rest.is_empty() { "/".to_string() } else { rest.clone() };
            prop_assert_eq!(upstream, format!("{expected_path}{query}"));
        }
    }
}
