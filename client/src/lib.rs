//! `agentapi-proxy-client`: a typed async client for an agentapi-proxy server, and the wire
//! types the server itself uses, so both sides encode and decode one definition.
//!
//! ```no_run
//! use std::time::Duration;
//! use agentapi_proxy_client::{Client, StartRequest};
//!
//! # async fn example() -> Result<(), agentapi_proxy_client::Error> {
//! let client = Client::builder("http://127.0.0.1:8080").api_key("ap_alice_...").build()?;
//! let session = client.start(&StartRequest::default(), true).await?;
//! let agent = client.agent(&session.session_id);
//! let reply = agent.send_and_wait("Summarise the README", Duration::from_secs(120)).await?;
//! println!("{}", reply.content);
//! client.delete(&session.session_id).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Errors are one [`Error`] type; an error answer of the server carries its stable `code`
//! and `message` ([`Error::Api`]).

mod agent;
mod calls;
mod client;
mod error;
mod events;
pub mod profiles;
pub mod sessions;
mod wire;

pub use agent::{Agent, AgentStatus, Message, MessageType, Uploaded};
pub use calls::{
    AuthStatus, LoginRequest, OAuthAuthorizeRequest, OAuthSession, OAuthStart, SearchQuery,
    StartWithProfile,
};
pub use client::{CONNECT_TIMEOUT, Client, ClientBuilder, DEFAULT_TIMEOUT};
pub use error::{Error, Result};
pub use events::{AgentEvent, EventStream};
pub use profiles::*;
pub use sessions::*;
