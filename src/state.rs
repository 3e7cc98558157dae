//! `AppState`: the one place where the server's shared services are built and held.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;

use crate::auth::api_keys::ApiKeys;
use crate::auth::github::{GitHubApi, HttpGitHub};
use crate::auth::oauth::OAuth;
use crate::auth::{AuthServices, Authenticator};
use crate::chat::setup::{Chat, ChatDeps};
use crate::config::{Config, KUBERNETES_BACKEND};
use crate::data_dir::{self, DataDirLock};
use crate::proxy::ProxySettings;
use crate::replica::Replica;
use crate::sessions::agent_token::AgentTokens;
use crate::sessions::backend::SessionBackend;
use crate::sessions::kubernetes::names::INSTALLATION_LABEL;
use crate::sessions::kubernetes::{KubernetesBackend, KubernetesSessions};
use crate::sessions::local::{HostOptions, LocalBackend};
use crate::sessions::{Policy, SessionManager, Sharing};
use crate::shutdown::Shutdown;
use crate::store::agent_tokens::{AgentTokenStore, SqliteAgentTokens};
use crate::store::chat::{ChatStore, SqliteChat};
use crate::store::database::Database;
use crate::store::oauth::{OAuthStore, SqliteOAuth};
use crate::store::postgres::guard::ReplicaGuard;
use crate::store::postgres::{self, PgStore};
use crate::store::profiles::{ProfileStore, SqliteProfiles};
use crate::store::sessions::{SessionStore, SqliteSessions};
use crate::store::{Location, Store};
use crate::upstream;

/// Shared services of a running server; cheap to clone into handlers.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Services>);

/// What an [`AppState`] holds.
#[derive(Debug)]
pub struct Services {
    pub config: Config,
    pub store: Database,
    pub sessions: SessionManager,
    pub profiles: Arc<dyn ProfileStore>,
    pub auth: Authenticator,
    pub proxy: ProxySettings,
    pub shutdown: Shutdown,
    /// Held while the server lives: no second server may run on the same directory.
    pub data_dir_lock: DataDirLock,
    /// PostgreSQL with the local backend: held while the server lives, so no second server
    /// uses the same database.
    pub database_lock: Option<ReplicaGuard>,
    /// Every agent's `APX_SESSION_TOKEN` (sessions.md §5).
    pub agent_tokens: Arc<AgentTokens>,
    /// The chat bridges (chat.md), once connected; empty when none is enabled.
    pub chat: Arc<OnceLock<Chat>>,
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

impl AppState {
    /// Prepares `data_dir`, opens the store, loads sessions, and wires the services together.
    pub async fn build(
        config: Config,
        shutdown: Shutdown,
        host: &HostOptions,
    ) -> anyhow::Result<Self> {
        let on_postgres = config.persistence.enabled && config.persistence.is_postgres();
        let database = (config.persistence.enabled && !on_postgres).then(|| config.sqlite_path());
        let data_dir_lock =
            data_dir::prepare_and_lock(Path::new(&config.data_dir), database.as_deref())?;
        // Installed before anything is counted: metrics recorded earlier would be lost.
        crate::telemetry::handle();
        crate::telemetry::spawn_upkeep(shutdown.clone());
        let replica = Replica::from_config(&config);
        tracing::info!(
            replica_id = %replica.id,
            advertise_url = %replica.advertise_url,
            "this replica"
        );
        let (store, database_lock) = open_database(&config, &replica).await?;
        let repositories = Repositories::of(&store);
        let chat_store = repositories.chat.clone();
        let agent_tokens = Arc::new(
            AgentTokens::load(repositories.agent_tokens.clone())
                .await
                .context("while loading agent tokens")?,
        );
        let mut services = auth_services(&config, &repositories)?;
        services.agent_tokens = Some(agent_tokens.clone());
        let auth =
            Authenticator::new(&config, services).context("while setting up authentication")?;
        crate::auth::reload::spawn_watcher(auth.keys())?;
        // Proxy sessions exist whenever authentication is on (`POST /auth/login`).
        if auth.proxy_sessions().is_some() {
            OAuth::spawn_purger(repositories.oauth.clone(), shutdown.clone());
        }
        let client = upstream::client(Duration::from_secs(config.proxy.connect_timeout_seconds));
        let backend = session_backend(&config, &store, host, &client).await?;
        // Replicas share a database only with a backend all of them reach (scale-out.md §3).
        let shared = database_lock.is_none() && config.agent.backend == KUBERNETES_BACKEND;
        let sharing = Sharing { replica, change_log: store.change_log().filter(|_| shared) };
        let sessions = SessionManager::recover(
            Policy::from_config(&config),
            repositories.sessions,
            backend,
            client.clone(),
            shutdown.clone(),
            sharing,
        )
        .await
        .context("while loading stored sessions")?;
        if let Some(proxy_sessions) = auth.proxy_sessions() {
            let proxy_sessions = proxy_sessions.clone();
            sessions.on_sign_in_ended(move || proxy_sessions.ended());
        }
        if !sessions.is_shared() {
            // With other replicas, a session this one has not loaded may be newer than the load.
            agent_tokens.retain(|id| sessions.get(id).is_some()).await;
        }
        sessions.issue_agent_tokens(agent_tokens.clone());
        let proxy = ProxySettings::from_config(&config);
        let profiles = repositories.profiles;
        let chat = Arc::new(OnceLock::new());
        let deps = ChatDeps {
            config: Arc::new(config.clone()),
            store: chat_store,
            sessions: sessions.clone(),
            profiles: profiles.clone(),
            keys: auth.keys().clone(),
            shutdown: shutdown.clone(),
            shared: match &store {
                Database::Postgres(pg) if sessions.is_shared() => Some(pg.clone()),
                _ => None,
            },
        };
        crate::chat::setup::spawn(deps, chat.clone());
        Ok(Self(Arc::new(Services {
            config,
            store,
            sessions,
            profiles,
            auth,
            proxy,
            shutdown,
            data_dir_lock,
            database_lock,
            agent_tokens,
            chat,
        })))
    }
}

/// Where agents run (`agent.backend`): process groups on this host, or Pods on Kubernetes
/// (none of the local host machinery is set up then).
async fn session_backend(
    config: &Config,
    store: &Database,
    host: &HostOptions,
    client: &upstream::UpstreamClient,
) -> anyhow::Result<Arc<dyn SessionBackend>> {
    if config.agent.backend == KUBERNETES_BACKEND {
        let mut kubernetes = config.kubernetes.clone();
        let installation = store.installation_id().await?;
        kubernetes.labels.insert(INSTALLATION_LABEL.into(), installation);
        let engine = KubernetesBackend::connect(&kubernetes)
            .await
            .context("while setting up the Kubernetes client")?;
        return Ok(Arc::new(KubernetesSessions::new(engine, config)));
    }
    Ok(Arc::new(LocalBackend::new(config, host, client.clone())?))
}

/// The keys file, the GitHub API (when GitHub tokens or the OAuth flows are configured) and
/// the OAuth store that authentication is built from.
fn auth_services(config: &Config, repositories: &Repositories) -> anyhow::Result<AuthServices> {
    let github_config = &config.auth.github;
    let github = (github_config.enabled || github_config.oauth.is_some())
        .then(|| HttpGitHub::new(&github_config.base_url))
        .transpose()?
        .map(|api| Arc::new(api) as Arc<dyn GitHubApi>);
    Ok(AuthServices {
        keys: Arc::new(ApiKeys::load(config)?),
        github,
        oauth_store: repositories.oauth.clone(),
        agent_tokens: None,
    })
}

/// Opens the configured database: SQLite (a file, or memory with `persistence.enabled:
/// false`) or PostgreSQL, which this server then holds when its agents run on this host
/// (the local backend: one server per database); with the Kubernetes backend, replicas
/// share it.
async fn open_database(
    config: &Config,
    replica: &Replica,
) -> anyhow::Result<(Database, Option<ReplicaGuard>)> {
    let persistence = &config.persistence;
    if !persistence.enabled {
        tracing::warn!(
            "persistence.enabled is false: sessions live in memory and are lost on restart"
        );
        return Ok((Database::Sqlite(Store::open(Location::Memory)?), None));
    }
    if !persistence.is_postgres() {
        return Ok((Database::Sqlite(Store::open(Location::File(config.sqlite_path()))?), None));
    }
    let options = postgres::Options {
        url: persistence.postgres_url.clone(),
        pool_size: persistence.pool_size as usize,
        connect_timeout: Duration::from_secs(persistence.connect_timeout_seconds),
        replica_id: replica.id.clone(),
    };
    let store = PgStore::connect(&options).await?;
    if config.agent.backend == KUBERNETES_BACKEND {
        return Ok((Database::Postgres(store), None));
    }
    let guard = postgres::guard::acquire(&store).await?;
    Ok((Database::Postgres(store), Some(guard)))
}

/// The repositories of one database.
struct Repositories {
    sessions: Arc<dyn SessionStore>,
    profiles: Arc<dyn ProfileStore>,
    oauth: Arc<dyn OAuthStore>,
    agent_tokens: Arc<dyn AgentTokenStore>,
    chat: Arc<dyn ChatStore>,
}

impl Repositories {
    fn of(database: &Database) -> Self {
        use crate::store::postgres::agent_tokens::PgAgentTokens;
        use crate::store::postgres::chat::PgChat;
        use crate::store::postgres::{oauth::PgOAuth, profiles::PgProfiles, sessions::PgSessions};
        match database {
            Database::Sqlite(store) => Self {
                sessions: Arc::new(SqliteSessions::new(store.clone())),
                profiles: Arc::new(SqliteProfiles::new(store.clone())),
                oauth: Arc::new(SqliteOAuth::new(store.clone())),
                agent_tokens: Arc::new(SqliteAgentTokens::new(store.clone())),
                chat: Arc::new(SqliteChat::new(store.clone())),
            },
            Database::Postgres(store) => Self {
                sessions: Arc::new(PgSessions::new(store.clone())),
                profiles: Arc::new(PgProfiles::new(store.clone())),
                oauth: Arc::new(PgOAuth::new(store.clone())),
                agent_tokens: Arc::new(PgAgentTokens::new(store.clone())),
                chat: Arc::new(PgChat::new(store.clone())),
            },
        }
    }
}
