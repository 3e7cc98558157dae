//! Sessions: the registry (an in-memory cache of the store, rebuilt at boot), admission
//! (capacity and quotas), and the lifecycle every route goes through — start, look up,
//! stop, delete, purge. No axum types; the agent processes themselves live behind the
//! [`backend::SessionBackend`] trait.

pub mod agent_command;
pub mod agent_token;
pub mod backend;
pub mod feed;
pub mod first_prompt;
mod follow;
mod housekeeping;
mod initial_prompt;
pub mod kubernetes;
mod leases;
pub mod local;
mod recovery;
pub mod search;
mod search_pages;
mod session;
mod supervisor;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agentapi_proxy_client::{ExitReason, SessionStatus};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, RestartPolicy};
use crate::error::ApiError;
use crate::replica::Replica;
use crate::shutdown::{Shutdown, Stage};
use crate::store::changes::ChangeLog;
use crate::store::sessions::{Admission, Admitted, SessionFilter, SessionRow, SessionStore};
use crate::upstream::UpstreamClient;
use backend::{AgentSpec, SessionBackend};
use feed::{SessionChange, SessionFeed};
use search::PagedStore;
pub use session::{
    Control, LiveState, Session, StartFailure, StopReason, detail_of_row, summary_of_row,
};

/// Seconds a refused caller is told to wait before trying again.
const RETRY_AFTER_SECONDS: u64 = 5;

/// What a caller asks for when starting a session (already parsed, not yet validated).
#[derive(Debug, Clone, Default)]
pub struct StartInput {
    pub environment: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// The first prompt, delivered once the agent is `stable`; chosen by [`first_prompt`].
    pub first_prompt: Option<String>,
    pub system_prompt: Option<String>,
}

/// Session policies taken from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_sessions: u64,
    pub max_sessions_per_user: u64,
    pub stop_grace: Duration,
    pub idle_timeout: Option<Duration>,
    pub retain_finished: Duration,
    pub restart: RestartPolicy,
    pub repository_hosts: Vec<String>,
}

impl Policy {
    pub fn from_config(config: &Config) -> Self {
        let session = &config.session;
        Self {
            max_sessions: session.max_sessions,
            max_sessions_per_user: session.max_sessions_per_user,
            stop_grace: Duration::from_secs(session.stop_grace_seconds),
            idle_timeout: (session.idle_timeout_seconds > 0)
                .then(|| Duration::from_secs(session.idle_timeout_seconds)),
            retain_finished: Duration::from_secs(session.retain_finished_seconds),
            restart: session.restart,
            repository_hosts: config.agent.repository_hosts.clone(),
        }
    }
}

/// How this server shares its database with other replicas (scale-out.md §3).
#[derive(Debug, Clone)]
pub struct Sharing {
    pub replica: Replica,
    /// What other replicas change, when several share the database (PostgreSQL, with a
    /// backend every replica reaches); `None`: this server is the database's only one.
    pub change_log: Option<Arc<dyn ChangeLog>>,
}

/// The session registry and lifecycle; cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionManager(Arc<ManagerState>);

/// What a [`SessionManager`] shares with its supervisors and housekeeping tasks.
#[derive(Debug)]
pub(crate) struct ManagerState {
    policy: Policy,
    registry: RwLock<HashMap<String, Arc<Session>>>,
    /// The store, through `search` (so each write drops the kept `/search` pages).
    store: Arc<dyn SessionStore>,
    search: Arc<PagedStore>,
    backend: Arc<dyn SessionBackend>,
    /// Names a request's environment may not use (set by the proxy or the operator).
    reserved_env: Vec<String>,
    client: UpstreamClient,
    shutdown: Shutdown,
    /// The runtime supervisors run on: the one the manager was built on, never a listener
    /// worker's (those end with their connections).
    runtime: tokio::runtime::Handle,
    /// Sessions created, removed, or changing `status`/`agent_status`.
    feed: SessionFeed,
    /// Issues every new agent its `APX_SESSION_TOKEN` (set once, after recovery).
    agent_tokens: std::sync::OnceLock<Arc<agent_token::AgentTokens>>,
    /// This replica, and the other replicas' changes when the database is shared.
    sharing: Sharing,
    /// Called when another replica ended a signed-in session (logout).
    sign_in_ended: std::sync::OnceLock<Callback>,
}

/// Something to call when an event happens.
pub(crate) struct Callback(Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Callback {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Callback")
    }
}

impl SessionManager {
    /// Builds the manager from the store: every stored session is recovered (sessions.md
    /// "Recovery at startup") before the purge and port-watch tasks start.
    pub async fn recover(
        policy: Policy,
        store: Arc<dyn SessionStore>,
        backend: Arc<dyn SessionBackend>,
        client: UpstreamClient,
        shutdown: Shutdown,
        sharing: Sharing,
    ) -> anyhow::Result<Self> {
        let reserved_env = backend.reserved_env_names();
        let search = Arc::new(PagedStore::new(store));
        let inner = Arc::new(ManagerState {
            policy,
            registry: RwLock::new(HashMap::new()),
            store: search.clone(),
            search,
            backend,
            reserved_env,
            client,
            shutdown,
            runtime: tokio::runtime::Handle::current(),
            feed: SessionFeed::default(),
            agent_tokens: std::sync::OnceLock::new(),
            sharing,
            sign_in_ended: std::sync::OnceLock::new(),
        });
        recovery::recover_stored_sessions(&inner).await?;
        if let Some(log) = inner.sharing.change_log.clone() {
            leases::spawn_keeper(Arc::downgrade(&inner));
            follow::spawn_follower(Arc::downgrade(&inner), log);
        }
        housekeeping::spawn_purger(Arc::downgrade(&inner));
        if inner.backend.has_port_range() {
            housekeeping::spawn_port_watch(Arc::downgrade(&inner));
        }
        Ok(Self(inner))
    }

    /// Validates, admits and starts a session. With `wait`, returns once the agent answers
    /// (or failed); otherwise at once, with the session `starting`.
    pub async fn start_session(
        &self,
        owner: &str,
        input: StartInput,
        wait: bool,
    ) -> Result<Arc<Session>, ApiError> {
        let reserved: Vec<&str> = self.0.reserved_env.iter().map(String::as_str).collect();
        validate::environment(&input.environment, &reserved)?;
        validate::tags(&input.tags)?;
        let repository = input
            .tags
            .get("repository")
            .filter(|text| !text.is_empty())
            .map(|text| validate::repository(text, &self.0.policy.repository_hosts))
            .transpose()?;
        let session = self.admit(owner, &input.tags, &input.environment)?;
        // Attached before the row exists, so a DELETE from now on reaches the supervisor.
        let (control, commands) = mpsc::unbounded_channel();
        session.attach_supervisor(control);
        let admission = Admission {
            max_sessions: self.0.policy.max_sessions,
            max_sessions_per_user: self.0.policy.max_sessions_per_user,
        };
        let replica = &self.0.sharing.replica;
        let inserted = self
            .0
            .store
            .insert_admitted(
                session.to_row(),
                admission,
                replica.id.clone(),
                replica.lease_ttl_ms(),
            )
            .await;
        match inserted {
            Ok(Admitted::Inserted) => {}
            Ok(refused) => {
                self.0.unregister(&session);
                return Err(refused_start(refused, admission));
            }
            Err(error) => {
                crate::telemetry::store_error();
                tracing::error!(error = format!("{error:#}"), "could not record a new session");
                self.0.unregister(&session);
                return Err(ApiError::StoreUnavailable);
            }
        }
        self.0.feed.updated(|| session.detail());
        let access = match self.0.agent_tokens.get() {
            Some(tokens) => match tokens.issue(&session.id).await {
                Ok(access) => Some(access),
                Err(error) => {
                    crate::telemetry::store_error();
                    tracing::error!(
                        error = format!("{error:#}"),
                        "could not record an agent token"
                    );
                    let _ = self.0.store.delete(session.id.clone()).await;
                    self.0.unregister(&session);
                    return Err(ApiError::StoreUnavailable);
                }
            },
            None => None,
        };
        let spec = AgentSpec {
            session_id: session.id.clone(),
            user_id: owner.to_string(),
            environment: input.environment,
            repository,
            system_prompt: input.system_prompt,
            access,
        };
        let begin = supervisor::Begin::Launch { spec, first_message: input.first_prompt };
        let supervision = supervisor::supervise(self.0.clone(), session.clone(), begin, commands);
        self.0.runtime.spawn(supervision);
        if wait {
            let state = session.wait_while_starting().await;
            if let Some(failure) = state.failure {
                return Err(failure.into_api_error());
            }
            if state.status != SessionStatus::Active {
                return Err(ApiError::AgentUnavailable {
                    code: "agent_unavailable",
                    message: format!("the session is {}", state.status.as_str()),
                    details: None,
                });
            }
        }
        Ok(session)
    }

    /// Capacity and quota checks and the registry insert, as one step.
    fn admit(
        &self,
        owner: &str,
        tags: &BTreeMap<String, String>,
        environment: &BTreeMap<String, String>,
    ) -> Result<Arc<Session>, ApiError> {
        if self.0.shutdown.stage() != Stage::Running {
            return Err(ApiError::Draining);
        }
        let mut registry = self.0.registry_write();
        let live: Vec<&Arc<Session>> =
            registry.values().filter(|session| session.status().is_live()).collect();
        let admission = Admission {
            max_sessions: self.0.policy.max_sessions,
            max_sessions_per_user: self.0.policy.max_sessions_per_user,
        };
        if live.len() as u64 >= admission.max_sessions {
            return Err(refused_start(Admitted::AtCapacity, admission));
        }
        let per_user = admission.max_sessions_per_user;
        if per_user > 0 && live.iter().filter(|s| s.user_id == owner).count() as u64 >= per_user {
            return Err(refused_start(Admitted::QuotaExceeded, admission));
        }
        let session = Arc::new(Session::new_starting(
            owner.to_string(),
            tags.clone(),
            environment.keys().cloned().collect(),
            self.0.feed.clone(),
        ));
        registry.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    /// From now on every new agent gets a token from `tokens` (sessions.md §5).
    pub fn issue_agent_tokens(&self, tokens: Arc<agent_token::AgentTokens>) {
        let _ = self.0.agent_tokens.set(tokens);
    }

    /// Where the session's agent answers, when the session is active and what listens there
    /// is its agent (for code that talks to the agent itself, like the chat bridge).
    pub fn agent_endpoint(&self, session: &Session) -> Option<crate::endpoint::Endpoint> {
        let state = session.state();
        let agent = state.process.filter(|_| state.status == SessionStatus::Active)?;
        self.0.backend.owns_endpoint(&agent).then_some(agent.endpoint)
    }

    /// Environment names a request (or profile) may not set.
    pub fn reserved_env(&self) -> Vec<&str> {
        self.0.reserved_env.iter().map(String::as_str).collect()
    }

    /// The session with this id, whoever owns it (callers check visibility).
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.0.registry_read().get(id).cloned()
    }

    /// The `/search` answer (JSON) for `filter`: stored sessions, newest first, and how many
    /// match in all.
    pub async fn search_json(&self, filter: SessionFilter) -> Result<bytes::Bytes, ApiError> {
        self.0.search.search_json(filter).await.map_err(ApiError::Internal)
    }

    /// The last `lines` lines of the agent's output.
    pub async fn logs(&self, session: &Session, lines: usize) -> String {
        self.0.backend.logs(&session.id, lines).await
    }

    /// Stops the agent (if it runs), waits until its process group is gone, then removes the
    /// session. Concurrent calls share one stop and all succeed.
    pub async fn delete(&self, session: &Arc<Session>) -> Result<(), ApiError> {
        let mut deleted = session.deletion.lock().await;
        if *deleted {
            return Ok(());
        }
        let stopped = if session.is_supervised_here() || self.0.sharing.change_log.is_none() {
            self.stop(session, StopReason::Deleted).await
        } else {
            leases::stop_elsewhere(&self.0, session).await?
        };
        if !stopped {
            return Err(ApiError::StopTimeout);
        }
        if let Err(error) = self.0.store.delete(session.id.clone()).await {
            crate::telemetry::store_error();
            tracing::error!(error = format!("{error:#}"), "could not delete a session row");
            return Err(ApiError::StoreUnavailable);
        }
        self.0.backend.remove_files(&session.id).await;
        if let Some(tokens) = self.0.agent_tokens.get() {
            tokens.forget(&session.id).await;
        }
        self.0.unregister(session);
        *deleted = true;
        Ok(())
    }

    /// Asks the session's supervisor to stop the agent and waits until it has; false when
    /// the backend could not stop it in time (the session stays `stopping`).
    async fn stop(&self, session: &Session, reason: StopReason) -> bool {
        let (done, finished) = oneshot::channel();
        if session.send(Control::Stop { reason, done }) {
            return finished.await.unwrap_or(true);
        }
        true
    }

    /// Server shutdown with `on_shutdown: terminate`: stops every live session in parallel.
    pub async fn terminate_all(&self) {
        let live: Vec<Arc<Session>> = self
            .0
            .registry_read()
            .values()
            .filter(|session| session.status().is_live() && session.is_supervised_here())
            .cloned()
            .collect();
        tracing::info!(count = live.len(), "stopping every session this server supervises");
        let stops = live.iter().map(|session| self.stop(session, StopReason::ServerShutdown));
        futures_util::future::join_all(stops).await;
    }

    /// Server shutdown with `on_shutdown: keep`: other replicas may take this one's sessions
    /// at once instead of waiting for the leases to run out.
    pub async fn release_leases(&self) {
        if self.0.sharing.change_log.is_none() {
            return;
        }
        match self.0.store.release_leases(self.0.sharing.replica.id.clone()).await {
            Ok(count) => tracing::info!(count, "released this replica's sessions"),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "could not release leases"),
        }
    }

    /// Called whenever another replica ends a signed-in session (logout), so open streams
    /// here re-check their credentials.
    pub fn on_sign_in_ended(&self, callback: impl Fn() + Send + Sync + 'static) {
        let _ = self.0.sign_in_ended.set(Callback(Box::new(callback)));
    }

    /// Whether other replicas share the database (then sessions come and go through them
    /// too).
    pub fn is_shared(&self) -> bool {
        self.0.sharing.change_log.is_some()
    }

    /// How the backend contains sessions (`cgroup_v2`, `cgroup_v1`, `descendants`).
    pub fn containment_mode(&self) -> Option<&'static str> {
        self.0.backend.containment_mode()
    }

    /// How many sessions are in each state (for metrics).
    pub fn count_by_status(&self) -> Vec<(&'static str, usize)> {
        let statuses = [
            SessionStatus::Starting,
            SessionStatus::Active,
            SessionStatus::Stopping,
            SessionStatus::Exited,
            SessionStatus::Failed,
        ];
        let mut counts = [0usize; 5];
        for session in self.0.registry_read().values() {
            let status = session.status();
            if let Some(index) = statuses.iter().position(|known| *known == status) {
                counts[index] += 1;
            }
        }
        statuses.iter().zip(counts).map(|(status, count)| (status.as_str(), count)).collect()
    }

    /// Changes from now on; subscribe before taking [`SessionManager::newest_visible`], so
    /// that nothing falls between the two.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<SessionChange> {
        self.0.feed.subscribe()
    }

    /// The sessions `visible` admits (by owner), newest first, at most `limit`.
    pub fn newest_visible(
        &self,
        visible: impl Fn(&str) -> bool,
        limit: usize,
    ) -> Vec<Arc<Session>> {
        let mut sessions: Vec<Arc<Session>> = self
            .0
            .registry_read()
            .values()
            .filter(|session| visible(&session.user_id))
            .cloned()
            .collect();
        sessions.sort_unstable_by(|a, b| (b.started_at_ms, &b.id).cmp(&(a.started_at_ms, &a.id)));
        sessions.truncate(limit);
        sessions
    }

    /// Number of sessions that hold a port (starting, active or stopping).
    pub fn live_count(&self) -> usize {
        self.0.registry_read().values().filter(|s| s.status().is_live()).count()
    }
}

impl ManagerState {
    fn registry_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Session>>> {
        self.registry.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn registry_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Session>>> {
        self.registry.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to the session: first to the store, then to the live state, so
    /// anyone who sees the change (a waiting `/start`, a `/search`) finds it stored too. A
    /// store failure is logged, not fatal (the registry stays authoritative meanwhile).
    /// Returns false, changing nothing, when another replica took the session meanwhile (the
    /// supervisor is then told to let go).
    async fn record(&self, session: &Session, change: impl Fn(&mut LiveState)) -> bool {
        let mut next = session.state();
        change(&mut next);
        if !self.save(session, session.row_with(&next)).await {
            return false;
        }
        session.update(change);
        true
    }

    /// Takes a session out of the registry and announces it.
    fn unregister(&self, session: &Session) {
        if self.registry_write().remove(&session.id).is_some() {
            self.feed.removed(&session.id, &session.user_id);
        }
    }

    /// Saves the row while this replica holds the session; false when another took it.
    async fn save(&self, session: &Session, row: SessionRow) -> bool {
        let session_id = row.id.clone();
        match self.store.save_state_as(row, self.sharing.replica.id.clone()).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(%session_id, "another replica took the session; letting it go");
                session.send(Control::LetGo);
                false
            }
            Err(error) => {
                crate::telemetry::store_error();
                tracing::error!(%session_id, error = format!("{error:#}"), "could not save session state");
                true
            }
        }
    }
}

/// The answer to a start the limits refuse (this replica's registry, or the store's count
/// across replicas).
fn refused_start(refused: Admitted, admission: Admission) -> ApiError {
    match refused {
        Admitted::QuotaExceeded => ApiError::QuotaExceeded {
            message: format!(
                "you already run {} sessions, the most allowed",
                admission.max_sessions_per_user
            ),
            retry_after_seconds: RETRY_AFTER_SECONDS,
        },
        Admitted::AtCapacity | Admitted::Inserted => ApiError::AtCapacity {
            message: "the server runs as many sessions as it may".into(),
            retry_after_seconds: RETRY_AFTER_SECONDS,
        },
    }
}

/// The reason recorded when an agent's own exit ends a session.
fn reason_for_exit(exit: backend::Exit) -> (Option<i32>, ExitReason) {
    match exit {
        backend::Exit::Signal(_) => (None, ExitReason::KilledBySignal),
        backend::Exit::Code(_) | backend::Exit::Unknown => (exit.code(), ExitReason::AgentExited),
    }
}
