//! The reverse-proxy path to agents: request/response rewriting, streaming, SSE heartbeats.
//! Knows no processes: it is given an endpoint and a request.
