//! The built-in agentapi-compatible echo agent (`agentapi-proxy echo-agent server`): the
//! stand-in for coder/agentapi in demos and in every test of the proxy. This file owns the
//! process: reading stdin, binding, printing the listening line, signals, and exit codes.
//! The HTTP surface lives in `echo_agent/http.rs` and the files next to it.

mod args;
mod conversation;
mod debug;
mod handlers;
mod http;
mod pages;
mod problem;
mod process;
mod state;
mod text;
mod upload;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub use args::ServerArgs;

use conversation::Timing;
use state::{Agent, Status};

/// How long open connections get to finish once the agent decides to exit.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Runs the echo agent until it is told to stop; returns the process exit code.
pub fn main(args: ServerArgs) -> ExitCode {
    if args.exit {
        return ExitCode::SUCCESS;
    }
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("echo-agent: {message}");
            return ExitCode::FAILURE;
        }
    };
    if args.print_openapi {
        let doc = pages::openapi_document();
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    // Like agentapi: without -I, piped stdin is read to EOF and becomes the initial prompt.
    let mut initial_prompt = args.initial_prompt.clone().filter(|p| !p.is_empty());
    if initial_prompt.is_none() {
        match process::read_piped_stdin() {
            Ok(Some(text)) => initial_prompt = Some(text),
            Ok(None) => {}
            Err(err) => {
                eprintln!("echo-agent: failed to read stdin: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("echo-agent: cannot start the async runtime: {err}");
                return ExitCode::FAILURE;
            }
        };
    let code = runtime.block_on(serve(args, settings, initial_prompt));
    // Hung connections and reply tasks are simply dropped.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn serve(
    args: ServerArgs,
    settings: args::Settings,
    initial_prompt: Option<String>,
) -> ExitCode {
    let timing = Timing::from_env();
    if std::env::var("ECHO_AGENT_SPAWN_GRANDCHILD").as_deref() == Ok("1")
        && let Err(err) = process::spawn_grandchild()
    {
        eprintln!("echo-agent: cannot spawn the grandchild: {err}");
        return ExitCode::FAILURE;
    }
    let listener = match tokio::net::TcpListener::bind((args.bind, args.port)).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("echo-agent: failed to listen on {}:{}: {err}", args.bind, args.port);
            return ExitCode::FAILURE;
        }
    };
    let address = match listener.local_addr() {
        Ok(address) => address,
        Err(err) => {
            eprintln!("echo-agent: cannot read the bound address: {err}");
            return ExitCode::FAILURE;
        }
    };
    let upload_dir =
        std::env::temp_dir().join(format!("echo-agent-uploads-{}", uuid::Uuid::new_v4().simple()));
    let agent = Agent::new(settings.agent_type.clone(), settings.transport, timing.boot.is_zero());
    let app = http::App {
        agent: agent.clone(),
        timing,
        settings: Arc::new(settings),
        upload_dir: Arc::new(upload_dir),
    };
    if let Err(err) = process::watch_signals(agent.clone()) {
        eprintln!("echo-agent: cannot install signal handlers: {err}");
        return ExitCode::FAILURE;
    }
    tokio::spawn(boot(agent.clone(), timing, initial_prompt));

    {
        let mut stdout = std::io::stdout().lock();
        // A closed stdout is no reason to stop serving.
        let _ = writeln!(stdout, "echo-agent listening on {address}");
        let _ = stdout.flush();
    }

    let mut exit = agent.exit_watch();
    let mut exit_for_shutdown = agent.exit_watch();
    // Like agentapi (Go sets TCP_NODELAY on every connection): an answer written as head
    // and body is not held back by Nagle's algorithm against the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        let _ = stream.set_nodelay(true);
    });
    let server = axum::serve(listener, http::router(app).into_make_service())
        .with_graceful_shutdown(async move {
            let _ = exit_for_shutdown.wait_for(Option::is_some).await;
        });
    let served = tokio::select! {
        result = server => result,
        _ = async {
            let _ = exit.wait_for(Option::is_some).await;
            tokio::time::sleep(EXIT_GRACE).await;
        } => Ok(()),
    };
    if let Err(err) = served {
        eprintln!("echo-agent: server failed: {err}");
        return ExitCode::FAILURE;
    }
    let code = *agent.exit_watch().borrow();
    ExitCode::from(code.unwrap_or(0))
}

/// Stays `running` for the boot time, turns `stable`, then sends the initial prompt if any.
async fn boot(agent: Arc<Agent>, timing: Timing, initial_prompt: Option<String>) {
    if !timing.boot.is_zero() {
        tokio::time::sleep(timing.boot).await;
        agent.transition(Status::Running, Status::Stable);
    }
    if let Some(prompt) = initial_prompt {
        match conversation::send_user_message(&agent, timing, &prompt) {
            Ok(accepted) if accepted.hang => agent.hang(),
            Ok(_) => {}
            Err(_) => eprintln!("echo-agent: the initial prompt found the agent busy"),
        }
    }
}
