//! Integration tests: one binary, one module per area. Every test drives real processes over
//! real loopback sockets; nothing of our own is mocked.

mod cli;
mod echo_agent;
mod proxy_path;
mod server;
mod support;
