//! The local backend's `backend_ref`: what finds a session's agent again after a restart of
//! the server — the process group leader's pid, its start time (pids are reused) and the
//! agent's port. Stored as `{"v":1,"kind":"local","pid":…,"start_ticks":…,"port":…}`; a
//! reference this build cannot read is refused, never guessed at.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::sessions::backend::{AgentHandle, BackendRef, Endpoint, Host, RefError};

const KIND: &str = "local";
const VERSION: u64 = 1;

/// One agent process group on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRef {
    /// The process group leader (the agent, or the startup script that execs it).
    pub pid: i32,
    /// `/proc/<pid>/stat` field 22, to recognise the same process; `None` when it could
    /// not be read at spawn (then the process is never recognised again).
    pub start_ticks: Option<u64>,
    pub port: u16,
}

impl LocalRef {
    /// Where the agent answers: `127.0.0.1:<port>`.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(Host::Ip(Ipv4Addr::LOCALHOST.into()), self.port)
    }

    /// The handle the session layer keeps.
    pub fn handle(&self) -> anyhow::Result<AgentHandle> {
        Ok(AgentHandle {
            endpoint: self.endpoint(),
            reference: BackendRef::encode(KIND, VERSION, self)?,
        })
    }

    /// Reads a stored reference.
    pub fn decode(reference: &BackendRef) -> Result<Self, RefError> {
        let (version, value) = reference.open(KIND)?;
        if version != VERSION {
            return Err(RefError::UnknownVersion(version));
        }
        serde_json::from_value(value).map_err(|error| RefError::Malformed(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_round_trips_and_names_the_loopback_endpoint() {
        let agent = LocalRef { pid: 4242, start_ticks: Some(123_456), port: 9001 };
        let handle = agent.handle().expect("encodes");
        assert_eq!(
            handle.reference.as_str(),
            r#"{"v":1,"kind":"local","pid":4242,"start_ticks":123456,"port":9001}"#
        );
        assert_eq!(LocalRef::decode(&handle.reference), Ok(agent));
        assert_eq!(handle.endpoint.to_string(), "127.0.0.1:9001");
        let unknown_start = LocalRef { start_ticks: None, ..agent };
        let handle = unknown_start.handle().expect("encodes");
        assert_eq!(LocalRef::decode(&handle.reference), Ok(unknown_start));
    }

    #[test]
    fn what_the_upgrade_migration_writes_is_read() {
        // 0008_backend_ref.sql builds references with SQLite's json_object.
        let migrated = r#"{"v":1,"kind":"local","pid":7,"start_ticks":null,"port":9002}"#;
        let agent = LocalRef::decode(&BackendRef::new(migrated)).expect("decodes");
        assert_eq!(agent, LocalRef { pid: 7, start_ticks: None, port: 9002 });
    }

    #[test]
    fn unknown_versions_other_kinds_and_bad_fields_are_refused_cleanly() {
        let refused = |text: &str| LocalRef::decode(&BackendRef::new(text));
        assert_eq!(
            refused(r#"{"v":2,"kind":"local","pid":7,"start_ticks":1,"port":9002}"#),
            Err(RefError::UnknownVersion(2))
        );
        assert_eq!(
            refused(r#"{"v":1,"kind":"kubernetes","pod":"p"}"#),
            Err(RefError::OtherKind("kubernetes".into()))
        );
        for text in [
            r#"{"v":1,"kind":"local","pid":7,"start_ticks":1}"#,
            r#"{"v":1,"kind":"local","pid":7,"start_ticks":1,"port":70000}"#,
            r#"{"v":1,"kind":"local","pid":"7","start_ticks":1,"port":9002}"#,
            "not json",
        ] {
            assert!(matches!(refused(text), Err(RefError::Malformed(_))), "{text}");
        }
    }
}
