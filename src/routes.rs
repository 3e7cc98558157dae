//! Thin HTTP handlers, one file per resource; the paths themselves live in `router.rs`.

pub mod auth;
mod caller;
pub mod chat;
pub mod health;
pub mod json_body;
pub mod login;
pub mod metrics;
pub mod oauth;
pub mod openapi;
pub mod profiles;
pub mod proxy;
pub mod query;
pub mod root;
pub mod session_events;
pub mod sessions;
pub mod start_with_profile;
