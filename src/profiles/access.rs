//! Reading and changing one stored profile on behalf of a caller: a profile the caller may
//! not see is "no such profile" (404), never 403; a change is a read-modify-write that is
//! retried when another write came in between, then answered with a conflict.

use agentapi_proxy_client::Profile;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::profiles::{ProfileStore, Versioned};

/// Attempts of a read-modify-write before answering 409.
const WRITE_ATTEMPTS: usize = 3;

/// A store failure as the caller sees it (logged once here, never sent).
pub fn store_error(error: anyhow::Error) -> ApiError {
    tracing::error!(error = format!("{error:#}"), "profile store failure");
    ApiError::StoreUnavailable
}

/// The profile `id` names, if `caller` may see it.
pub async fn visible(
    store: &dyn ProfileStore,
    caller: &Caller,
    id: &str,
) -> Result<Versioned, ApiError> {
    const UNKNOWN: ApiError = ApiError::NotFound("no such profile");
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(UNKNOWN);
    }
    let found = store.get(id.to_string()).await.map_err(store_error)?.ok_or(UNKNOWN)?;
    if !caller.can_see(&found.profile.user_id) {
        return Err(UNKNOWN);
    }
    Ok(found)
}

/// Reads, changes and writes the profile `id`, retrying when another write came in between.
pub async fn modify(
    store: &dyn ProfileStore,
    caller: &Caller,
    id: &str,
    change: impl Fn(&mut Profile) -> Result<(), ApiError>,
) -> Result<Profile, ApiError> {
    for _ in 0..WRITE_ATTEMPTS {
        let Versioned { mut profile, version } = visible(store, caller, id).await?;
        change(&mut profile)?;
        if store.replace(profile.clone(), version).await.map_err(store_error)? {
            return Ok(profile);
        }
    }
    Err(ApiError::Conflict("the profile changed meanwhile; try again".into()))
}
