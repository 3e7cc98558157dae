//! `agentapi-proxy server`: load the configuration, bind, run until a stop signal.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use super::{EXIT_USAGE, LogFormat, logging};
use crate::config::{Config, ConfigSource, FlagOverrides, LoadOptions, load};
use crate::sessions::local::{HostOptions, reaper};
use crate::shutdown::Shutdown;

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Port to listen on [default: 8080, or `server.port`].
    #[arg(short, long)]
    pub port: Option<u16>,
    /// Configuration file (default: ./config.json when present).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Debug logging.
    #[arg(short, long)]
    pub verbose: bool,
    /// Address to listen on [default: 127.0.0.1, or `server.bind`].
    #[arg(long)]
    pub bind: Option<String>,
    /// Allow a non-loopback bind address while authentication is disabled.
    #[arg(long)]
    pub allow_unauthenticated: bool,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

pub fn main(args: ServerArgs) -> ExitCode {
    logging::init(args.verbose, args.log_format);
    let flags = FlagOverrides { port: args.port, bind: args.bind.clone() };
    let loaded = match load(&LoadOptions::from_process(args.config.clone(), flags)) {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    match &loaded.source {
        ConfigSource::File(path) => tracing::info!(path = %path.display(), "configuration loaded"),
        ConfigSource::Defaults => {
            tracing::info!(
                "no config file given and none in the working directory: built-in defaults"
            )
        }
    }
    if let Err(refusal) = check_exposure(&loaded.config, args.allow_unauthenticated) {
        tracing::error!("{refusal}");
        eprintln!("error: {refusal}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(loaded.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Logged once: the log goes to stderr, where a second copy would repeat it.
            tracing::error!("{error:#}");
            if error.downcast_ref::<crate::data_dir::InUse>().is_some()
                || error.downcast_ref::<crate::store::postgres::guard::DatabaseInUse>().is_some()
            {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Refuses to expose an unauthenticated server beyond loopback unless explicitly allowed.
pub fn check_exposure(config: &Config, allow_unauthenticated: bool) -> Result<(), String> {
    let loopback = config.server.bind.parse::<IpAddr>().is_ok_and(|address| address.is_loopback());
    if config.auth.enabled || loopback || allow_unauthenticated {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {} with authentication disabled: anyone who can reach it could run \
         agents on this host. Enable `auth`, bind 127.0.0.1, or pass --allow-unauthenticated.",
        config.server.bind
    ))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let address: IpAddr = config.server.bind.parse().context("while reading server.bind")?;
    let address = SocketAddr::new(address, config.server.port);
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "port {} on {} is already in use by another process: stop that process, or \
                 choose another port with -p/--port (or `server.port`)",
                address.port(),
                address.ip()
            )
        } else {
            anyhow::Error::new(error).context(format!("while binding {address}"))
        }
    })?;
    // Only local agents are this process's descendants; Pods are the kubelet's.
    if config.agent.backend != crate::config::KUBERNETES_BACKEND
        && let Err(error) = reaper::become_child_subreaper()
    {
        tracing::warn!("{error:#}; orphaned agent processes will be reaped by init instead");
    }
    let shutdown = Shutdown::new();
    let mut terminate =
        signal(SignalKind::terminate()).context("while installing the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("while installing the SIGINT handler")?;
    let signals = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            signals.escalate();
            tracing::info!(signal = name, "signal received");
        }
    });
    let host = HostOptions { proxy_bin: None, reap_all_children: true };
    crate::run_with(config, listener, shutdown, host).await
}
