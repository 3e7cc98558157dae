//! agentapi-proxy: the front door for many coding agents on shared hosts.
//!
//! The library holds everything; `main.rs` only calls [`cli::main`]. Tests start the server
//! through [`run`] with a listener on `127.0.0.1:0` and drive it over real sockets.

pub mod auth;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cors;
pub mod data_dir;
pub mod echo_agent;
pub mod endpoint;
pub mod error;
pub mod listener;
pub mod observe;
pub mod openapi;
pub mod profiles;
pub mod proxy;
pub mod replica;
pub mod router;
pub mod routes;
pub mod sessions;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod ui;
pub mod upstream;

pub use listener::{run, run_with};
