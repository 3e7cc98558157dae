//! `ANY /{id}` and `ANY /{id}/{rest...}`: authenticate, find the caller's session, answer for
//! sessions that cannot take traffic, and hand everything else to the proxy path. A stream
//! opened with a key that is later removed or expires is ended.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use agentapi_proxy_client::SessionStatus;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use serde_json::json;

use super::sessions::visible_session;
use crate::auth::{AuthType, Caller, Permission};
use crate::error::{ApiError, OwnError};
use crate::proxy::{Activity, Peer, forward, split_session_path};
use crate::sessions::Session;
use crate::state::AppState;

/// How often a streaming caller's key is re-checked besides every keys reload.
const CREDENTIAL_RECHECK: Duration = Duration::from_secs(15);

/// The route pattern proxied requests are counted under.
const PROXY_ROUTE: &str = "/{id}/{*rest}";

/// Whether `request` may skip the router: a session path, and nothing the router's layers
/// would change (a CORS preflight, or an `Origin` to answer when CORS is on).
pub fn takes_fast_path<B>(request: &http::Request<B>, cors_enabled: bool) -> bool {
    if request.method() == http::Method::OPTIONS
        || (cors_enabled && request.headers().contains_key(http::header::ORIGIN))
    {
        return false;
    }
    first_segment_is_session_id(request.uri().path())
}

/// The proxy route without the router: the same checks and answers as [`proxy`], with the
/// request id, log line and metrics the router's outer layer would add.
pub async fn fast(state: AppState, peer: Peer, request: Request) -> Response {
    crate::observe::observed(PROXY_ROUTE, request, |request| authenticated(state, peer, request))
        .await
}

/// The handler behind both proxy routes. A first segment that is not a session id is a 404
/// before anything else, authentication included.
pub async fn proxy(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if !first_segment_is_session_id(request.uri().path()) {
        return ApiError::NotFound("no such session").into_response();
    }
    let peer = Peer::new(peer, &state.proxy.trusted_proxies);
    authenticated(state, peer, request).await
}

fn first_segment_is_session_id(path: &str) -> bool {
    let first = path.strip_prefix('/').and_then(|rest| rest.split('/').next());
    first.is_some_and(crate::sessions::validate::is_session_id)
}

async fn authenticated(state: AppState, peer: Peer, request: Request) -> Response {
    let caller = match state.auth.authenticate(request.method(), request.headers()).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    match route(state, &peer, caller, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn route(
    state: AppState,
    peer: &Peer,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    let uri = request.uri().clone();
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let (id, upstream_path) =
        split_session_path(path_and_query).ok_or(ApiError::NotFound("no such session"))?;
    caller.require(Permission::SessionAccess)?;
    let session = visible_session(&state, &caller, id)?;
    let (status, endpoint) = session.status_and_endpoint();
    let endpoint = match (status, endpoint) {
        (SessionStatus::Active, Some(endpoint)) => endpoint,
        (SessionStatus::Starting, _) => return Err(ApiError::AgentStarting),
        (status, _) => {
            return Err(ApiError::AgentUnavailable {
                code: "agent_unavailable",
                message: format!("the session is {}", status.as_str()),
                details: Some(json!({ "status": status.as_str() })),
            });
        }
    };
    let activity: Arc<dyn Activity> = session.clone();
    let response = forward(
        &session.connections,
        &state.proxy,
        &state.shutdown,
        &endpoint,
        &upstream_path,
        peer,
        &caller.user_id,
        activity,
        request,
    )
    .await;
    if response.extensions().get::<OwnError>() == Some(&OwnError("agent_unavailable")) {
        // The agent could not be reached: say what the session looks like now.
        let status = session.status_and_port().0;
        return Err(ApiError::AgentUnavailable {
            code: "agent_unavailable",
            message: "the agent could not be reached".into(),
            details: Some(json!({ "status": status.as_str() })),
        });
    }
    Ok(end_when_revoked(&state, caller, response))
}

/// Proxied traffic counts for the session (idle timeout, liveness).
impl Activity for Session {
    fn request_seen(&self) {
        self.touch();
        crate::telemetry::proxied_request();
    }

    fn stream_opened(&self) {
        self.activity.open_streams.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::stream_opened();
    }

    fn stream_closed(&self) {
        self.touch();
        crate::telemetry::stream_closed();
        self.activity.open_streams.fetch_sub(1, Ordering::Relaxed);
    }

    fn upstream_refused(&self) {
        self.check_health();
    }
}

/// Wraps long-lived (event-stream) answers to authenticated callers so they end once their
/// credential stops being valid: at once on a keys reload, within [`CREDENTIAL_RECHECK`] on
/// expiry or OAuth logout.
fn end_when_revoked(state: &AppState, caller: Caller, response: Response) -> Response {
    let streaming = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
    if !streaming || caller.auth_type == AuthType::None || caller.credential.is_none() {
        return response;
    }
    let revoked = Box::pin(credential_ended(state.clone(), caller));
    response.map(|body| Body::new(UntilRevoked { body, revoked }))
}

/// Resolves once `caller`'s credential stops being valid: checked at once on a keys reload
/// or when a proxy session ends on this server, and every `CREDENTIAL_RECHECK` (expiry,
/// logout on another replica). Never resolves without a credential.
pub async fn credential_ended(state: AppState, caller: Caller) {
    if caller.auth_type == AuthType::None || caller.credential.is_none() {
        return std::future::pending().await;
    }
    let mut changes = state.auth.keys().changes();
    let mut endings = state.auth.proxy_sessions().map(|sessions| sessions.endings());
    loop {
        tokio::select! {
            _ = changes.changed() => {}
            Some(Ok(())) = async { Some(endings.as_mut()?.changed().await) } => {}
            () = tokio::time::sleep(CREDENTIAL_RECHECK) => {}
        }
        if !state.auth.still_valid(&caller).await {
            tracing::info!(user_id = %caller.user_id, "credential no longer valid; ending its stream");
            return;
        }
    }
}

/// A body that ends early when `revoked` completes.
struct UntilRevoked {
    body: Body,
    revoked: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl http_body::Body for UntilRevoked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.revoked.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
