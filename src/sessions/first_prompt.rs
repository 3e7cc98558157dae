//! The first prompt of a session: the text sent to the agent once it is `stable`. Each way of
//! starting a session has its own precedence (the Go proxy's, kept for compatibility); both
//! are decided here, once, before the session layer sees the start.
//!
//! agentapi refuses a `user` message that is empty or has surrounding whitespace, so the
//! chosen text is trimmed, and a text that is blank counts as absent.

use std::collections::BTreeMap;

use crate::error::ApiError;

/// `POST /start`: `tags.message` if non-blank, else the request's `message`.
pub fn for_start(tags: &BTreeMap<String, String>, message: Option<&str>) -> Option<String> {
    usable(tags.get("message").map(String::as_str)).or_else(|| usable(message))
}

/// `POST /start-with-profile`: the request's `message`, else the merged `tags.message`, else
/// the profile template the request names (rendered only when it is the one used).
pub fn for_profile_start(
    message: Option<&str>,
    merged_tags: &BTreeMap<String, String>,
    template: impl FnOnce() -> Result<Option<String>, ApiError>,
) -> Result<Option<String>, ApiError> {
    if let Some(chosen) =
        usable(message).or_else(|| usable(merged_tags.get("message").map(String::as_str)))
    {
        return Ok(Some(chosen));
    }
    Ok(usable(template()?.as_deref()))
}

fn usable(text: Option<&str>) -> Option<String> {
    text.map(str::trim).filter(|text| !text.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(message: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("message".to_string(), message.to_string())])
    }

    #[test]
    fn start_prefers_the_tag_and_start_with_profile_prefers_the_request() {
        assert_eq!(for_start(&tags("tag"), Some("typed")).as_deref(), Some("tag"));
        assert_eq!(for_start(&tags(" "), Some(" typed\n")).as_deref(), Some("typed"));
        assert_eq!(for_start(&BTreeMap::new(), Some("  ")), None);

        let never = || -> Result<Option<String>, ApiError> { panic!("template rendered") };
        let chosen = for_profile_start(Some("typed"), &tags("profile tag"), never);
        assert_eq!(chosen.ok().flatten().as_deref(), Some("typed"));
        let chosen = for_profile_start(Some(" "), &tags("profile tag "), never);
        assert_eq!(chosen.ok().flatten().as_deref(), Some("profile tag"));
        let chosen = for_profile_start(None, &BTreeMap::new(), || Ok(Some(" rendered ".into())));
        assert_eq!(chosen.ok().flatten().as_deref(), Some("rendered"));
    }
}
