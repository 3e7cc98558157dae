//! The client's one error type.

/// What can go wrong calling the proxy or an agent behind it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be sent or the answer not received.
    #[error("HTTP error: {0}")]
    Http(#[from] reqwest::Error),
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
                    .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect()),
                details: None,
            },
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
