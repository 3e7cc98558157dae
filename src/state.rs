//! `AppState`: the one place where the server's shared services are built and held.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::auth::api_keys::ApiKeys;
use crate::auth::github::{GitHubApi, HttpGitHub};
use crate::auth::oauth::OAuth;
use crate::auth::{AuthServices, Authenticator};
use crate::config::{Config, KUBERNETES_BACKEND};
use crate::data_dir::{self, DataDirLock};
use crate::proxy::ProxySettings;
use crate::sessions::backend::SessionBackend;
use crate::sessions::kubernetes::{KubernetesBackend, KubernetesSessions};
use crate::sessions::local::{HostOptions, LocalBackend};
use crate::sessions::{Policy, SessionManager};
use crate::shutdown::Shutdown;
use crate::store::oauth::SqliteOAuth;
use crate::store::profiles::{ProfileStore, SqliteProfiles};
use crate::store::sessions::SqliteSessions;
use crate::store::{Location, Store};
use crate::upstream;

/// Shared services of a running server; cheap to clone into handlers.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Services>);

/// What an [`AppState`] holds.
#[derive(Debug)]
pub struct Services {
    pub config: Config,
    pub store: Store,
    pub sessions: SessionManager,
    pub profiles: Arc<dyn ProfileStore>,
    pub auth: Authenticator,
    pub proxy: ProxySettings,
    pub shutdown: Shutdown,
    /// Held while the server lives: no second server may run on the same directory.
    pub data_dir_lock: DataDirLock,
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
        let database = config.persistence.enabled.then(|| config.sqlite_path());
        let data_dir_lock =
            data_dir::prepare_and_lock(Path::new(&config.data_dir), database.as_deref())?;
        // Installed before anything is counted: metrics recorded earlier would be lost.
        crate::telemetry::handle();
        crate::telemetry::spawn_upkeep(shutdown.clone());
        let location = if config.persistence.enabled {
            Location::File(config.sqlite_path())
        } else {
            tracing::warn!(
                "persistence.enabled is false: sessions live in memory and are lost on restart"
            );
            Location::Memory
        };
        let store = Store::open(location)?;
        let auth = Authenticator::new(&config, auth_services(&config, &store)?)
            .context("while setting up authentication")?;
        crate::auth::reload::spawn_watcher(auth.keys())?;
        // Proxy sessions exist whenever authentication is on (`POST /auth/login`).
        if auth.proxy_sessions().is_some() {
            OAuth::spawn_purger(Arc::new(SqliteOAuth::new(store.clone())), shutdown.clone());
        }
        let client = upstream::client(Duration::from_secs(config.proxy.connect_timeout_seconds));
        let backend = session_backend(&config, host, &client).await?;
        let sessions = SessionManager::recover(
            Policy::from_config(&config),
            Arc::new(SqliteSessions::new(store.clone())),
            backend,
            client.clone(),
            shutdown.clone(),
        )
        .await
        .context("while loading stored sessions")?;
        let proxy = ProxySettings::from_config(&config);
        let profiles: Arc<dyn ProfileStore> = Arc::new(SqliteProfiles::new(store.clone()));
        Ok(Self(Arc::new(Services {
            config,
            store,
            sessions,
            profiles,
            auth,
            proxy,
            shutdown,
            data_dir_lock,
        })))
    }
}

/// Where agents run (`agent.backend`): process groups on this host, or Pods on Kubernetes
/// (none of the local host machinery is set up then).
async fn session_backend(
    config: &Config,
    host: &HostOptions,
    client: &upstream::UpstreamClient,
) -> anyhow::Result<Arc<dyn SessionBackend>> {
    if config.agent.backend == KUBERNETES_BACKEND {
        let engine = KubernetesBackend::connect(&config.kubernetes)
            .await
            .context("while setting up the Kubernetes client")?;
        return Ok(Arc::new(KubernetesSessions::new(engine, config)));
    }
    Ok(Arc::new(LocalBackend::new(config, host, client.clone())?))
}

/// The keys file, the GitHub API (when GitHub tokens or the OAuth flows are configured) and
/// the OAuth store that authentication is built from.
fn auth_services(config: &Config, store: &Store) -> anyhow::Result<AuthServices> {
    let github_config = &config.auth.github;
    let github = (github_config.enabled || github_config.oauth.is_some())
        .then(|| HttpGitHub::new(&github_config.base_url))
        .transpose()?
        .map(|api| Arc::new(api) as Arc<dyn GitHubApi>);
    Ok(AuthServices {
        keys: Arc::new(ApiKeys::load(config)?),
        github,
        oauth_store: Arc::new(SqliteOAuth::new(store.clone())),
    })
}
