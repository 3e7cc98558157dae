//! Integration tests: one binary, one module per area. Every test drives real processes over
//! real loopback sockets; nothing of our own is mocked.

mod auth;
mod bench_smoke;
mod browser;
mod cli;
mod cli_client;
mod client;
mod containment;
mod dashboard;
mod dashboard_events;
mod dashboard_login;
mod data_dir;
mod docs_links;
mod echo_agent;
mod first_hour;
mod getting_started;
mod github;
mod hostile_budgets;
mod hostile_input;
mod hostile_logs;
mod hostile_ports;
mod isolation;
mod lifecycle;
mod openapi;
mod profiles;
mod proxy;
mod proxy_path;
mod recovery;
mod repository;
mod secrets;
mod server;
mod sessions;
mod slack_wire;
mod smuggling;
mod support;
mod typed_bodies;
