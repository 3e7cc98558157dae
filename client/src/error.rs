//! The client's one error type.

/// What can go wrong calling the proxy or an agent behind it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be sent or the answer not received.
    #[error("HTTP error: {0}")]
    Http(#[from] reqwest::Error),
    /// The address given to [`crate::Client::builder`] cannot be used.
    #[error(
        "cannot use the endpoint {endpoint:?}: {problem} (expected an address like \
         http://127.0.0.1:8080, https://proxy.example.com or 127.0.0.1:8080)"
    )]
    Endpoint { endpoint: String, problem: String },
    /// Nothing answered at the server's address: connection refused, timed out, or a host
    /// name that does not resolve.
    #[error("the server at {url} is not reachable ({reason})")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error. `code` is the proxy's stable code (`not_found`,
    /// `unauthenticated`, ...), or `agent_error` for an error passed on from the agent.
    #[error("{status} {code}: {message}")]
    Api { status: u16, code: String, message: String, details: Option<serde_json::Value> },
    /// The answer was not what this client expected.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The event stream ended (the agent or the server went away).
    #[error("the event stream ended")]
    Disconnected,
    /// A wait gave up.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl Error {
    /// The HTTP status of an [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Http(error) => error.status().map(|status| status.as_u16()),
            _ => None,
        }
    }

    /// The stable code of an [`Error::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Turns a failed send into [`Error::Unreachable`] when no connection could be made,
    /// [`Error::Timeout`] when the answer took longer than `timeout`, else [`Error::Http`].
    pub(crate) fn from_transport(
        error: reqwest::Error,
        url: &str,
        timeout: Option<std::time::Duration>,
    ) -> Self {
        if error.is_connect() {
            return Self::Unreachable { url: url.to_string(), reason: connect_failure(&error) };
        }
        match timeout {
            Some(limit) if error.is_timeout() => {
                Self::Timeout(format!("no answer from {url} within {limit:?}"))
            }
            _ => Self::Http(error),
        }
    }

    /// Reads an error answer: the proxy's `{"message","code"}` or an agent's problem+json.
    pub(crate) fn from_body(status: u16, body: &[u8]) -> Self {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_string);
        match (text("code"), text("message")) {
            (Some(code), Some(message)) => {
                Self::Api { status, code, message, details: value.get("details").cloned() }
            }
            _ => Self::Api {
                status,
                code: "agent_error".into(),
                message: text("detail")
                    .or_else(|| text("title"))
                    .map(|message| message.chars().take(500).collect::<String>())
                    .filter(|message| !message.trim().is_empty())
                    .or_else(|| {
                        let raw: String = String::from_utf8_lossy(body).chars().take(500).collect();
                        (!raw.trim().is_empty()).then_some(raw)
                    })
                    .unwrap_or_else(|| "the answer carried no error message".into()),
                details: None,
            },
        }
    }
}

/// Why a connection could not be made, in a few words (`connection refused`, `timed out`, or
/// the resolver's message).
fn connect_failure(error: &reqwest::Error) -> String {
    let mut innermost: Option<String> = None;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::TimedOut => return "timed out".into(),
                _ => {}
            }
        }
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    if error.is_timeout() {
        return "timed out".into();
    }
    innermost.unwrap_or_else(|| error.to_string())
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
