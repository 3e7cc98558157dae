//! Keep-alive connections from the proxy path to one agent. Each session owns one
//! [`AgentConnections`]: no shared map to hash into, no task spawned per request, and the
//! sockets go when the session does. Idle connections are kept per listener worker, so a
//! connection is only used by the thread whose runtime drives it. A connection returns to the
//! pool when its response body has been read to the end; one dropped half-way is closed by
//! hyper, never reused. A new connection is used only once the session layer's
//! [`EndpointCheck`] confirms that whatever listens on the endpoint is the agent's (a
//! stranger that took the port is never sent a request). Idle connections are kept per
//! endpoint: a restarted agent may answer somewhere else.

use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::endpoint::{Endpoint, Host};

thread_local! {
    static WORKER_INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks this thread as listener worker `index` (threads that never call it count as 0), so
/// the agent connections it makes stay with the thread whose runtime drives them.
pub fn enter_worker(index: usize) {
    WORKER_INDEX.set(index);
}

/// Idle connections kept per agent and listener worker.
const MAX_IDLE: usize = 64;
/// Separate idle lists; listener worker `n` uses list `n % WORKER_SLOTS`.
const WORKER_SLOTS: usize = 8;
/// An idle connection older than this is closed instead of reused.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// Why a request never got response headers from the agent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connecting to the agent failed")]
    Connect(#[source] std::io::Error),
    #[error("connecting to the agent timed out")]
    ConnectTimeout,
    #[error("the exchange with the agent failed")]
    Http(#[source] hyper::Error),
    #[error("something other than the agent listens on its port")]
    NotTheAgent,
}

/// Tells whether every listener a new connection to the agent's port can reach is the
/// agent's own. Blocking but brief; asked once per new connection.
#[derive(Clone)]
pub struct EndpointCheck(Arc<dyn Fn() -> bool + Send + Sync>);

impl EndpointCheck {
    pub fn new(check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(check))
    }
}

impl std::fmt::Debug for EndpointCheck {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("EndpointCheck")
    }
}

/// The idle keep-alive connections to one agent.
#[derive(Debug, Default)]
pub struct AgentConnections {
    idle: [Mutex<Vec<IdleConnection>>; WORKER_SLOTS],
    /// Set by the session layer for each agent it runs; none: every connection is used.
    check: RwLock<Option<EndpointCheck>>,
}

/// Which endpoint a connection goes to (the `Host` header plays no part).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    host: Host,
    port: u16,
}

impl Address {
    fn of(endpoint: &Endpoint) -> Self {
        Self { host: endpoint.host().clone(), port: endpoint.port() }
    }

    fn is(&self, endpoint: &Endpoint) -> bool {
        self.port == endpoint.port() && self.host == *endpoint.host()
    }
}

#[derive(Debug)]
struct IdleConnection {
    address: Address,
    sender: SendRequest<Body>,
    since: Instant,
}

impl AgentConnections {
    /// Sends `request` (origin-form URI, `Host` set) to `endpoint` on an idle connection or
    /// a new one. A request that an idle connection closed under before it was written is
    /// sent once more on a new connection.
    pub async fn send(
        self: &Arc<Self>,
        endpoint: &Endpoint,
        connect_timeout: Duration,
        request: Request<Body>,
    ) -> Result<Response<PooledBody>, SendError> {
        let reused = self.take_idle(endpoint);
        let fresh = reused.is_none();
        let mut sender = match reused {
            Some(sender) => sender,
            None => self.connect(endpoint, connect_timeout).await?,
        };
        let request = if sender.ready().await.is_ok() {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.track(endpoint, sender, response)),
                Err(mut error) => match error.take_message() {
                    Some(request) if !fresh => request,
                    _ => return Err(SendError::Http(error.into_error())),
                },
            }
        } else {
            request
        };
        let mut sender = self.connect(endpoint, connect_timeout).await?;
        sender.ready().await.map_err(SendError::Http)?;
        let response = sender.send_request(request).await.map_err(SendError::Http)?;
        Ok(self.track(endpoint, sender, response))
    }

    /// Makes `check` the test every new connection must pass; idle connections (made to the
    /// agent before) are kept.
    pub fn check_endpoint_with(&self, check: EndpointCheck) {
        *self.check.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(check);
    }

    /// A new connection to `endpoint`, used only when the endpoint check passes after
    /// connecting (a listener that took the connection is still listening then).
    async fn connect(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<SendRequest<Body>, SendError> {
        let stream = tokio::time::timeout(timeout, endpoint.connect())
            .await
            .map_err(|_| SendError::ConnectTimeout)?
            .map_err(SendError::Connect)?;
        let check = self.check.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if let Some(check) = check
            && !(check.0)()
        {
            tracing::warn!(%endpoint, "a stranger listens on the agent's port; not sending it anything");
            return Err(SendError::NotTheAgent);
        }
        handshake(endpoint, stream).await
    }

    /// A live idle connection to `endpoint`, newest first; stale ones met on the way are
    /// closed.
    fn take_idle(&self, endpoint: &Endpoint) -> Option<SendRequest<Body>> {
        let mut idle = self.idle_here();
        while let Some(connection) = idle.pop() {
            if connection.address.is(endpoint)
                && !connection.sender.is_closed()
                && connection.since.elapsed() < IDLE_LIMIT
            {
                return Some(connection.sender);
            }
        }
        None
    }

    fn give_back(&self, address: Address, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle_here();
        if idle.first().is_some_and(|oldest| now.duration_since(oldest.since) >= IDLE_LIMIT) {
            idle.retain(|connection| now.duration_since(connection.since) < IDLE_LIMIT);
        }
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(IdleConnection { address, sender, since: now });
    }

    /// This listener worker's idle list.
    fn idle_here(&self) -> std::sync::MutexGuard<'_, Vec<IdleConnection>> {
        let slot = &self.idle[WORKER_INDEX.get() % WORKER_SLOTS];
        slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn track(
        self: &Arc<Self>,
        endpoint: &Endpoint,
        sender: SendRequest<Body>,
        response: Response<Incoming>,
    ) -> Response<PooledBody> {
        let (parts, body) = response.into_parts();
        let owner = (self.clone(), Address::of(endpoint), sender);
        let mut pooled = PooledBody { body, owner: Some(owner) };
        if http_body::Body::is_end_stream(&pooled.body)
            && parts.status != http::StatusCode::SWITCHING_PROTOCOLS
        {
            pooled.release();
        } else if parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection becomes the tunnel; it never carries another request.
            pooled.owner = None;
        }
        Response::from_parts(parts, pooled)
    }
}

async fn handshake(endpoint: &Endpoint, stream: TcpStream) -> Result<SendRequest<Body>, SendError> {
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        http1::Builder::new().handshake(TokioIo::new(stream)).await.map_err(SendError::Http)?;
    let port = endpoint.port();
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(port, %error, "agent connection ended with an error");
        }
    });
    Ok(sender)
}

/// An agent's response body; its connection goes back to the pool once the body has ended.
pub struct PooledBody {
    body: Incoming,
    owner: Option<(Arc<AgentConnections>, Address, SendRequest<Body>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((pool, address, sender)) = self.owner.take() {
            pool.give_back(address, sender);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.owner = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A stand-in agent answering `ok` to every request; the first connection it accepts is
    /// closed after one answer once `close_first` is notified (as an agent's idle timeout
    /// would), later ones are kept alive.
    async fn agent(
        close_first: Arc<tokio::sync::Notify>,
    ) -> (u16, Arc<AtomicUsize>, tokio::sync::mpsc::Receiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (closed_tx, closed_rx) = tokio::sync::mpsc::channel(4);
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
                let closed = closed_tx.clone();
                let close_first = close_first.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let Ok(read) = stream.read(&mut chunk).await else { return };
                        if read == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..read]);
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            buffer.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                            if first {
                                close_first.notified().await;
                                drop(stream);
                                let _ = closed.send(()).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        (port, accepted, closed_rx)
    }

    fn at(port: u16) -> Endpoint {
        Endpoint::new(Host::Ip(std::net::Ipv4Addr::LOCALHOST.into()), port)
    }

    fn get(port: u16) -> Request<Body> {
        Request::builder()
            .uri("/status")
            .header(http::header::HOST, format!("127.0.0.1:{port}"))
            .body(Body::empty())
            .expect("request")
    }

    async fn body_text(response: Response<PooledBody>) -> String {
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn a_connection_the_agent_closed_is_not_reused_and_live_ones_are() {
        let close_first = Arc::new(tokio::sync::Notify::new());
        let (port, accepted, mut closed) = agent(close_first.clone()).await;
        let pool = Arc::new(AgentConnections::default());
        let timeout = Duration::from_secs(2);
        let first = pool.send(&at(port), timeout, get(port)).await.expect("first");
        assert_eq!(body_text(first).await, "ok");
        assert_eq!(pool.idle_here().len(), 1, "returned once its body ended");
        close_first.notify_one();
        closed.recv().await.expect("the agent closed its first connection");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pool.idle_here().iter().all(|idle| idle.sender.is_closed()) {
            assert!(Instant::now() < deadline, "the closed connection was never noticed");
            tokio::task::yield_now().await;
        }
        for _ in 0..3 {
            let response = pool.send(&at(port), timeout, get(port)).await.expect("later request");
            assert_eq!(body_text(response).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "one new connection, then reused");
    }

    #[tokio::test]
    async fn a_new_connection_failing_the_endpoint_check_is_never_sent_anything() {
        // The stand-in's first connection answers once and closes; later ones stay open.
        let close_first = Arc::new(tokio::sync::Notify::new());
        close_first.notify_one();
        let (port, _accepted, _closed) = agent(close_first).await;
        let pool = Arc::new(AgentConnections::default());
        let allowed = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = allowed.clone();
        pool.check_endpoint_with(EndpointCheck::new(move || flag.load(Ordering::SeqCst)));
        let timeout = Duration::from_secs(2);
        for _ in 0..2 {
            pool.idle_here().clear();
            let checked = pool.send(&at(port), timeout, get(port)).await.expect("checked and sent");
            assert_eq!(body_text(checked).await, "ok");
        }
        allowed.store(false, Ordering::SeqCst);
        let reused = pool.send(&at(port), timeout, get(port)).await.expect("an idle connection");
        assert_eq!(body_text(reused).await, "ok", "connections made before stay usable");
        pool.idle_here().clear();
        let refused = pool.send(&at(port), timeout, get(port)).await;
        assert!(matches!(refused, Err(SendError::NotTheAgent)), "a new connection was used");
    }

    #[tokio::test]
    async fn a_body_dropped_half_way_does_not_return_its_connection() {
        let (port, _accepted, _closed) = agent(Arc::default()).await;
        let pool = Arc::new(AgentConnections::default());
        let response = pool.send(&at(port), Duration::from_secs(2), get(port)).await.expect("send");
        drop(response);
        assert!(pool.idle_here().is_empty());
    }

    /// A stand-in agent answering `ok` to every request on every connection it accepts.
    async fn keep_alive_agent() -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(read @ 1..) = stream.read(&mut chunk).await {
                        buffer.extend_from_slice(&chunk[..read]);
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            buffer.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn idle_connections_serve_only_the_endpoint_they_were_made_for() {
        let (first, first_accepted) = keep_alive_agent().await;
        let (second, second_accepted) = keep_alive_agent().await;
        let pool = Arc::new(AgentConnections::default());
        let timeout = Duration::from_secs(2);
        // A session's agent moves (a restart on another port): the old idle connection is
        // never used for the new endpoint, and the new one is kept for it.
        for port in [first, second, second] {
            let response = pool.send(&at(port), timeout, get(port)).await.expect("send");
            assert_eq!(body_text(response).await, "ok");
        }
        assert_eq!(first_accepted.load(Ordering::SeqCst), 1);
        assert_eq!(second_accepted.load(Ordering::SeqCst), 1, "its own, then reused");
        assert_eq!(pool.idle_here().len(), 1, "the old endpoint's connection is gone");
    }
}
