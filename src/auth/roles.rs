//! Turning a GitHub identity into a role and permissions through `auth.github.user_mapping`:
//! the defaults plus every matching `team_role_mapping` entry; permissions are the union,
//! the role is the highest-ranked match ([`RANKED_ROLES`]; other role names are kept but
//! never outrank a known one).

use std::collections::BTreeSet;

use super::RANKED_ROLES;
use crate::config::UserMapping;

/// Rank of a role: known roles by their place in [`RANKED_ROLES`], every other name below
/// all of them.
fn rank(role: &str) -> i64 {
    RANKED_ROLES.iter().position(|known| *known == role).map_or(-1, |index| index as i64)
}

/// The role and permissions of a member of `teams` (each `org/team-slug`, lower case).
pub fn map_teams(mapping: &UserMapping, teams: &[String]) -> (String, Vec<String>) {
    let mut role = mapping.default_role.clone();
    let mut permissions: BTreeSet<String> = mapping.default_permissions.iter().cloned().collect();
    for (team, granted) in &mapping.team_role_mapping {
        let team = team.to_ascii_lowercase();
        if !teams.contains(&team) {
            continue;
        }
        permissions.extend(granted.permissions.iter().cloned());
        if !granted.role.is_empty() && rank(&granted.role) > rank(&role) {
            role = granted.role.clone();
        }
    }
    (role, permissions.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TeamRole;

    fn mapping() -> UserMapping {
        let mut mapping = UserMapping {
            default_role: "guest".into(),
            default_permissions: vec!["session:list".into()],
            ..UserMapping::default()
        };
        let mut team = |name: &str, role: &str, permissions: &[&str]| {
            mapping.team_role_mapping.insert(
                name.into(),
                TeamRole {
                    role: role.into(),
                    permissions: permissions.iter().map(|p| p.to_string()).collect(),
                },
            );
        };
        team("Acme/Admins", "admin", &["*"]);
        team("acme/devs", "developer", &["session:create", "session:access"]);
        team("acme/odd", "wizard", &["profile:read"]);
        mapping
    }

    #[test]
    fn no_team_gives_the_defaults() {
        let (role, permissions) = map_teams(&mapping(), &[]);
        assert_eq!(role, "guest");
        assert_eq!(permissions, vec!["session:list"]);
    }

    #[test]
    fn permissions_are_united_and_the_highest_known_role_wins() {
        let teams = vec!["acme/devs".to_string(), "acme/admins".to_string(), "acme/odd".into()];
        let (role, permissions) = map_teams(&mapping(), &teams);
        assert_eq!(role, "admin", "team keys compare case-insensitively");
        assert_eq!(
            permissions,
            vec!["*", "profile:read", "session:access", "session:create", "session:list"]
        );
    }

    #[test]
    fn unknown_role_names_never_outrank_known_ones() {
        let (role, _) = map_teams(&mapping(), &["acme/odd".to_string()]);
        assert_eq!(role, "guest", "a known default beats an unknown team role");
        let mut only_odd = mapping();
        only_odd.default_role = "visitor".into();
        let (role, _) = map_teams(&only_odd, &["acme/odd".to_string()]);
        assert_eq!(role, "visitor", "two unknown names: the default stays");
        let (role, _) = map_teams(&only_odd, &["acme/devs".into(), "acme/odd".into()]);
        assert_eq!(role, "developer");
    }
}
