//! What can go wrong talking to the cluster, sorted by who the caller should blame: the API
//! server out of reach (→ 503 `backend_unavailable`), the cluster refusing us, or the
//! session's Pod failing.

use std::fmt;

/// An error of the Kubernetes backend.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The API server could not be reached (connection refused, reset, timed out, TLS).
    #[error("the Kubernetes API server is unreachable: {0}")]
    Unavailable(String),
    /// The API server answered with an error `Status`.
    #[error("the Kubernetes API refused {action}: {code} {reason}: {message}")]
    Api { action: String, code: u16, reason: String, message: String },
    /// The session's Pod could not start or ended before it was ready.
    #[error("the session's Pod failed: {0}")]
    PodFailed(PodFailure),
    /// The Pod did not become ready in time (it was deleted).
    #[error("the session's Pod was not ready within {seconds} s")]
    Timeout { seconds: u64 },
    /// The request itself is unusable (a reserved environment name, no argv).
    #[error("{0}")]
    Invalid(String),
    /// Connection settings (kubeconfig, service account) could not be read.
    #[error("no usable Kubernetes configuration: {0}")]
    Config(String),
}

impl KubeError {
    /// Whether the API server was out of reach (as opposed to refusing or failing).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Sorts a kube-rs client error, saying what we were doing.
    pub fn from_client(action: &str, error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) if matches!(status.code, 502..=504) => {
                Self::Unavailable(format!("while {action}: {} {}", status.code, status.message))
            }
            kube::Error::Api(status) => Self::Api {
                action: action.to_string(),
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            kube::Error::HyperError(_)
            | kube::Error::Service(_)
            | kube::Error::HttpError(_)
            | kube::Error::ReadEvents(_)
            | kube::Error::RustlsTls(_) => Self::Unavailable(format!("while {action}: {error}")),
            other => Self::Api {
                action: action.to_string(),
                code: 0,
                reason: "ClientError".into(),
                message: other.to_string(),
            },
        }
    }

    /// Whether this is the API server's 404 (the object is gone).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { code: 404, .. })
    }
}

/// Why a session's Pod failed or ended, as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PodFailure {
    /// `ImagePullBackOff`, `Unschedulable`, `Evicted`, `Error`, `Deleted`, ...
    pub reason: String,
    pub message: String,
    /// The agent container's exit code, when it ran and ended.
    pub exit_code: Option<i32>,
}

impl fmt::Display for PodFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(code) = self.exit_code {
            write!(f, " (exit code {code})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}
