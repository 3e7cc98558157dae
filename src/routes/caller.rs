//! The [`Caller`] extractor: a handler that takes a `Caller` argument has the request
//! authenticated by `AppState.auth` before it runs (the uniform 401 otherwise).

use axum::extract::FromRequestParts;
use http::request::Parts;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.auth.authenticate(&parts.method, &parts.headers).await
    }
}
