//! The HTTP listener: accepts connections, serves the router over HTTP/1.1 with a
//! header-read timeout, bounded headers and a stall timeout on request bodies, and drains
//! gracefully on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::{Config, OnShutdown};
use crate::proxy::{Peer, StallLimitedBody};
use crate::sessions::local::HostOptions;
use crate::shutdown::{Shutdown, Stage};
use crate::state::AppState;

/// Most request headers a client may send (hyper's default is 100).
const MAX_REQUEST_HEADERS: usize = 100;
/// Largest buffered request head in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Runs the proxy on `listener` until `shutdown` completes, then stops its services.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    run_with(config, listener, shutdown, HostOptions::default()).await
}

/// [`run`] with settings of the hosting process (which executable agents call back into,
/// whether every zombie child is reaped).
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
    host: HostOptions,
) -> anyhow::Result<()> {
    let state = AppState::build(config, shutdown.clone(), &host).await?;
    let app = crate::router::build(state.clone());
    let address = listener.local_addr().context("while reading the listening address")?;
    state.agent_tokens.set_proxy_url(proxy_url_for_agents(&state.config, address));
    tracing::info!(%address, "agentapi-proxy listening");
    tracing::info!(url = %dashboard_url(address), "dashboard");
    serve(listener, app, &state, &shutdown).await;
    match state.config.session.on_shutdown {
        OnShutdown::Terminate => state.sessions.terminate_all().await,
        OnShutdown::Keep => {
            tracing::info!(
                live = state.sessions.live_count(),
                "leaving agents running (on_shutdown: keep)"
            );
            state.sessions.release_leases().await;
        }
    }
    state.store.checkpoint().await?;
    tracing::info!("agentapi-proxy stopped");
    Ok(())
}

/// `APX_PROXY_URL`: `server.public_url`, else this listener's loopback address.
fn proxy_url_for_agents(config: &Config, address: SocketAddr) -> String {
    let public_url = config.server.public_url.trim_end_matches('/');
    if !public_url.is_empty() {
        return public_url.to_string();
    }
    let host = match address.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_string(),
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    format!("http://{host}:{}", address.port())
}

/// Serves `listener` from `server.workers` threads (one per CPU by default), each with its own single-threaded runtime
/// accepting on a duplicate of the listening socket. A connection, its requests and the
/// proxy's connections to agents then stay on one thread: no task hops between threads per
/// request (multi-threaded scheduling cost ~20 % more CPU per proxied request). Returns once
/// every worker has drained.
async fn serve(listener: TcpListener, app: Router, state: &AppState, shutdown: &Shutdown) {
    let workers = worker_count(state.config.server.workers);
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "cannot hand the listening socket to the workers");
            return;
        }
    };
    let mut finished = Vec::with_capacity(workers);
    for index in 0..workers {
        let (done, done_receiver) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker {
            index,
            listener: listener.try_clone(),
            app: app.clone(),
            state: state.clone(),
            shutdown: shutdown.clone(),
        };
        let spawned =
            std::thread::Builder::new().name(format!("http-worker-{index}")).spawn(move || {
                worker.run();
                drop(done);
            });
        match spawned {
            Ok(_) => finished.push(done_receiver),
            Err(error) => tracing::error!(%error, index, "cannot start a listener worker"),
        }
    }
    // The workers hold their own copies; the socket closes once each has stopped accepting.
    drop(listener);
    for done in finished {
        let _ = done.await;
    }
}

/// Listener worker threads: `server.workers`, or one per CPU when it is 0 (the proxy's share
/// of the machine, like nginx's `worker_processes auto`).
fn worker_count(configured: u64) -> usize {
    match usize::try_from(configured) {
        Ok(workers) if workers > 0 => workers,
        _ => std::thread::available_parallelism().map_or(2, usize::from),
    }
}

struct Worker {
    index: usize,
    listener: std::io::Result<std::net::TcpListener>,
    app: Router,
    state: AppState,
    shutdown: Shutdown,
}

impl Worker {
    fn run(self) {
        crate::proxy::enter_worker(self.index);
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, index = self.index, "cannot start a worker runtime");
                return;
            }
        };
        let Self { index, listener, app, state, shutdown } = self;
        runtime.block_on(async move {
            match listener.and_then(TcpListener::from_std) {
                Ok(listener) => accept_and_drain(index, listener, app, &state, &shutdown).await,
                Err(error) => tracing::error!(%error, index, "a listener worker has no socket"),
            }
        });
        // Pooled agent connections and tunnels left on this runtime end with it.
        runtime.shutdown_background();
    }
}

async fn accept_and_drain(
    worker: usize,
    listener: TcpListener,
    app: Router,
    state: &AppState,
    shutdown: &Shutdown,
) {
    let config = &state.config;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.server.header_read_timeout_seconds))
        .max_headers(MAX_REQUEST_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let service = Service::new(app.clone(), state.clone(), peer);
                    connections.spawn(serve_connection(http.clone(), stream, service, shutdown.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = shutdown.reached(Stage::Draining) => break,
        }
    }
    drop(listener);
    let drain = Duration::from_secs(config.server.drain_timeout_seconds);
    let open = connections.len();
    // Every worker drains; the first one says so for the server, once.
    if worker == 0 {
        tracing::info!(?drain, "draining open connections");
    }
    tracing::debug!(worker, open, "this worker drains its open connections");
    let drained = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        () = drained => {}
        () = tokio::time::sleep(drain) => tracing::warn!("drain timeout reached; closing the rest"),
        () = shutdown.reached(Stage::Immediate) => tracing::warn!("second signal: skipping the drain"),
    }
    connections.shutdown().await;
}

/// What one connection's requests are handed to: proxied session paths straight to the
/// proxy route, everything else to the router.
#[derive(Clone)]
struct Service {
    app: Router,
    state: AppState,
    peer: SocketAddr,
    /// The peer as the proxy path needs it, prepared once per connection.
    proxy_peer: Peer,
}

impl Service {
    fn new(app: Router, state: AppState, peer: SocketAddr) -> Self {
        let proxy_peer = Peer::new(peer, &state.proxy.trusted_proxies);
        Self { app, state, peer, proxy_peer }
    }

    /// The request with its body (if it has one) failing once it stalls for
    /// `proxy.body_read_timeout_seconds`.
    fn with_body_deadline(&self, request: hyper::Request<Incoming>) -> hyper::Request<Body> {
        match self.state.proxy.body_read_timeout {
            Some(limit) if !hyper::body::Body::is_end_stream(request.body()) => {
                request.map(|body| Body::new(StallLimitedBody::new(body, limit)))
            }
            _ => request.map(Body::new),
        }
    }

    fn call(
        &self,
        request: hyper::Request<Incoming>,
    ) -> impl std::future::Future<Output = Result<axum::response::Response, Infallible>> + use<>
    {
        let mut request = self.with_body_deadline(request);
        let cors_enabled = self.state.proxy.cors.is_enabled();
        if crate::routes::proxy::takes_fast_path(&request, cors_enabled) {
            let (state, peer) = (self.state.clone(), self.proxy_peer.clone());
            Either::Left(async move { Ok(crate::routes::proxy::fast(state, peer, request).await) })
        } else {
            request.extensions_mut().insert(ConnectInfo(self.peer));
            Either::Right(self.app.clone().oneshot(request))
        }
    }
}

async fn serve_connection(
    http: hyper::server::conn::http1::Builder,
    stream: TcpStream,
    service: Service,
    shutdown: Shutdown,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |request| service.call(request));
    let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => log_connection_end(result),
        () = shutdown.reached(Stage::Draining) => {
            connection.as_mut().graceful_shutdown();
            log_connection_end(connection.await);
        }
    }
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// The dashboard's address for a person to open: an unspecified bind address (`0.0.0.0`,
/// `::`) is shown as loopback, which reaches the same listener.
pub fn dashboard_url(address: std::net::SocketAddr) -> String {
    let mut shown = address;
    if shown.ip().is_unspecified() {
        shown.set_ip(match shown.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{shown}/ui/")
}
