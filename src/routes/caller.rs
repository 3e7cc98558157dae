//! The [`Caller`] extractor: a handler that takes a `Caller` argument has the request
//! authenticated by `AppState.auth` before it runs (the uniform 401 otherwise).

use axum::extract::FromRequestParts;
use http::request::Parts;

use std::sync::Arc;

use http::Method;

use crate::auth::{AuthType, Caller, Permission};
use crate::error::ApiError;
use crate::sessions::validate::is_session_id;
use crate::state::AppState;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = state.auth.authenticate(&parts.method, &parts.headers).await?;
        if caller.auth_type == AuthType::SessionToken {
            return agent_scope(parts, state, caller);
        }
        Ok(caller)
    }
}

/// What a session's own agent (its `APX_SESSION_TOKEN`) may reach (sessions.md §5): `GET
/// /sessions/{own id}` and `/sessions/{own id}/chat/...`, acting for the session's owner;
/// another session's id is 404, everything else 403. A token of a session that no longer
/// lives is no credential at all.
fn agent_scope(parts: &Parts, state: &AppState, agent: Caller) -> Result<Caller, ApiError> {
    let session = state
        .sessions
        .get(&agent.user_id)
        .filter(|session| session.status().is_live())
        .ok_or(ApiError::Unauthenticated)?;
    let mut segments = parts.uri.path().trim_start_matches('/').split('/');
    let forbidden = || {
        ApiError::Forbidden(
            "an agent token reaches only its own session and that session's chat routes".into(),
        )
    };
    match (segments.next(), segments.next()) {
        (Some("sessions"), Some(id)) if is_session_id(id) => {
            if id != session.id {
                return Err(ApiError::NotFound("no such session"));
            }
            let rest: Vec<&str> = segments.collect();
            let own_detail = rest.is_empty() && parts.method == Method::GET;
            if !own_detail && rest.first() != Some(&"chat") {
                return Err(forbidden());
            }
            Ok(Caller {
                user_id: session.user_id.as_str().into(),
                role: agent.role,
                permissions: Arc::new([Permission::SessionList.as_str().to_string()]),
                auth_type: AuthType::SessionToken,
                credential: agent.credential,
            })
        }
        _ => Err(forbidden()),
    }
}
