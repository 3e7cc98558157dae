//! Wire types shared by the agentapi-proxy server and its clients.
