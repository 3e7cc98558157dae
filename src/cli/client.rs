//! `agentapi-proxy client ...`: the proxy's API from a shell. Human-readable by default,
//! `--json` for scripts; any error exits non-zero with the server's message on stderr.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::Duration;

use agentapi_proxy_client::{
    AgentEvent, Client, MessageType, SearchQuery, SessionStatus, StartRequest,
};
use futures_util::StreamExt;
use serde::Serialize;

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Start a session.
    Start(StartArgs),
    /// List sessions.
    Search(SearchArgs),
    /// Stop and remove a session.
    Delete(SessionArgs),
    /// Send a message to a session's agent.
    Send(SendArgs),
    /// Show a session's conversation.
    History(SessionArgs),
    /// Show whether a session's agent is running or stable.
    Status(SessionArgs),
    /// Follow a session's events until interrupted (or, with --until-stable, until the agent
    /// is stable).
    Events(EventsArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The proxy's address: `http://HOST:PORT`, `https://...`, or a bare `HOST:PORT`.
    #[arg(
        short,
        long,
        env = "AGENTAPI_PROXY_ENDPOINT",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8080"
    )]
    pub endpoint: String,
    /// API key (sent as X-API-Key).
    #[arg(short = 'k', long, env = "AGENTAPI_PROXY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SessionArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The session's id (as printed by `client start` or `client search`).
    #[arg(short, long)]
    pub session_id: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub session: SessionArgs,
    /// Stop at the first `status_change` to `stable`: after the replay when the agent is
    /// idle, else once it has finished its reply.
    #[arg(long)]
    pub until_stable: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Environment variable for the agent, NAME=VALUE (repeatable).
    #[arg(long = "env", value_parser = key_value)]
    pub environment: Vec<(String, String)>,
    /// Tag, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_parser = key_value)]
    pub tags: Vec<(String, String)>,
    /// First prompt, delivered once the agent is ready.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Answer at once instead of when the agent answers.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Only sessions in this state: starting, active, stopping, exited or failed.
    #[arg(long, value_parser = session_status)]
    pub status: Option<SessionStatus>,
    /// Only this user's sessions (others than your own need the admin role).
    #[arg(long)]
    pub user_id: Option<String>,
    /// Tag filter, KEY=VALUE (repeatable; all must match).
    #[arg(long = "tag", value_parser = key_value)]
    pub tags: Vec<(String, String)>,
    /// At most this many sessions (server default 100, at most 1000).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Skip this many sessions first.
    #[arg(long)]
    pub offset: Option<u64>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub session: SessionArgs,
    /// The message, as the Go CLI takes it; `-` (or nothing, with standard input not a
    /// terminal) reads it from standard input.
    #[arg(value_name = "MESSAGE", conflicts_with = "message")]
    pub text: Option<String>,
    /// The message (the same as the positional form).
    #[arg(short, long)]
    pub message: Option<String>,
    /// Send raw keystrokes instead of a prompt.
    #[arg(long)]
    pub raw: bool,
    /// Wait for the agent's reply and print it (seconds to wait at most, 1 or more).
    #[arg(long, value_parser = wait_seconds)]
    pub wait: Option<u64>,
}

/// `--status`: the session states `GET /search` filters on, refused with the same list the
/// server gives, before any request is sent.
fn session_status(text: &str) -> Result<SessionStatus, String> {
    SessionStatus::parse(text).ok_or_else(|| {
        let valid: Vec<&str> = SessionStatus::ALL.iter().map(|status| status.as_str()).collect();
        let agent_states = if matches!(text, "running" | "stable") {
            format!("; `{text}` is an agent's state, shown by `client status`")
        } else {
            String::new()
        };
        format!("must be one of {}{agent_states}", valid.join(", "))
    })
}

fn wait_seconds(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be at least 1 second; leave --wait out to send without waiting".into()),
        Ok(seconds) => Ok(seconds),
        Err(_) => Err(format!("expected a number of seconds, got {text:?}")),
    }
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

pub fn main(mut command: ClientCommand) -> ExitCode {
    if let ClientCommand::Send(args) = &mut command {
        match message_to_send(args.text.take(), args.message.take()) {
            Ok(message) => args.message = Some(message),
            Err(problem) => {
                eprintln!("error: {problem}");
                return ExitCode::from(super::EXIT_USAGE);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let connection = command.connection().clone();
    match runtime.block_on(run(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            if let Some(hint) = hint(&error, &connection) {
                eprintln!("hint: {hint}");
            }
            if matches!(error, agentapi_proxy_client::Error::Endpoint { .. }) {
                ExitCode::from(super::EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

impl ClientCommand {
    fn connection(&self) -> &Connection {
        match self {
            Self::Start(args) => &args.connection,
            Self::Search(args) => &args.connection,
            Self::Send(args) => &args.session.connection,
            Self::Events(args) => &args.session.connection,
            Self::Delete(args) | Self::History(args) | Self::Status(args) => &args.connection,
        }
    }
}

/// What to do about an error, when the error alone does not say it.
fn hint(error: &agentapi_proxy_client::Error, connection: &Connection) -> Option<String> {
    if matches!(error, agentapi_proxy_client::Error::Unreachable { .. }) {
        return Some(
            "start a server with `agentapi-proxy server` (`make run` in a checkout), or point \
             -e/--endpoint or AGENTAPI_PROXY_ENDPOINT at a running one"
                .into(),
        );
    }
    match (error.status(), &connection.api_key) {
        (Some(401), None) => Some(
            "this server needs a credential: pass an API key with -k/--api-key or set \
             AGENTAPI_PROXY_API_KEY"
                .into(),
        ),
        (Some(401), Some(_)) => Some(
            "the API key given (-k/--api-key or AGENTAPI_PROXY_API_KEY) was not accepted: \
             check it, or create one with `agentapi-proxy helpers generate-token`"
                .into(),
        ),
        _ => None,
    }
}

/// The message of `client send`: the positional argument or `--message`; `-`, or neither
/// with standard input not a terminal, reads standard input (surrounding whitespace trimmed,
/// as agentapi refuses untrimmed messages).
fn message_to_send(text: Option<String>, flag: Option<String>) -> Result<String, String> {
    let given = text.or(flag);
    if given.as_deref().is_some_and(|text| text != "-") {
        return Ok(given.unwrap_or_default());
    }
    let mut stdin = std::io::stdin();
    if given.is_none() && stdin.is_terminal() {
        return Err(
            "no message: pass it as an argument, with --message, or on standard input".into()
        );
    }
    let mut read = String::new();
    stdin
        .read_to_string(&mut read)
        .map_err(|error| format!("cannot read the message from standard input: {error}"))?;
    let message = read.trim();
    if message.is_empty() {
        return Err("the message read from standard input is empty".into());
    }
    Ok(message.to_string())
}

fn connect(connection: &Connection) -> agentapi_proxy_client::Result<Client> {
    let builder = Client::builder(&connection.endpoint);
    match &connection.api_key {
        Some(key) => builder.api_key(key).build(),
        None => builder.build(),
    }
}

fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("error: cannot print JSON: {error}"),
    }
}

async fn run(command: ClientCommand) -> agentapi_proxy_client::Result<()> {
    match command {
        ClientCommand::Start(args) => {
            let client = connect(&args.connection)?;
            let request = StartRequest {
                environment: args.environment.into_iter().collect(),
                tags: args.tags.into_iter().collect(),
                message: args.message,
            };
            let started = client.start(&request, !args.no_wait).await?;
            if args.connection.json {
                print_json(&started);
            } else {
                let port = started.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                println!("{}  {}  port {port}", started.session_id, started.status.as_str());
            }
        }
        ClientCommand::Search(args) => {
            let client = connect(&args.connection)?;
            let query = SearchQuery {
                status: args.status,
                user_id: args.user_id,
                tags: args.tags,
                limit: args.limit,
                offset: args.offset,
            };
            let found = client.search(&query).await?;
            if args.connection.json {
                print_json(&found);
            } else {
                println!(
                    "{:<36}  {:<12}  {:<8}  {:<24}  {:<5}  TAGS",
                    "SESSION_ID", "USER", "STATUS", "STARTED", "PORT"
                );
                for session in &found.sessions {
                    let tags: Vec<String> =
                        session.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let port = session.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<36}  {:<12}  {:<8}  {:<24}  {:<5}  {}",
                        session.session_id,
                        session.user_id,
                        session.status.as_str(),
                        session.started_at,
                        port,
                        tags.join(",")
                    );
                }
                println!("{} of {} sessions", found.sessions.len(), found.total);
            }
        }
        ClientCommand::Delete(args) => {
            let client = connect(&args.connection)?;
            let deleted = client.delete(&args.session_id).await?;
            if args.connection.json {
                print_json(&deleted);
            } else {
                println!("deleted {}", deleted.session_id);
            }
        }
        ClientCommand::Send(args) => {
            let message = args.message.unwrap_or_default();
            let client = connect(&args.session.connection)?;
            let agent = client.agent(&args.session.session_id);
            let json = args.session.connection.json;
            match (args.wait, args.raw) {
                (Some(seconds), false) => {
                    let reply = agent.send_and_wait(&message, Duration::from_secs(seconds)).await?;
                    if json { print_json(&reply) } else { println!("{}", reply.content) }
                }
                (_, raw) => {
                    let kind = if raw { MessageType::Raw } else { MessageType::User };
                    agent.send_message(&message, kind).await?;
                    if json {
                        print_json(&serde_json::json!({"ok": true}))
                    } else {
                        println!("sent")
                    }
                }
            }
        }
        ClientCommand::History(args) => {
            let client = connect(&args.connection)?;
            let messages = client.agent(&args.session_id).messages().await?;
            if args.connection.json {
                print_json(&messages);
            } else {
                for message in messages {
                    println!("[{}] {}", message.role, message.content);
                }
            }
        }
        ClientCommand::Status(args) => {
            let client = connect(&args.connection)?;
            let status = client.agent(&args.session_id).status().await?;
            if args.connection.json {
                print_json(&status);
            } else {
                println!("{} ({})", status.status, status.agent_type);
            }
        }
        ClientCommand::Events(args) => {
            let client = connect(&args.session.connection)?;
            let mut events = client.agent(&args.session.session_id).events().await?;
            while let Some(event) = events.next().await {
                let event = event?;
                print_event(&event, args.session.connection.json);
                let stable =
                    matches!(&event, AgentEvent::StatusChange { status, .. } if status == "stable");
                if args.until_stable && stable {
                    break;
                }
            }
        }
    }
    Ok(())
}

fn print_event(event: &AgentEvent, json: bool) {
    let (name, fields): (&str, BTreeMap<&str, serde_json::Value>) = match event {
        AgentEvent::MessageUpdate { id, role, message, time } => (
            "message_update",
            [
                ("id", (*id).into()),
                ("role", role.as_str().into()),
                ("message", message.as_str().into()),
                ("time", time.as_str().into()),
            ]
            .into(),
        ),
        AgentEvent::StatusChange { status, agent_type } => (
            "status_change",
            [("status", status.as_str().into()), ("agent_type", agent_type.as_str().into())].into(),
        ),
        AgentEvent::AgentError { message, level, time } => (
            "agent_error",
            [
                ("message", message.as_str().into()),
                ("level", level.as_str().into()),
                ("time", time.as_str().into()),
            ]
            .into(),
        ),
        AgentEvent::Other { event, data } => {
            (event.as_str(), [("data", data.as_str().into())].into())
        }
        _ => ("unknown", BTreeMap::new()),
    };
    if json {
        println!("{}", serde_json::json!({"event": name, "data": fields}));
    } else {
        let text: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("{name} {}", text.join(" "));
    }
}
