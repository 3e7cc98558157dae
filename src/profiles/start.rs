//! Starting a session from a profile: the profile's environment and tags overlaid by the
//! request's, the first prompt (request message, merged `tags.message`, or a template of the
//! profile rendered with the request's variables), the profile's system prompt; and what the
//! profile records of its use afterwards (`last_used_at`, the repository in its history).

use agentapi_proxy_client::{Profile, RepositoryInput, StartWithProfile};

use super::{record_repository, render, repository_entry};
use crate::error::ApiError;
use crate::sessions::{StartInput, first_prompt};

/// What `request` starts from `profile`.
pub fn start_input(profile: &Profile, request: StartWithProfile) -> Result<StartInput, ApiError> {
    let mut environment = profile.environment.clone();
    environment.extend(request.environment);
    let mut tags = profile.tags.clone();
    tags.extend(request.tags);
    let first_prompt = first_prompt::for_profile_start(request.message.as_deref(), &tags, || {
        let Some(template_id) = request.template_id.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let template = profile
            .message_templates
            .iter()
            .find(|t| t.id == template_id || t.name == template_id)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_request",
                    "`template_id` names no template of this profile",
                )
            })?;
        Ok(Some(render(&template.content, &request.template_variables)?))
    })?;
    Ok(StartInput {
        environment,
        tags,
        first_prompt,
        system_prompt: Some(profile.system_prompt.clone()).filter(|p| !p.is_empty()),
    })
}

/// Records a start from `profile` at `used_at`, with the `repository` tag it started with.
pub fn record_use(
    profile: &mut Profile,
    used_at: &str,
    repository: Option<&str>,
) -> Result<(), ApiError> {
    profile.last_used_at = Some(used_at.to_string());
    if let Some(url) = repository {
        let entry = repository_entry(RepositoryInput {
            url: url.to_string(),
            accessed_at: Some(used_at.to_string()),
            ..RepositoryInput::default()
        })?;
        record_repository(profile, entry);
    }
    Ok(())
}
