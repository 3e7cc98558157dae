//! The shape of `config.json`: every key, its type and its built-in default (config.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::kubernetes::{
    KUBERNETES_BACKEND, KubernetesConfig, KubernetesResources, KubernetesStorage,
    KubernetesToleration,
};

/// The effective configuration after defaults, file, environment and flags were merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub start_port: u16,
    pub end_port: u16,
    pub data_dir: String,
    pub auth: AuthConfig,
    pub persistence: PersistenceConfig,
    pub session: SessionConfig,
    pub agent: AgentConfig,
    pub proxy: ProxyConfig,
    pub server: ServerConfig,
    pub cors: CorsConfig,
    pub metrics: MetricsConfig,
    /// New: where session Pods run when `agent.backend` is `"kubernetes"`.
    pub kubernetes: KubernetesConfig,
    /// New: chat bridges (chat.md).
    pub chat: super::chat::ChatConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            start_port: 9000,
            end_port: 9999,
            data_dir: "./.agentapi-proxy".into(),
            auth: AuthConfig::default(),
            persistence: PersistenceConfig::default(),
            session: SessionConfig::default(),
            agent: AgentConfig::default(),
            proxy: ProxyConfig::default(),
            server: ServerConfig::default(),
            cors: CorsConfig::default(),
            metrics: MetricsConfig::default(),
            kubernetes: KubernetesConfig::default(),
            chat: super::chat::ChatConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub enabled: bool,
    #[serde(rename = "static")]
    pub static_keys: StaticAuthConfig,
    pub github: GithubConfig,
    /// New: people who may act without presenting a key (chat users), by user id.
    pub users: BTreeMap<String, super::chat::UserEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StaticAuthConfig {
    pub enabled: bool,
    pub header_name: String,
    pub api_keys: Vec<ApiKeyEntry>,
    pub keys_file: String,
}

impl Default for StaticAuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            header_name: "X-API-Key".into(),
            api_keys: Vec::new(),
            keys_file: String::new(),
        }
    }
}

/// One API key, inline or in the keys file. Exactly one of `key` / `key_hash` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiKeyEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    pub user_id: String,
    pub role: String,
    pub permissions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// The keys file: `{"api_keys": [...]}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApiKeysFile {
    #[serde(default)]
    pub api_keys: Vec<ApiKeyEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GithubConfig {
    pub enabled: bool,
    pub base_url: String,
    pub token_header: String,
    pub allowed_orgs: Vec<String>,
    pub cache_seconds: u64,
    pub user_mapping: UserMapping,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthConfig>,
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: "https://api.github.com".into(),
            token_header: "Authorization".into(),
            allowed_orgs: Vec::new(),
            cache_seconds: 300,
            user_mapping: UserMapping::default(),
            oauth: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserMapping {
    pub default_role: String,
    pub default_permissions: Vec<String>,
    pub team_role_mapping: BTreeMap<String, TeamRole>,
}

impl Default for UserMapping {
    fn default() -> Self {
        Self {
            default_role: "user".into(),
            default_permissions: Vec::new(),
            team_role_mapping: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamRole {
    pub role: String,
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OAuthConfig {
    pub client_id: String,
    pub client_secret: String,
    pub scope: String,
    pub base_url: String,
    pub allowed_redirect_uris: Vec<String>,
    pub session_ttl_seconds: u64,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret: String::new(),
            scope: "read:user read:org".into(),
            base_url: "https://github.com".into(),
            allowed_redirect_uris: Vec::new(),
            session_ttl_seconds: 86_400,
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PersistenceConfig {
    pub enabled: bool,
    pub backend: String,
    pub sqlite_path: String,
    /// `backend: "postgres"`: a libpq URL (`postgres://user:password@host:port/db?sslmode=`);
    /// a secret, redacted when printed.
    pub postgres_url: String,
    /// `backend: "postgres"`: connections kept open to the database.
    pub pool_size: u32,
    /// `backend: "postgres"`: how long startup retries an unreachable database.
    pub connect_timeout_seconds: u64,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            backend: "sqlite".into(),
            sqlite_path: String::new(),
            postgres_url: String::new(),
            pool_size: 8,
            connect_timeout_seconds: 30,
        }
    }
}

/// The URL may hold a password: debug output never shows it.
impl std::fmt::Debug for PersistenceConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = if self.postgres_url.is_empty() { "" } else { super::REDACTED };
        formatter
            .debug_struct("PersistenceConfig")
            .field("enabled", &self.enabled)
            .field("backend", &self.backend)
            .field("sqlite_path", &self.sqlite_path)
            .field("postgres_url", &url)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_seconds", &self.connect_timeout_seconds)
            .finish()
    }
}

impl PersistenceConfig {
    /// Whether the store is PostgreSQL (`backend: "postgres"`).
    pub fn is_postgres(&self) -> bool {
        self.backend == "postgres"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnShutdown {
    Terminate,
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Never,
    OnFailure,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    pub ready_timeout_seconds: u64,
    pub stop_grace_seconds: u64,
    pub max_sessions: u64,
    pub max_sessions_per_user: u64,
    pub idle_timeout_seconds: u64,
    pub retain_finished_seconds: u64,
    pub on_shutdown: OnShutdown,
    pub restart: RestartPolicy,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ready_timeout_seconds: 60,
            stop_grace_seconds: 10,
            max_sessions: 200,
            max_sessions_per_user: 0,
            idle_timeout_seconds: 0,
            retain_finished_seconds: 3600,
            on_shutdown: OnShutdown::Terminate,
            restart: RestartPolicy::Never,
        }
    }
}

/// `agent.server` value that selects the built-in echo agent.
pub const BUILTIN_ECHO_AGENT: &str = "builtin:echo";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentConfig {
    pub server: String,
    pub server_args: Vec<String>,
    pub command: Vec<String>,
    pub script: String,
    pub environment: BTreeMap<String, String>,
    pub pass_env: Vec<String>,
    pub repository_hosts: Vec<String>,
    pub log_max_bytes: u64,
    /// New: when the proxy runs as root, agents run as this user (no supplementary groups).
    pub run_as_user: String,
    /// New: resource limits for every agent process (0 = no limit).
    pub limits: AgentLimits,
    /// New: `[first, last]`: with `run_as_user`, each live session runs under its own uid
    /// from this range (empty = every agent runs as `run_as_user`).
    pub uid_range: Vec<u32>,
    /// New: how a session's processes are held together: `auto` (cgroups when the server
    /// can create them, else the record of descendants), `cgroup` (required) or
    /// `descendants` (the fallback, forced).
    pub containment: String,
    /// New: where agents run: `local` (process groups on this host) or `kubernetes`.
    pub backend: String,
}

/// `agent.limits`: per session; process and memory limits through the session's cgroup
/// where there is one, the rest (and the fallbacks) with `prlimit` before the agent runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentLimits {
    /// The session's `pids.max`; without a pids controller, `RLIMIT_NPROC` (per uid).
    pub max_processes: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// `RLIMIT_AS` in bytes.
    pub address_space_bytes: u64,
    /// The session's `memory.max` (cgroup v2) or `memory.limit_in_bytes` (v1); 0 = none.
    pub memory_bytes: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            server: "agentapi".into(),
            server_args: Vec::new(),
            command: vec!["claude".into()],
            script: String::new(),
            environment: BTreeMap::new(),
            pass_env: Vec::new(),
            repository_hosts: vec!["github.com".into()],
            log_max_bytes: 10 * 1024 * 1024,
            run_as_user: String::new(),
            limits: AgentLimits::default(),
            uid_range: Vec::new(),
            containment: "auto".into(),
            backend: "local".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    pub connect_timeout_seconds: u64,
    pub header_timeout_seconds: u64,
    pub sse_heartbeat_seconds: u64,
    pub max_body_bytes: u64,
    pub strip_credentials: bool,
    pub trusted_proxies: Vec<String>,
    /// New: open proxied streams one user may hold (security.md rule 18); `0` = unlimited.
    pub max_streams_per_user: u64,
    /// New: longest pause inside a request body before it is aborted; `0` = no limit.
    pub body_read_timeout_seconds: u64,
    /// New: serve agent pages without the sandbox CSP (security.md rule 20).
    pub trust_agent_pages: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            connect_timeout_seconds: 5,
            header_timeout_seconds: 120,
            sse_heartbeat_seconds: 15,
            max_body_bytes: 10 * 1024 * 1024,
            strip_credentials: true,
            trusted_proxies: Vec::new(),
            max_streams_per_user: 200,
            body_read_timeout_seconds: 30,
            trust_agent_pages: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub bind: String,
    /// New: the listening port (`-p/--port` overrides it).
    pub port: u16,
    pub public_url: String,
    pub header_read_timeout_seconds: u64,
    pub drain_timeout_seconds: u64,
    pub insecure_cookies: bool,
    /// Listener threads, each with its own runtime; `0` = one per CPU.
    pub workers: u64,
    /// New: this replica's name among several on one PostgreSQL (scale-out.md §3); empty =
    /// the hostname and a random suffix, new at each start.
    pub replica_id: String,
    /// New: where other replicas reach this one (never used to proxy a session).
    pub advertise_url: String,
    /// New: how long a replica's lease on the sessions it supervises holds without renewal
    /// (renewed every third of it); another replica takes them over after that.
    pub lease_ttl_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            port: 8080,
            public_url: String::new(),
            header_read_timeout_seconds: 10,
            drain_timeout_seconds: 10,
            insecure_cookies: false,
            workers: 0,
            replica_id: String::new(),
            advertise_url: String::new(),
            lease_ttl_seconds: 15,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsConfig {
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    pub public: bool,
}
