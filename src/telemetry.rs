//! Prometheus metrics: the recorder (installed once per process), every metric name, and the
//! small helpers the rest of the code calls. `GET /metrics` renders them.

use std::sync::OnceLock;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "agentapi_proxy_http_requests_total";
pub const HTTP_DURATION: &str = "agentapi_proxy_http_request_duration_seconds";
pub const PROXIED_REQUESTS: &str = "agentapi_proxy_proxied_requests_total";
pub const OPEN_STREAMS: &str = "agentapi_proxy_open_event_streams";
pub const SESSIONS: &str = "agentapi_proxy_sessions";
pub const SESSION_STARTS: &str = "agentapi_proxy_session_starts_total";
pub const SESSION_START_DURATION: &str = "agentapi_proxy_session_start_duration_seconds";
pub const SESSION_RESTARTS: &str = "agentapi_proxy_session_restarts_total";
pub const AGENT_EXITS: &str = "agentapi_proxy_agent_exits_total";
pub const AUTH_FAILURES: &str = "agentapi_proxy_auth_failures_total";
pub const STORE_ERRORS: &str = "agentapi_proxy_store_errors_total";
pub const GITHUB_LOOKUPS: &str = "agentapi_proxy_github_token_lookups_total";
pub const PROXIED_BYTES: &str = "agentapi_proxy_proxied_bytes_total";
pub const CONTAINMENT_MODE: &str = "agentapi_proxy_containment_mode";

const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The process-wide recorder's handle; the first call installs it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => {
                describe_all();
                handle
            }
            Err(error) => {
                tracing::warn!(%error, "another metrics recorder is installed; /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

/// The `# HELP` line (and unit) of every metric.
fn describe_all() {
    describe_counter!(HTTP_REQUESTS, "Answered HTTP requests by route, method and status.");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from a request to its response head, by route."
    );
    describe_counter!(PROXIED_REQUESTS, "Requests forwarded to agents.");
    describe_gauge!(OPEN_STREAMS, "Event streams open right now.");
    describe_gauge!(SESSIONS, "Sessions by state, at scrape time.");
    describe_counter!(SESSION_STARTS, "Session start attempts by outcome.");
    describe_histogram!(
        SESSION_START_DURATION,
        Unit::Seconds,
        "Time from admission to a ready agent (or the failure), by outcome."
    );
    describe_counter!(SESSION_RESTARTS, "Agents respawned under session.restart: on-failure.");
    describe_counter!(AGENT_EXITS, "Agents that ended, by reason.");
    describe_counter!(AUTH_FAILURES, "Refused credentials, by reason.");
    describe_counter!(STORE_ERRORS, "Database failures.");
    describe_counter!(GITHUB_LOOKUPS, "GitHub token validations and cache hits, by outcome.");
    describe_counter!(
        PROXIED_BYTES,
        Unit::Bytes,
        "Body bytes through the proxy path, by direction."
    );
    describe_gauge!(CONTAINMENT_MODE, "1 for the session containment mode in use.");
}

/// How often recorded histogram samples are folded into their buckets. The exporter keeps
/// each sample until then (or until a scrape): without this, a server nobody scrapes would
/// grow by every request's latency sample.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds histogram samples into buckets every few seconds until the server drains.
pub fn spawn_upkeep(shutdown: crate::shutdown::Shutdown) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => handle().run_upkeep(),
                () = shutdown.reached(crate::shutdown::Stage::Draining) => return,
            }
        }
    });
}

/// One answered HTTP request. The handles for a (route, method, status) are looked up in the
/// registry once per thread and kept, so counting a request costs two atomic updates.
pub fn http_request(route: &str, method: &http::Method, status: u16, seconds: f64) {
    let method = method_label(method);
    let counted = HTTP_HANDLES.with_borrow_mut(|cache| {
        if let Some(handles) =
            cache.iter().find(|h| h.status == status && h.method == method && &*h.route == route)
        {
            handles.record(seconds);
            return true;
        }
        if cache.len() >= HTTP_HANDLES_PER_THREAD {
            return false;
        }
        let handles = HttpHandles::register(route, method, status);
        handles.record(seconds);
        cache.push(handles);
        true
    });
    if !counted {
        HttpHandles::register(route, method, status).record(seconds);
    }
}

/// Most cached (route, method, status) handle sets per thread; more are registered per call.
const HTTP_HANDLES_PER_THREAD: usize = 512;

thread_local! {
    static HTTP_HANDLES: std::cell::RefCell<Vec<HttpHandles>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

struct HttpHandles {
    route: Box<str>,
    method: &'static str,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

impl HttpHandles {
    fn register(route: &str, method: &'static str, status: u16) -> Self {
        let labels = [
            ("route", route.to_string()),
            ("method", method.to_string()),
            ("status", status.to_string()),
        ];
        Self {
            route: route.into(),
            method,
            status,
            requests: counter!(HTTP_REQUESTS, &labels),
            duration: histogram!(HTTP_DURATION, "route" => route.to_string()),
        }
    }

    fn record(&self, seconds: f64) {
        self.requests.increment(1);
        self.duration.record(seconds);
    }
}

/// The method as a metric label: the standard ones by name, anything else as `other`, so a
/// client inventing methods cannot grow the metrics without bound.
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

pub fn proxied_request() {
    static PROXIED: OnceLock<metrics::Counter> = OnceLock::new();
    PROXIED.get_or_init(|| counter!(PROXIED_REQUESTS)).increment(1);
}

/// Counts body bytes through the proxy: `to_agent` (request bodies) or `to_client`.
/// The handles are made once; counting a frame is one atomic add.
pub fn proxied_bytes(direction: Direction) -> &'static metrics::Counter {
    static TO_AGENT: OnceLock<metrics::Counter> = OnceLock::new();
    static TO_CLIENT: OnceLock<metrics::Counter> = OnceLock::new();
    match direction {
        Direction::ToAgent => {
            TO_AGENT.get_or_init(|| counter!(PROXIED_BYTES, "direction" => "to_agent"))
        }
        Direction::ToClient => {
            TO_CLIENT.get_or_init(|| counter!(PROXIED_BYTES, "direction" => "to_client"))
        }
    }
}

/// Which way proxied bytes went.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    ToAgent,
    ToClient,
}

fn open_streams() -> &'static metrics::Gauge {
    static OPEN: OnceLock<metrics::Gauge> = OnceLock::new();
    OPEN.get_or_init(|| gauge!(OPEN_STREAMS))
}

pub fn stream_opened() {
    open_streams().increment(1.0);
}

pub fn stream_closed() {
    open_streams().decrement(1.0);
}

/// A start attempt ended: `active`, `failed` or `timeout`; `seconds` from admission.
pub fn session_start(outcome: &'static str, seconds: f64) {
    counter!(SESSION_STARTS, "outcome" => outcome).increment(1);
    histogram!(SESSION_START_DURATION, "outcome" => outcome).record(seconds);
}

pub fn session_restart() {
    counter!(SESSION_RESTARTS).increment(1);
}

pub fn agent_exit(reason: &'static str) {
    counter!(AGENT_EXITS, "reason" => reason).increment(1);
}

pub fn auth_failure(reason: &'static str) {
    counter!(AUTH_FAILURES, "reason" => reason).increment(1);
}

/// A GitHub token lookup: answered from the cache, or by GitHub (and how).
pub fn github_lookup(outcome: &'static str) {
    counter!(GITHUB_LOOKUPS, "outcome" => outcome).increment(1);
}

pub fn store_error() {
    counter!(STORE_ERRORS).increment(1);
}

/// Sessions by state, set at scrape time from the registry.
pub fn set_sessions(counts: &[(&'static str, usize)]) {
    for (state, count) in counts {
        gauge!(SESSIONS, "state" => *state).set(*count as f64);
    }
}

/// The session containment in use: 1 for `mode`, 0 for the others (set at scrape time).
pub fn set_containment_mode(mode: &'static str) {
    for known in crate::sessions::local::containment::Mode::ALL {
        let value = if known.label() == mode { 1.0 } else { 0.0 };
        gauge!(CONTAINMENT_MODE, "mode" => known.label()).set(value);
    }
}
