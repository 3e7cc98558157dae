//! Wire types shared by the agentapi-proxy server and its clients, so both sides encode and
//! decode one definition. The typed HTTP client arrives with its own issue.

pub mod profiles;
pub mod sessions;

pub use profiles::*;
pub use sessions::*;
