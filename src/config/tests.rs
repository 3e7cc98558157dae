//! Unit tests for loading, merging, checking and redacting configuration.

use std::path::PathBuf;

use serde_json::json;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write fixture");
        path
    }

    fn options(&self, file: Option<PathBuf>, env: &[(&str, &str)]) -> LoadOptions {
        LoadOptions {
            config_path: file,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            flags: FlagOverrides::default(),
            working_dir: self.dir.path().to_path_buf(),
        }
    }
}

fn problems(result: Result<Loaded, ConfigError>) -> Vec<String> {
    match result {
        Err(ConfigError::Invalid { problems }) => problems,
        other => panic!("expected invalid configuration, got {other:?}"),
    }
}

#[test]
fn without_a_file_the_built_in_defaults_apply() {
    let fixture = Fixture::new();
    let loaded = load(&fixture.options(None, &[])).expect("defaults load");
    assert_eq!(loaded.source, ConfigSource::Defaults);
    assert_eq!(loaded.config, Config::default());
    assert_eq!(loaded.config.start_port, 9000);
    assert_eq!(loaded.config.agent.command, vec!["claude".to_string()]);
}

#[test]
fn config_json_in_the_working_directory_is_read_when_no_path_is_given() {
    let fixture = Fixture::new();
    fixture.write("config.json", r#"{"start_port": 9100}"#);
    let loaded = load(&fixture.options(None, &[])).expect("loads");
    assert!(matches!(loaded.source, ConfigSource::File(_)));
    assert_eq!(loaded.config.start_port, 9100);
}

#[test]
fn precedence_is_defaults_then_file_then_environment_then_flags() {
    let fixture = Fixture::new();
    let file = fixture.write(
        "c.json",
        r#"{"server": {"port": 1000, "bind": "127.0.0.2"}, "session": {"max_sessions": 5}}"#,
    );
    let env = [("AGENTAPI_PROXY_SERVER__PORT", "2000"), ("AGENTAPI_PROXY_END_PORT", "9500")];
    let loaded = load(&fixture.options(Some(file.clone()), &env)).expect("loads");
    assert_eq!(loaded.config.server.port, 2000, "environment beats the file");
    assert_eq!(loaded.config.server.bind, "127.0.0.2", "the file beats defaults");
    assert_eq!(loaded.config.session.max_sessions, 5);
    assert_eq!(loaded.config.session.stop_grace_seconds, 10, "untouched keys keep defaults");
    assert_eq!(loaded.config.end_port, 9500);

    let mut options = fixture.options(Some(file), &env);
    options.flags = FlagOverrides { port: Some(3000), bind: Some("127.0.0.3".into()) };
    let loaded = load(&options).expect("loads");
    assert_eq!(loaded.config.server.port, 3000, "flags beat everything");
    assert_eq!(loaded.config.server.bind, "127.0.0.3");
}

#[test]
fn environment_names_ignore_case_and_json_values_fill_lists_and_maps() {
    let fixture = Fixture::new();
    let env = [
        ("AGENTAPI_PROXY_Auth__Enabled", "TRUE"),
        ("AGENTAPI_PROXY_AUTH__STATIC__ENABLED", "true"),
        ("AGENTAPI_PROXY_AUTH__STATIC__API_KEYS", r#"[{"key": "k", "user_id": "a"}]"#),
        ("AGENTAPI_PROXY_CORS__ALLOWED_ORIGINS", r#"["https://app.example.com"]"#),
        ("AGENTAPI_PROXY_AGENT__ENVIRONMENT", r#"{"ANTHROPIC_API_KEY": "sk-1"}"#),
        ("AGENTAPI_PROXY_SESSION__ON_SHUTDOWN", "keep"),
    ];
    let loaded = load(&fixture.options(None, &env)).expect("loads");
    assert!(loaded.config.auth.enabled);
    assert!(loaded.config.auth.static_keys.enabled);
    assert_eq!(loaded.config.cors.allowed_origins, vec!["https://app.example.com".to_string()]);
    assert_eq!(loaded.config.agent.environment["ANTHROPIC_API_KEY"], "sk-1");
    assert_eq!(loaded.config.session.on_shutdown, OnShutdown::Keep);
}

#[test]
fn environment_values_of_the_wrong_type_are_problems_naming_the_variable() {
    let fixture = Fixture::new();
    let env = [
        ("AGENTAPI_PROXY_START_PORT", "ninety"),
        ("AGENTAPI_PROXY_CORS__ALLOWED_ORIGINS", "[not json"),
        ("AGENTAPI_PROXY_AUTH__ENABLED", "maybe"),
    ];
    let found = problems(load(&fixture.options(None, &env)));
    assert_eq!(found.len(), 3, "{found:?}");
    for name in ["START_PORT", "CORS__ALLOWED_ORIGINS", "AUTH__ENABLED"] {
        assert!(found.iter().any(|p| p.contains(name)), "{name} missing in {found:?}");
    }
}

#[test]
fn unknown_keys_and_unknown_environment_variables_are_warned_not_fatal() {
    let fixture = Fixture::new();
    let file = fixture.write("c.json", r#"{"strat_port": 1, "session": {"max_sesions": 2}}"#);
    let env = [("AGENTAPI_PROXY_NO_SUCH_KEY", "1"), ("AGENTAPI_PROXY_API_KEY", "client key")];
    let loaded = load(&fixture.options(Some(file), &env)).expect("loads");
    let warnings = loaded.warnings.join("\n");
    assert!(warnings.contains("`strat_port`"), "{warnings}");
    assert!(warnings.contains("`session.max_sesions`"), "{warnings}");
    assert!(warnings.contains("AGENTAPI_PROXY_NO_SUCH_KEY"), "{warnings}");
    assert!(!warnings.contains("AGENTAPI_PROXY_API_KEY"), "the client's variable is not ours");
}

/// Inside `auth` a misspelt key could leave the server open: it stops startup, naming the
/// key and the nearest known one; the same for an `AGENTAPI_PROXY_AUTH__...` variable.
#[test]
fn unknown_keys_inside_auth_are_problems_with_a_suggestion() {
    let fixture = Fixture::new();
    let file = fixture.write(
        "c.json",
        r#"{"auth": {"enabeld": true, "static": {"enabled": true, "api_keys": [],
                     "keys_flie": "k.json"}}}"#,
    );
    let env = [("AGENTAPI_PROXY_AUTH__GITHUB__ENABLD", "true")];
    let found = problems(load(&fixture.options(Some(file), &env)));
    let text = found.join("\n");
    assert!(
        text.contains("`auth.enabeld`") && text.contains("did you mean `auth.enabled`"),
        "{text}"
    );
    assert!(
        text.contains("`auth.static.keys_flie`") && text.contains("`auth.static.keys_file`"),
        "{text}"
    );
    assert!(text.contains("AGENTAPI_PROXY_AUTH__GITHUB__ENABLD"), "{text}");
    assert_eq!(found.len(), 3, "{found:?}");
}

/// `auth.enabled` with nothing that can let a caller in locks everyone out: a startup error
/// that says what to add. Keys, a keys file, GitHub tokens or OAuth each suffice.
#[test]
fn auth_enabled_without_any_credential_source_is_a_problem() {
    let fixture = Fixture::new();
    for locked_out in [
        r#"{"auth": {"enabled": true}}"#,
        r#"{"auth": {"enabled": true, "static": {"enabled": true}}}"#,
        r#"{"auth": {"enabled": true, "static": {"enabled": false, "api_keys": [{"key": "k", "user_id": "a"}]}}}"#,
    ] {
        let file = fixture.write("c.json", locked_out);
        let found = problems(load(&fixture.options(Some(file), &[])));
        assert!(
            found
                .iter()
                .any(|p| p.contains("nothing lets anyone in") && p.contains("generate-token")),
            "{locked_out}: {found:?}"
        );
    }
    fixture.write("keys.json", r#"{"api_keys": []}"#);
    let keys_file = fixture.dir.path().join("keys.json").display().to_string();
    for open_to_someone in [
        json!({"auth": {"enabled": true, "static": {"enabled": true, "api_keys": [{"key": "k", "user_id": "a"}]}}}),
        json!({"auth": {"enabled": true, "static": {"enabled": true, "keys_file": keys_file}}}),
        json!({"auth": {"enabled": true, "github": {"enabled": true}}}),
    ] {
        let file = fixture.write("c.json", &open_to_someone.to_string());
        load(&fixture.options(Some(file), &[])).expect("loads");
    }
}

#[test]
fn variables_in_file_strings_are_expanded_and_unset_ones_are_named() {
    let fixture = Fixture::new();
    let file = fixture.write(
        "c.json",
        r#"{"agent": {"environment": {"ANTHROPIC_API_KEY": "${TEST_ANTHROPIC}", "X": "a-${TEST_SUFFIX}-b"}},
            "data_dir": "${TEST_DATA}/x"}"#,
    );
    let env = [("TEST_ANTHROPIC", "sk-secret"), ("TEST_SUFFIX", "mid"), ("TEST_DATA", "/srv")];
    let loaded = load(&fixture.options(Some(file.clone()), &env)).expect("loads");
    assert_eq!(loaded.config.agent.environment["ANTHROPIC_API_KEY"], "sk-secret");
    assert_eq!(loaded.config.agent.environment["X"], "a-mid-b");
    assert_eq!(loaded.config.data_dir, "/srv/x");

    let found = problems(load(&fixture.options(Some(file), &env[..1])));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().any(|p| p.contains("TEST_SUFFIX")), "{found:?}");
    assert!(found.iter().any(|p| p.contains("TEST_DATA")), "{found:?}");
}

#[test]
fn every_type_problem_in_a_file_is_reported_at_once() {
    let fixture = Fixture::new();
    let file = fixture.write(
        "c.json",
        r#"{"start_port": "x", "end_port": 70000, "auth": {"enabled": "yes"},
            "session": {"on_shutdown": "explode", "max_sessions": -1},
            "agent": {"command": "claude"}}"#,
    );
    let found = problems(load(&fixture.options(Some(file), &[])));
    for key in [
        "`start_port`",
        "`end_port`",
        "`auth.enabled`",
        "`session.on_shutdown`",
        "`session.max_sessions`",
        "`agent.command`",
    ] {
        assert!(found.iter().any(|p| p.contains(key)), "{key} missing in {found:?}");
    }
    assert_eq!(found.len(), 6, "{found:?}");
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let fixture = Fixture::new();
    let file = fixture.write(
        "c.json",
        r#"{"start_port": 9500, "end_port": 9400,
            "session": {"ready_timeout_seconds": 0},
            "server": {"bind": "not-an-ip"},
            "cors": {"allowed_origins": ["https://ok.example", "https://bad.example/path"]},
            "proxy": {"trusted_proxies": ["10.0.0.0/8", "10.0.0.0/33"]},
            "agent": {"environment": {"PATH": "/evil", "1BAD": "x"}},
            "auth": {"static": {"api_keys": [{"key": "k1", "user_id": "alice", "permissions": ["session:fly"]}]},
                     "github": {"oauth": {"client_id": "id"}}}}"#,
    );
    let found = problems(load(&fixture.options(Some(file), &[])));
    for needle in [
        "`end_port`",
        "`session.ready_timeout_seconds`",
        "`server.bind`",
        "`cors.allowed_origins[1]`",
        "`proxy.trusted_proxies[1]`",
        "PATH is set by the proxy",
        "\"1BAD\"",
        "session:fly",
        "`auth.github.oauth.client_secret`",
    ] {
        assert!(found.iter().any(|p| p.contains(needle)), "{needle} missing in {found:?}");
    }
    assert_eq!(found.len(), 9, "{found:?}");
}

#[test]
fn a_missing_file_names_its_path_and_bad_json_names_line_and_column() {
    let fixture = Fixture::new();
    let missing = fixture.dir.path().join("missing.json");
    match load(&fixture.options(Some(missing.clone()), &[])) {
        Err(error @ ConfigError::Unreadable { .. }) => {
            assert!(error.to_string().contains(&missing.display().to_string()))
        }
        other => panic!("expected unreadable, got {other:?}"),
    }
    let broken = fixture.write("broken.json", "{\n  \"start_port\": 9000,\n  oops\n}");
    match load(&fixture.options(Some(broken), &[])) {
        Err(ConfigError::Syntax { line, column, .. }) => assert_eq!((line, column), (3, 3)),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn api_key_entries_are_checked_and_the_keys_file_is_read() {
    let fixture = Fixture::new();
    let keys = fixture.write(
        "keys.json",
        r#"{"api_keys": [{"key_hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
             "user_id": "bob", "role": "admin", "permissions": ["*"], "expires_at": "2030-01-01T00:00:00Z"}]}"#,
    );
    let file = fixture.write(
        "c.json",
        &json!({"auth": {"static": {"keys_file": keys, "api_keys": [
            {"key": "k", "user_id": "alice", "role": "user", "permissions": ["session:create"]}
        ]}}})
        .to_string(),
    );
    load(&fixture.options(Some(file), &[])).expect("valid keys load");
    assert_eq!(read_keys_file(&keys).expect("reads").len(), 1);

    let bad_keys = fixture.write(
        "bad.json",
        r#"{"api_keys": [{"key": "a", "user_id": "x", "expires_at": "next tuesday"}]}"#,
    );
    let file = fixture.write(
        "c2.json",
        &json!({"auth": {"static": {"keys_file": bad_keys, "api_keys": [
            {"key": "k", "key_hash": "sha256:00", "user_id": ""}
        ]}}})
        .to_string(),
    );
    let found = problems(load(&fixture.options(Some(file), &[])));
    let all = found.join("\n");
    assert!(all.contains("next tuesday"), "{all}");
    assert!(all.contains("both `key` and `key_hash`"), "{all}");
    assert!(all.contains("`user_id` is required"), "{all}");
}

#[test]
fn redaction_hides_every_secret() {
    let mut config = Config::default();
    config.auth.static_keys.api_keys.push(ApiKeyEntry {
        key: Some("ap_plaintext_secret".into()),
        user_id: "alice".into(),
        ..ApiKeyEntry::default()
    });
    config.auth.github.oauth = Some(OAuthConfig {
        client_id: "public-id".into(),
        client_secret: "oauth-secret".into(),
        ..OAuthConfig::default()
    });
    config.agent.environment.insert("ANTHROPIC_API_KEY".into(), "sk-ant-secret".into());
    let printed = config.redacted_json().to_string();
    for secret in ["ap_plaintext_secret", "oauth-secret", "sk-ant-secret"] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
    assert!(printed.contains("public-id"));
    assert!(printed.contains("ANTHROPIC_API_KEY"));
    assert!(printed.contains(REDACTED));
}

#[test]
fn run_as_user_must_name_an_existing_unprivileged_user() {
    let fixture = Fixture::new();
    for (user, needle) in [("no-such-user-xyz", "no user"), ("root", "must not be root")] {
        let file = fixture.write("c.json", &json!({"agent": {"run_as_user": user}}).to_string());
        let found = problems(load(&fixture.options(Some(file), &[])));
        assert!(found.iter().any(|p| p.contains(needle)), "{user}: {found:?}");
    }
}

#[test]
fn uid_range_must_be_a_positive_ordered_pair_without_the_proxys_uid_and_with_a_user() {
    let fixture = Fixture::new();
    let own = nix::unistd::geteuid().as_raw();
    let mut cases = vec![
        (json!({"uid_range": [5, 6, 7], "run_as_user": "nobody"}), "must be `[first, last]`"),
        (json!({"uid_range": [300000, 200000], "run_as_user": "nobody"}), "0 < first <= last"),
        (json!({"uid_range": [0, 10], "run_as_user": "nobody"}), "0 < first <= last"),
        (json!({"uid_range": [200000, 265535]}), "needs `agent.run_as_user`"),
        (json!({"uid_range": ["a", 2]}), "`agent.uid_range[0]`"),
        (json!({"containment": "jail"}), "`agent.containment`"),
    ];
    if own > 0 {
        cases.push((json!({"uid_range": [own, own + 1], "run_as_user": "nobody"}), "own uid"));
    }
    for (agent, needle) in cases {
        let file = fixture.write("c.json", &json!({ "agent": agent }).to_string());
        let found = problems(load(&fixture.options(Some(file), &[])));
        assert!(found.iter().any(|p| p.contains(needle)), "{agent}: {found:?}");
    }
    let file = fixture.write(
        "c.json",
        &json!({"agent": {"containment": "descendants", "limits": {"memory_bytes": 1 << 30}}})
            .to_string(),
    );
    let loaded = load(&fixture.options(Some(file), &[])).expect("loads");
    assert_eq!(loaded.config.agent.containment, "descendants");
    assert_eq!(loaded.config.agent.limits.memory_bytes, 1 << 30);
}

#[test]
fn server_workers_defaults_to_one_per_cpu_and_is_bounded() {
    let fixture = Fixture::new();
    let loaded = load(&fixture.options(None, &[("AGENTAPI_PROXY_SERVER__WORKERS", "3")]));
    assert_eq!(loaded.expect("loads").config.server.workers, 3);
    assert_eq!(Config::default().server.workers, 0, "0 = one per CPU");
    let file = fixture.write("c.json", r#"{"server": {"workers": 1025}}"#);
    let found = problems(load(&fixture.options(Some(file), &[])));
    assert!(found.iter().any(|p| p.contains("server.workers") && p.contains("1024")), "{found:?}");
}

#[test]
fn the_postgres_url_is_redacted_and_never_in_debug_output() {
    let mut config = Config::default();
    config.persistence.backend = "postgres".into();
    config.persistence.postgres_url = "postgres://agent:pg-secret@db.example:5432/agents".into();
    let printed = config.redacted_json().to_string();
    assert!(!printed.contains("pg-secret"), "{printed}");
    assert_eq!(config.redacted_json()["persistence"]["postgres_url"], REDACTED);
    let debug = format!("{config:?}");
    assert!(!debug.contains("pg-secret") && debug.contains("pool_size"), "{debug}");
}

#[test]
fn postgres_settings_are_checked_without_quoting_the_url() {
    let problems = |url: &str, pool_size: u32, timeout: u64| {
        let mut config = Config::default();
        config.persistence.backend = "postgres".into();
        config.persistence.postgres_url = url.into();
        config.persistence.pool_size = pool_size;
        config.persistence.connect_timeout_seconds = timeout;
        validate::validate(&config).problems
    };
    assert!(problems("postgres://agent:pw@db.example:5432/agents", 8, 30).is_empty());
    assert!(problems("postgres:///agents?host=/run/postgresql", 1, 1).is_empty(), "a socket");
    for bad in [
        "",
        "postgres://agent:pw-secret@db.example:not-a-port/agents",
        "postgres://agent:pw-secret@db.example:5432/agents?sslmode=sometimes",
        "postgres://agent:pw-secret@db.example:5432",
        "mysql-ish nonsense 'unterminated",
    ] {
        let found = problems(bad, 8, 30);
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        assert!(found[0].contains("persistence.postgres_url"), "{found:?}");
        assert!(!found[0].contains("pw-secret"), "{found:?}");
    }
    assert_eq!(problems("postgres://db.example/agents", 0, 0).len(), 2, "pool and timeout");
}

#[test]
fn chat_slack_tokens_are_redacted_and_its_settings_checked() {
    let fixture = Fixture::new();
    let file = fixture.write(
        "c.json",
        &json!({"chat": {"slack": {
            "enabled": true, "mode": "socket", "bot_token": "${SLACK_BOT_TOKEN}",
            "app_token": "xapp-app-secret", "signing_secret": "signing-secret-value",
            "users": {"U1": "alice"}, "channel_profiles": {"C1": "backend"}
        }}})
        .to_string(),
    );
    let options = fixture.options(Some(file), &[("SLACK_BOT_TOKEN", "xoxb-bot-secret")]);
    let loaded = load(&options).expect("valid");
    assert_eq!(loaded.config.chat.slack.bot_token, "xoxb-bot-secret");
    assert_eq!(loaded.config.chat.slack.users["U1"], "alice");
    let printed = loaded.config.redacted_json().to_string();
    for secret in ["xoxb-bot-secret", "xapp-app-secret", "signing-secret-value"] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
    assert!(printed.contains("U1"));
}

#[test]
fn chat_slack_refuses_unknown_keys_and_missing_tokens() {
    let fixture = Fixture::new();
    let file = fixture.write(
        "c.json",
        &json!({"chat": {"slack": {"enabled": true, "mode": "events", "chanels": ["C1"],
            "reply": "loud", "history_messages": 5000}}})
        .to_string(),
    );
    let all = problems(load(&fixture.options(Some(file), &[]))).join("\n");
    assert!(all.contains("chat.slack.chanels"), "{all}");
    assert!(all.contains("did you mean `chat.slack.channels`"), "{all}");
    assert!(all.contains("chat.slack.reply"), "{all}");
    assert!(all.contains("chat.slack.history_messages"), "{all}");
    let file = fixture.write(
        "d.json",
        &json!({"chat": {"slack": {"enabled": true, "mode": "events"}}}).to_string(),
    );
    let all = problems(load(&fixture.options(Some(file), &[]))).join("\n");
    assert!(all.contains("chat.slack.bot_token"), "{all}");
    assert!(all.contains("chat.slack.signing_secret"), "{all}");
}
