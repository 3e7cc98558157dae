//! Profiles: applying what callers send (create, partial update, repositories, templates),
//! hiding secret-looking environment values in answers, and rendering message templates.
//! Bodies arrive decoded into the client crate's `ProfileInput`, `RepositoryInput` and
//! `TemplateInput` (`routes::json_body`); a partial update needs no "absent versus null"
//! distinction, since both keep the stored value, so `Option` says it all.
//! Storage is `store::profiles`; the routes are `routes::profiles`. Submodules: `access`
//! (reading and changing one profile for a caller), `start` (a session started from one).

mod access;
mod start;

use std::collections::BTreeMap;

use agentapi_proxy_client::{
    MessageTemplate, Profile, ProfileInput, RepositoryEntry, RepositoryInput, TemplateInput,
};

use crate::clock::{format_ms, now_ms};
use crate::error::ApiError;
use crate::sessions::validate;
pub use access::{modify, store_error, visible};
pub use start::{record_use, start_input};

/// Shown instead of environment values whose names look secret.
pub const REDACTED: &str = "<redacted>";
const SECRET_MARKERS: &[&str] = &["TOKEN", "KEY", "SECRET", "PASSWORD", "CREDENTIAL"];
const MAX_NAME_CHARS: usize = 200;
const MAX_TEXT_BYTES: usize = 64 * 1024;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

/// Whether an environment variable's value is hidden in answers.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_MARKERS.iter().any(|marker| upper.contains(marker))
}

/// The profile as callers see it: secret-looking environment values redacted.
pub fn redacted(mut profile: Profile) -> Profile {
    for (name, value) in profile.environment.iter_mut() {
        if looks_secret(name) {
            *value = REDACTED.to_string();
        }
    }
    profile
}

/// What may be checked against the session rules (reserved environment names).
pub struct Rules<'a> {
    pub reserved_env: &'a [&'a str],
}

fn checked_name(name: &str, field: &str) -> Result<String, ApiError> {
    let length = name.chars().count();
    if length == 0 || length > MAX_NAME_CHARS {
        return Err(invalid(format!("`{field}` must be 1 to {MAX_NAME_CHARS} characters")));
    }
    Ok(name.to_string())
}

fn checked_text(text: &str, field: &str) -> Result<String, ApiError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(invalid(format!("`{field}` is longer than {MAX_TEXT_BYTES} bytes")));
    }
    Ok(text.to_string())
}

fn name_field(name: &Option<String>, field: &str) -> Result<Option<String>, ApiError> {
    name.as_deref().map(|name| checked_name(name, field)).transpose()
}

fn text_field(text: &Option<String>, field: &str) -> Result<Option<String>, ApiError> {
    text.as_deref().map(|text| checked_text(text, field)).transpose()
}

/// A repository entry from a request body (`url` required).
pub fn repository_entry(input: RepositoryInput) -> Result<RepositoryEntry, ApiError> {
    if input.url.is_empty() {
        return Err(invalid("`url` is required"));
    }
    let url = checked_text(&input.url, "url")?;
    let name = text_field(&input.name, "name")?.unwrap_or_else(|| {
        url.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_string()
    });
    Ok(RepositoryEntry {
        id: text_field(&input.id, "id")?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        url,
        name,
        branch: text_field(&input.branch, "branch")?.unwrap_or_default(),
        last_commit: text_field(&input.last_commit, "last_commit")?.unwrap_or_default(),
        metadata: input.metadata.unwrap_or_default(),
        accessed_at: text_field(&input.accessed_at, "accessed_at")?
            .unwrap_or_else(|| format_ms(now_ms())),
    })
}

/// A message template from a request body (`name` and `content` required).
pub fn message_template(input: TemplateInput) -> Result<MessageTemplate, ApiError> {
    let name = checked_name(&input.name, "name")?;
    let content = checked_text(&input.content, "content")?;
    let variables = input.variables.unwrap_or_else(|| placeholders(&content));
    Ok(MessageTemplate {
        id: text_field(&input.id, "id")?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        name,
        content,
        variables,
        category: text_field(&input.category, "category")?.unwrap_or_default(),
        metadata: input.metadata.unwrap_or_default(),
        created_at: text_field(&input.created_at, "created_at")?
            .unwrap_or_else(|| format_ms(now_ms())),
    })
}

/// Adds or replaces (by `url`) a repository in the history, newest first.
pub fn record_repository(profile: &mut Profile, entry: RepositoryEntry) {
    profile.repository_history.retain(|existing| existing.url != entry.url);
    profile.repository_history.insert(0, entry);
}

/// Adds or replaces (by `name`) a template.
pub fn add_template(profile: &mut Profile, template: MessageTemplate) {
    match profile.message_templates.iter_mut().find(|existing| existing.name == template.name) {
        Some(existing) => *existing = MessageTemplate { id: existing.id.clone(), ..template },
        None => profile.message_templates.push(template),
    }
}

/// A new profile for `owner` from a `POST /profiles` body.
pub fn create(owner: &str, body: &ProfileInput, rules: &Rules) -> Result<Profile, ApiError> {
    let now = format_ms(now_ms());
    let mut profile = Profile {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: owner.to_string(),
        name: name_field(&body.name, "name")?.ok_or_else(|| invalid("`name` is required"))?,
        description: String::new(),
        environment: BTreeMap::new(),
        tags: BTreeMap::new(),
        system_prompt: String::new(),
        repository_history: Vec::new(),
        message_templates: Vec::new(),
        created_at: now.clone(),
        updated_at: now,
        last_used_at: None,
    };
    update(&mut profile, body, rules)?;
    Ok(profile)
}

/// Applies a partial update: a present, non-null field replaces the stored value (objects
/// and arrays wholesale); an environment value sent back as `"<redacted>"` keeps the stored one.
pub fn update(profile: &mut Profile, body: &ProfileInput, rules: &Rules) -> Result<(), ApiError> {
    if let Some(name) = name_field(&body.name, "name")? {
        profile.name = name;
    }
    if let Some(description) = text_field(&body.description, "description")? {
        profile.description = description;
    }
    if let Some(prompt) = text_field(&body.system_prompt, "system_prompt")? {
        profile.system_prompt = prompt;
    }
    if let Some(environment) = &body.environment {
        let mut environment = environment.clone();
        environment.retain(|name, value| {
            if value != REDACTED {
                return true;
            }
            match profile.environment.get(name) {
                Some(stored) => {
                    *value = stored.clone();
                    true
                }
                None => false,
            }
        });
        validate::environment(&environment, rules.reserved_env)?;
        profile.environment = environment;
    }
    if let Some(tags) = &body.tags {
        validate::tags(tags)?;
        profile.tags = tags.clone();
    }
    if let Some(history) = &body.repository_history {
        profile.repository_history =
            history.iter().cloned().map(repository_entry).collect::<Result<_, _>>()?;
    }
    if let Some(inputs) = &body.message_templates {
        let mut templates = Vec::new();
        for input in inputs {
            let template = message_template(input.clone())?;
            if templates.iter().any(|existing: &MessageTemplate| existing.name == template.name) {
                return Err(invalid(format!("two templates are named {:?}", template.name)));
            }
            templates.push(template);
        }
        profile.message_templates = templates;
    }
    profile.updated_at = format_ms(now_ms());
    Ok(())
}

/// Names of the `{{name}}` placeholders in `content`, in order, each once.
pub fn placeholders(content: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty() && !names.iter().any(|known| known == name) {
            names.push(name.to_string());
        }
        rest = &after[end + 2..];
    }
    names
}

/// Fills `{{name}}` placeholders; a placeholder without a value is a 400 naming it.
pub fn render(content: &str, variables: &BTreeMap<String, String>) -> Result<String, ApiError> {
    let mut out = String::with_capacity(content.len());
    let mut rest = content;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = after[..end].trim();
        let value = variables.get(name).ok_or_else(|| {
            ApiError::bad_request(
                "missing_template_variable",
                format!("template variable `{name}` has no value"),
            )
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A request body, decoded with serde as the routes decode it.
    fn object<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).expect("decodes")
    }

    const RULES: Rules<'static> = Rules { reserved_env: &[] };

    #[test]
    fn templates_render_and_name_their_missing_variables() {
        let vars: BTreeMap<String, String> = [("code".to_string(), "fn x() {}".to_string())].into();
        assert_eq!(render("Review {{code}} now", &vars).expect("renders"), "Review fn x() {} now");
        assert_eq!(render("Review {{ code }}", &vars).expect("spaces"), "Review fn x() {}");
        let error = render("{{code}} and {{lang}}", &vars).expect_err("missing");
        assert!(error.to_string().contains("lang"));
        assert_eq!(placeholders("{{a}} {{b}} {{a}}"), vec!["a", "b"]);
    }

    #[test]
    fn partial_updates_replace_only_present_fields_and_keep_redacted_secrets() {
        let body = object(
            json!({"name": "Dev", "environment": {"API_KEY": "s3cret", "MODE": "x"}, "tags": {"team": "web"}}),
        );
        let mut profile = create("alice", &body, &RULES).expect("creates");
        update(
            &mut profile,
            &object(
                json!({"environment": {"API_KEY": "<redacted>", "MODE": "y"}, "description": null}),
            ),
            &RULES,
        )
        .expect("updates");
        assert_eq!(profile.environment["API_KEY"], "s3cret");
        assert_eq!(profile.environment["MODE"], "y");
        assert_eq!(profile.tags["team"], "web", "absent fields are kept");
        assert_eq!(profile.name, "Dev");
        let shown = redacted(profile);
        assert_eq!(shown.environment["API_KEY"], REDACTED);
        assert_eq!(shown.environment["MODE"], "y");
    }

    #[test]
    fn names_and_environments_are_checked() {
        for bad in
            [json!({}), json!({"name": ""}), json!({"name": "x".repeat(201)}), json!({"name": 5})]
        {
            let refused = match serde_json::from_value::<ProfileInput>(bad.clone()) {
                Ok(body) => create("a", &body, &RULES).is_err(),
                Err(_) => true,
            };
            assert!(refused, "{bad}");
        }
        let error =
            create("a", &object(json!({"name": "n", "environment": {"LD_PRELOAD": "x"}})), &RULES)
                .expect_err("denied name");
        assert!(error.to_string().contains("LD_PRELOAD"));
    }

    #[test]
    fn repositories_upsert_by_url_and_templates_by_name() {
        let mut profile = create("a", &object(json!({"name": "n"})), &RULES).expect("creates");
        record_repository(
            &mut profile,
            repository_entry(object(json!({"url": "owner/one"}))).expect("entry"),
        );
        record_repository(
            &mut profile,
            repository_entry(object(json!({"url": "owner/two"}))).expect("entry"),
        );
        record_repository(
            &mut profile,
            repository_entry(object(json!({"url": "owner/one", "branch": "dev"}))).expect("entry"),
        );
        let urls: Vec<&str> = profile.repository_history.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(urls, vec!["owner/one", "owner/two"]);
        assert_eq!(profile.repository_history[0].branch, "dev");
        assert_eq!(profile.repository_history[0].name, "one");
        add_template(
            &mut profile,
            message_template(object(json!({"name": "R", "content": "{{x}}"}))).expect("t"),
        );
        let first_id = profile.message_templates[0].id.clone();
        add_template(
            &mut profile,
            message_template(object(json!({"name": "R", "content": "new {{y}}"}))).expect("t"),
        );
        assert_eq!(profile.message_templates.len(), 1);
        assert_eq!(profile.message_templates[0].id, first_id, "same name replaces, keeping the id");
        assert_eq!(profile.message_templates[0].variables, vec!["y"]);
    }
}
