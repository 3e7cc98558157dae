//! Names and labels of a session's cluster objects: one DNS-1035 name per session (Service
//! names must start with a letter), the labels that find them again, and the user label
//! hashed when the user id is not a valid label value.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::config::is_label_value;

/// The label every object we create carries, and its value.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "agentapi-proxy");
/// The label naming the session an object belongs to (the Service's selector).
pub const SESSION_LABEL: &str = "agentapi-proxy/session-id";
/// The label naming the database (installation) a session belongs to: two installations in
/// one namespace list only their own objects (objects without it predate it and count as
/// ours).
pub const INSTALLATION_LABEL: &str = "agentapi-proxy/installation";
/// The label naming the session's owner.
pub const USER_LABEL: &str = "agentapi-proxy/user";
/// The annotation holding the full user id when the label had to be hashed.
pub const USER_ANNOTATION: &str = "agentapi-proxy/user-id";
/// The annotation holding the session's tags as one JSON object (tag keys may hold several
/// `/` and upper case, which annotation keys may not).
pub const TAGS_ANNOTATION: &str = "agentapi-proxy/tags";

/// The name shared by a session's Service, Pod, Secret, PVC and NetworkPolicy.
///
/// Session ids are canonical lowercase UUIDs (36 characters of `[0-9a-f-]`), which may start
/// with a digit; the prefix makes them valid DNS-1035 labels (40 characters).
pub fn object_name(session_id: &str) -> String {
    format!("apx-{session_id}")
}

/// The session id an object name came from, if it is one of ours.
pub fn session_of(name: &str) -> Option<&str> {
    name.strip_prefix("apx-").filter(|id| is_label_value(id))
}

/// The user label value: the user id itself when it is label-safe, else `u-` and the first
/// 40 hex digits of its SHA-256 (the full id goes into [`USER_ANNOTATION`]).
pub fn user_label(user_id: &str) -> String {
    if !user_id.is_empty() && is_label_value(user_id) {
        return user_id.to_string();
    }
    let digest = Sha256::digest(user_id.as_bytes());
    format!("u-{}", &hex::encode(digest)[..40])
}

/// The labels of every object of one session: the operator's extra labels, then ours (ours
/// win on a clash).
pub fn session_labels(
    extra: &BTreeMap<String, String>,
    session_id: &str,
    user_id: &str,
) -> BTreeMap<String, String> {
    let mut labels = extra.clone();
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    labels.insert(SESSION_LABEL.into(), session_id.into());
    labels.insert(USER_LABEL.into(), user_label(user_id));
    labels
}

/// The label selector of everything we manage.
pub fn managed_selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{is_dns_label, is_label_value};

    #[test]
    fn a_session_id_becomes_a_dns_1035_name_and_back() {
        let id = "0f4c5e3a-1b2c-4d5e-8f90-a1b2c3d4e5f6";
        let name = object_name(id);
        assert!(is_dns_label(&name) && name.starts_with(|c: char| c.is_ascii_lowercase()));
        assert_eq!(session_of(&name), Some(id));
        assert_eq!(session_of("other-pod"), None);
    }

    #[test]
    fn unsafe_user_ids_are_hashed_into_a_label_value() {
        assert_eq!(user_label("octocat"), "octocat");
        for unsafe_id in ["", "user@example.com", "-x", &"a".repeat(64), "a b"] {
            let label = user_label(unsafe_id);
            assert!(is_label_value(&label) && label.starts_with("u-"), "{unsafe_id} → {label}");
        }
        assert_ne!(user_label("a b"), user_label("a c"));
    }

    #[test]
    fn our_labels_win_over_the_operators() {
        let extra = BTreeMap::from([
            (SESSION_LABEL.to_string(), "spoofed".to_string()),
            ("team".to_string(), "red".to_string()),
        ]);
        let labels = session_labels(&extra, "id-1", "octocat");
        assert_eq!(labels[SESSION_LABEL], "id-1");
        assert_eq!(labels["team"], "red");
        assert_eq!(labels[MANAGED_BY.0], MANAGED_BY.1);
    }
}
