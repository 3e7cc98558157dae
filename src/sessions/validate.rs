//! Validation of everything a caller sends that reaches an agent or the filesystem
//! (security.md rules 2–4): environment names and values, tags, the `repository` tag,
//! and session ids. Pure functions; every rejection names the offending key.

use std::collections::BTreeMap;

use crate::error::ApiError;

/// Most variables one request may set.
pub const MAX_ENV_VARS: usize = 256;
/// Largest single environment value, in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 32 * 1024;
/// Largest sum of names and values, in bytes.
pub const MAX_ENV_TOTAL_BYTES: usize = 256 * 1024;
/// Most tags on one session.
pub const MAX_TAGS: usize = 64;
/// Longest tag value, in characters.
pub const MAX_TAG_VALUE_CHARS: usize = 1024;

/// Exact names a caller may never set: they change how shells, loaders and tools behave.
const DENIED_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "SHELL",
    "USER",
    "LOGNAME",
    "IFS",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "PROMPT_COMMAND",
    "ENV",
    "BASH_ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "GCONV_PATH",
    "LOCPATH",
    "NODE_OPTIONS",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PERL5OPT",
    "RUBYOPT",
    "GIT_SSH_COMMAND",
    "GITHUB_URL",
    "TMPDIR",
];

/// Name prefixes a caller may never use (`AGENTAPI_*` covers `AGENTAPI_PROXY_*`).
const DENIED_PREFIXES: &[&str] =
    &["BASH_FUNC_", "LD_", "DYLD_", "MALLOC_", "GIT_CONFIG_", "AGENTAPI_", "APX_"];

/// Checks a request's environment; names are compared case-insensitively with the deny list.
pub fn environment(
    environment: &BTreeMap<String, String>,
    reserved: &[&str],
) -> Result<(), ApiError> {
    if environment.len() > MAX_ENV_VARS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("`environment` has {} variables; at most {MAX_ENV_VARS}", environment.len()),
        ));
    }
    let mut total = 0;
    for (name, value) in environment {
        env_name(name, reserved)?;
        if value.contains('\0') {
            return Err(ApiError::bad_request(
                "invalid_env_value",
                format!("environment variable {name} contains a NUL byte"),
            ));
        }
        if value.len() > MAX_ENV_VALUE_BYTES {
            return Err(ApiError::bad_request(
                "invalid_env_value",
                format!("environment variable {name} is longer than {MAX_ENV_VALUE_BYTES} bytes"),
            ));
        }
        total += name.len() + value.len();
    }
    if total > MAX_ENV_TOTAL_BYTES {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("`environment` is larger than {MAX_ENV_TOTAL_BYTES} bytes in total"),
        ));
    }
    Ok(())
}

fn env_name(name: &str, reserved: &[&str]) -> Result<(), ApiError> {
    if !crate::config::is_env_name(name) {
        return Err(ApiError::bad_request(
            "invalid_env_name",
            format!(
                "environment variable name {} is not allowed: use letters, digits and _, \
                 not starting with a digit, at most 128 characters",
                quote_name(name)
            ),
        ));
    }
    let upper = name.to_ascii_uppercase();
    if DENIED_NAMES.contains(&upper.as_str())
        || DENIED_PREFIXES.iter().any(|prefix| upper.starts_with(prefix))
    {
        return Err(ApiError::bad_request(
            "invalid_env_name",
            format!("environment variable {name} may not be set by a request"),
        ));
    }
    if reserved.iter().any(|taken| taken.eq_ignore_ascii_case(name)) {
        return Err(ApiError::bad_request(
            "reserved_env_name",
            format!("environment variable {name} is set by the server for every agent"),
        ));
    }
    Ok(())
}

/// A name for an error message: printable and short, whatever the caller sent.
fn quote_name(name: &str) -> String {
    let shown: String = name.chars().take(64).collect();
    let suffix = if name.chars().count() > 64 { "..." } else { "" };
    format!("{:?}{suffix}", shown)
}

/// Checks tag keys and values; tags are stored and returned byte-exact.
pub fn tags(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_request(
            "invalid_tag",
            format!("`tags` has {} entries; at most {MAX_TAGS}", tags.len()),
        ));
    }
    for (key, value) in tags {
        if !is_tag_key(key) {
            return Err(ApiError::bad_request(
                "invalid_tag",
                format!(
                    "tag key {} is not allowed: letters, digits and . _ / -, starting with a \
                     letter or digit, at most 63 characters",
                    quote_name(key)
                ),
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE_CHARS {
            return Err(ApiError::bad_request(
                "invalid_tag",
                format!("tag {key} is longer than {MAX_TAG_VALUE_CHARS} characters"),
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ApiError::bad_request(
                "invalid_tag",
                format!("tag {key} contains a control character"),
            ));
        }
    }
    Ok(())
}

fn is_tag_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(b))
}

/// A repository named by a `repository` tag, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// One of `agent.repository_hosts`.
    pub host: String,
    /// `owner/repo`.
    pub full_name: String,
}

/// Accepts `owner/repo` (on the first allowed host), `https://HOST/owner/repo[.git]` or the
/// scp-like SSH form `git@HOST:owner/repo[.git]`, with `HOST` in `allowed_hosts`.
pub fn repository(text: &str, allowed_hosts: &[String]) -> Result<Repository, ApiError> {
    let invalid =
        |why: &str| ApiError::bad_request("invalid_repository", format!("tag `repository`: {why}"));
    let on_allowed_host = |host: &str, path| {
        if !allowed_hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(host)) {
            return Err(invalid("that host is not in agent.repository_hosts"));
        }
        Ok((host.to_ascii_lowercase(), path))
    };
    let (host, path) = match (text.strip_prefix("https://"), text.strip_prefix("git@")) {
        (Some(rest), _) => {
            let (host, path) = rest.split_once('/').ok_or_else(|| invalid("no owner/repo"))?;
            on_allowed_host(host, path)?
        }
        (None, Some(rest)) => {
            let (host, path) = rest.split_once(':').ok_or_else(|| invalid("no owner/repo"))?;
            on_allowed_host(host, path)?
        }
        _ if text.contains("://") => return Err(invalid("only https:// URLs are accepted")),
        _ => {
            let host =
                allowed_hosts.first().ok_or_else(|| invalid("no repository host is configured"))?;
            (host.clone(), text)
        }
    };
    let path = path.strip_suffix('/').unwrap_or(path);
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (owner, name) = path.split_once('/').ok_or_else(|| invalid("expected owner/repo"))?;
    if !is_repo_owner(owner) || !is_repo_name(name) {
        return Err(invalid(
            "expected owner/repo: owner of letters, digits, - and _, repo of letters, digits and . _ -",
        ));
    }
    Ok(Repository { host, full_name: format!("{owner}/{name}") })
}

/// A GitHub account name; enterprise managed users add `_shortcode`.
fn is_repo_owner(owner: &str) -> bool {
    let bytes = owner.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 39
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(b))
}

fn is_repo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A canonical lowercase UUID v4 (`xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`).
pub fn is_session_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return false;
    }
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    bytes.iter().enumerate().all(|(index, byte)| match index {
        8 | 13 | 18 | 23 => *byte == b'-',
        14 => *byte == b'4',
        19 => matches!(byte, b'8' | b'9' | b'a' | b'b'),
        _ => lower_hex(byte),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn code(error: ApiError) -> &'static str {
        match error {
            ApiError::BadRequest { code, .. } => code,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn malformed_names_are_refused_naming_the_key() {
        let long = "A".repeat(200);
        for name in ["", "1X", "A=B", "A\u{0}B", "ÄPFEL", long.as_str(), "A B", "A-B"] {
            let error = environment(&env(&[(name, "v")]), &[]).expect_err(name);
            assert_eq!(code(error), "invalid_env_name", "{name:?}");
        }
        let message = environment(&env(&[("1X", "v")]), &[]).expect_err("bad").to_string();
        assert!(message.contains("1X"), "{message}");
    }

    #[test]
    fn dangerous_names_are_refused_in_any_case() {
        for name in [
            "LD_PRELOAD",
            "ld_preload",
            "BASH_ENV",
            "PATH",
            "BASH_FUNC_x",
            "AGENTAPI_PORT",
            "AGENTAPI_PROXY_AUTH__ENABLED",
            "APX_SESSION_ID",
            "DYLD_INSERT_LIBRARIES",
            "GIT_CONFIG_COUNT",
            "MALLOC_ARENA_MAX",
            "PS1",
            "TMPDIR",
        ] {
            let error = environment(&env(&[(name, "v")]), &[]).expect_err(name);
            assert_eq!(code(error), "invalid_env_name", "{name}");
        }
    }

    #[test]
    fn names_the_operator_sets_are_reserved() {
        let error = environment(&env(&[("ANTHROPIC_API_KEY", "x")]), &["ANTHROPIC_API_KEY"])
            .expect_err("reserved");
        assert_eq!(code(error), "reserved_env_name");
    }

    #[test]
    fn values_keep_their_bytes_but_have_limits() {
        environment(&env(&[("EVIL", "$(touch /tmp/pwned) * -- --evil")]), &[]).expect("any bytes");
        assert_eq!(
            code(environment(&env(&[("A", "x\u{0}y")]), &[]).expect_err("nul")),
            "invalid_env_value"
        );
        let big = "x".repeat(MAX_ENV_VALUE_BYTES + 1);
        assert_eq!(
            code(environment(&env(&[("A", &big)]), &[]).expect_err("big")),
            "invalid_env_value"
        );
        let many: BTreeMap<String, String> =
            (0..=MAX_ENV_VARS).map(|i| (format!("V{i}"), String::new())).collect();
        assert_eq!(code(environment(&many, &[]).expect_err("many")), "invalid_request");
        let chunk = "y".repeat(MAX_ENV_VALUE_BYTES);
        let heavy: BTreeMap<String, String> =
            (0..9).map(|i| (format!("V{i}"), chunk.clone())).collect();
        assert_eq!(code(environment(&heavy, &[]).expect_err("heavy")), "invalid_request");
    }

    #[test]
    fn tags_accept_any_printable_value_and_refuse_bad_keys_and_controls() {
        tags(&env(&[("repository", "owner/repo"), ("x", "`id` $(touch /tmp/pwned) '\"\\\t")]))
            .expect("printable values pass");
        for key in ["", "-x", "a b", "ä", &"k".repeat(64)] {
            assert_eq!(code(tags(&env(&[(key, "v")])).expect_err(key)), "invalid_tag", "{key:?}");
        }
        assert_eq!(code(tags(&env(&[("k", "a\nb")])).expect_err("newline")), "invalid_tag");
        let long = "v".repeat(MAX_TAG_VALUE_CHARS + 1);
        assert_eq!(code(tags(&env(&[("k", &long)])).expect_err("long")), "invalid_tag");
    }

    #[test]
    fn repositories_are_owner_slash_repo_on_an_allowed_host() {
        let hosts = vec!["github.com".to_string(), "ghe.example.com".to_string()];
        let ok = |text: &str, host: &str, full: &str| {
            let repo = repository(text, &hosts).expect(text);
            assert_eq!((repo.host.as_str(), repo.full_name.as_str()), (host, full), "{text}");
        };
        ok("owner/repo", "github.com", "owner/repo");
        ok("https://github.com/owner/repo.git", "github.com", "owner/repo");
        ok("https://ghe.example.com/team-a/my_repo.v2/", "ghe.example.com", "team-a/my_repo.v2");
        ok("acme_corp/tool", "github.com", "acme_corp/tool");
        ok("git@github.com:o_1/r-2.git", "github.com", "o_1/r-2");
        ok("git@GHE.example.com:name_short/r", "ghe.example.com", "name_short/r");
        for bad in [
            "a/$(touch /tmp/pwned)",
            "owner",
            "owner/repo/extra",
            "owner/..",
            "-owner/repo",
            "https://evil.example/owner/repo",
            "http://github.com/owner/repo",
            "ssh://github.com/owner/repo",
            "owner/re po",
            "_owner/repo",
            "git@evil.example:owner/repo",
            "git@github.com/owner/repo",
            "git@github.com:owner/../x",
            "",
        ] {
            assert_eq!(
                code(repository(bad, &hosts).expect_err(bad)),
                "invalid_repository",
                "{bad}"
            );
        }
    }

    #[test]
    fn only_canonical_lowercase_v4_uuids_are_session_ids() {
        assert!(is_session_id(&uuid::Uuid::new_v4().to_string()));
        assert!(is_session_id("3f2b8c1e-9d4a-4b6e-8f21-0a1b2c3d4e5f"));
        for bad in [
            "../admin",
            "..%2Fadmin",
            "3F2B8C1E-9D4A-4B6E-8F21-0A1B2C3D4E5F",
            "3f2b8c1e-9d4a-1b6e-8f21-0a1b2c3d4e5f",
            "3f2b8c1e-9d4a-4b6e-7f21-0a1b2c3d4e5f",
            "3f2b8c1e9d4a4b6e8f210a1b2c3d4e5f",
            "",
        ] {
            assert!(!is_session_id(bad), "{bad}");
        }
        assert!(!is_session_id(&"a".repeat(10_000)));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn one(name: &str, value: &str) -> BTreeMap<String, String> {
        [(name.to_string(), value.to_string())].into()
    }

    proptest! {
        #[test]
        fn an_accepted_env_name_is_a_plain_identifier_outside_the_deny_list(name in "\\PC{0,40}") {
            if environment(&one(&name, "v"), &[]).is_ok() {
                prop_assert!(crate::config::is_env_name(&name));
                let upper = name.to_ascii_uppercase();
                prop_assert!(!DENIED_NAMES.contains(&upper.as_str()));
                prop_assert!(!DENIED_PREFIXES.iter().any(|prefix| upper.starts_with(prefix)));
            }
        }

        #[test]
        fn plain_identifiers_with_a_safe_prefix_are_accepted(name in "X_[A-Za-z0-9_]{0,100}") {
            prop_assert!(environment(&one(&name, "v"), &[]).is_ok());
        }

        #[test]
        fn any_value_without_nul_is_kept_as_is(value in "[^\\x00]{0,200}") {
            prop_assert!(environment(&one("VALUE", &value), &[]).is_ok());
        }

        #[test]
        fn accepted_tags_have_safe_keys_and_no_control_characters(key in "\\PC{0,70}", value in "\\PC{0,50}") {
            if tags(&one(&key, &value)).is_ok() {
                prop_assert!(is_tag_key(&key));
                prop_assert!(!value.chars().any(|c| c.is_control() && c != '\t'));
            }
        }

        #[test]
        fn accepted_repositories_are_owner_slash_name(text in "\\PC{0,60}") {
            if let Ok(repository) = repository(&text, &["github.com".to_string()]) {
                let (owner, name) = repository.full_name.split_once('/').expect("a slash");
                prop_assert!(is_repo_owner(owner) && is_repo_name(name));
                prop_assert!(!repository.full_name.contains(['$', '`', ' ', ';', '\'', '"']));
            }
        }

        #[test]
        fn only_lowercase_v4_uuids_are_session_ids(text in "[0-9a-fA-F-]{30,40}") {
            if is_session_id(&text) {
                prop_assert!(uuid::Uuid::parse_str(&text).is_ok_and(|id| id.get_version_num() == 4));
                prop_assert_eq!(text.to_ascii_lowercase(), text);
            }
        }
    }
}
