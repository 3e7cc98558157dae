//! Chat bridges: a thread on a chat service (Slack first) is a session. `platform` is the
//! seam each service implements; the bridge, its store and the services live beside it.

pub mod bridge;
pub mod platform;
pub mod setup;
pub mod slack;
