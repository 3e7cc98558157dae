//! What the echo agent does with a user message: record it, go `running`, obey a `/fake`
//! directive if it is one, stream the reply `echo: <content>` as growing updates, go `stable`.

use std::sync::Arc;
use std::time::Duration;

use super::state::{Agent, Role, Status};
use super::text::Text;

/// How many growing `message_update` events a reply is streamed as.
const REPLY_STEPS: usize = 4;

/// Timing knobs read from the environment at start.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `ECHO_AGENT_BOOT_MS`: how long the agent stays `running` after start.
    pub boot: Duration,
    /// `ECHO_AGENT_REPLY_MS`: how long a reply takes to stream.
    pub reply: Duration,
}

impl Timing {
    pub fn from_env() -> Self {
        let ms = |name: &str, default: u64| {
            std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(default)
        };
        Timing {
            boot: Duration::from_millis(ms("ECHO_AGENT_BOOT_MS", 300)),
            reply: Duration::from_millis(ms("ECHO_AGENT_REPLY_MS", 200)),
        }
    }
}

/// A test directive found in a user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    Exit(u8),
    Hang,
    Big(usize),
    Error(String),
    Sleep(Duration),
}

impl Directive {
    /// Parses `/fake <what> <arg>`; anything else (or a bad argument) is a plain message.
    pub fn parse(content: &str) -> Option<Self> {
        let rest = content.trim().strip_prefix("/fake ")?.trim_start();
        let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
        let arg = arg.trim();
        match word {
            // Exit codes wrap like the kernel does (`exit(256)` is 0).
            "exit" => arg.parse::<i64>().ok().map(|c| Directive::Exit((c & 0xff) as u8)),
            "hang" => Some(Directive::Hang),
            "big" => arg.parse::<usize>().ok().map(Directive::Big),
            "error" => Some(Directive::Error(arg.to_string())),
            "sleep" => {
                arg.parse::<u64>().ok().map(|ms| Directive::Sleep(Duration::from_millis(ms)))
            }
            _ => None,
        }
    }
}

/// Why a user message was refused, in agentapi's words and order: the status first, then
/// the text (it must be trimmed, then non-empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Busy,
    Untrimmed,
    Empty,
}

impl Refusal {
    /// agentapi's problem `detail` for this refusal (always a 500).
    pub fn detail(self) -> &'static str {
        match self {
            Self::Busy => {
                "failed to send message: message can only be sent when the agent is waiting for user input"
            }
            Self::Untrimmed => {
                "failed to send message: message must be trimmed of leading and trailing whitespace"
            }
            Self::Empty => "failed to send message: message must not be empty",
        }
    }
}

/// Accepts a user message: records it and starts the agent working. Returns how long the
/// POST must wait before answering, and whether the server must stop answering afterwards.
/// The caller sleeps for `delay`, answers, then hangs the agent if `hang` says so.
pub fn send_user_message(
    agent: &Arc<Agent>,
    timing: Timing,
    content: &str,
) -> Result<Accepted, Refusal> {
    if agent.status() != Status::Stable {
        return Err(Refusal::Busy);
    }
    if content.trim() != content {
        return Err(Refusal::Untrimmed);
    }
    if content.is_empty() {
        return Err(Refusal::Empty);
    }
    if !agent.transition(Status::Stable, Status::Running) {
        return Err(Refusal::Busy);
    }
    let text = Text::new(content.to_string());
    let len = text.len();
    agent.push_message(Role::User, text, len);
    // The status went `running` before the user message was recorded; agentapi shows the
    // same order (the screen changes as the message is typed).
    let directive = Directive::parse(content);
    let mut accepted = Accepted { delay: Duration::ZERO, hang: false };
    let reply = match &directive {
        Some(Directive::Exit(code)) => {
            agent.request_exit(*code);
            return Ok(accepted);
        }
        Some(Directive::Hang) => {
            accepted.hang = true;
            return Ok(accepted);
        }
        Some(Directive::Big(kib)) => Reply::Big(*kib),
        Some(Directive::Error(text)) => {
            agent.agent_error(text);
            Reply::Echo(content.to_string())
        }
        Some(Directive::Sleep(delay)) => {
            accepted.delay = *delay;
            Reply::Echo(content.to_string())
        }
        None => Reply::Echo(content.to_string()),
    };
    tokio::spawn(stream_reply(agent.clone(), timing.reply, reply));
    Ok(accepted)
}

/// What the POST handler does once the message is accepted.
#[derive(Debug)]
pub struct Accepted {
    /// Block the POST this long before answering (`/fake sleep`).
    pub delay: Duration,
    /// Stop answering HTTP once this POST is answered (`/fake hang`).
    pub hang: bool,
}

enum Reply {
    Echo(String),
    Big(usize),
}

/// `kib` KiB of text in 64-byte numbered pieces, built in one pass. It holds only letters,
/// digits and spaces (no newlines), so JSON needs no escaping (see [`Text::plain`]).
pub fn big_text(kib: usize) -> String {
    let total = kib.saturating_mul(1024);
    let mut out = String::with_capacity(total);
    let mut line = 0usize;
    while out.len() < total {
        let mut chunk = format!("line {line:010} ");
        while chunk.len() < 63 {
            chunk.push('x');
        }
        chunk.push(' ');
        let room = total - out.len();
        out.push_str(chunk.get(..room.min(chunk.len())).unwrap_or(&chunk));
        line += 1;
    }
    out
}

/// Streams the reply as [`REPLY_STEPS`] growing updates over `duration`, then goes `stable`.
async fn stream_reply(agent: Arc<Agent>, duration: Duration, reply: Reply) {
    let text = match reply {
        Reply::Echo(content) => Text::new(format!("echo: {content}")),
        Reply::Big(kib) => match tokio::task::spawn_blocking(move || big_text(kib)).await {
            Ok(text) => Text::plain(text),
            Err(_) => Text::new("echo: (big reply failed)".to_string()),
        },
    };
    let cuts = cut_points(text.as_str(), REPLY_STEPS);
    let pause = duration / cuts.len().max(1) as u32;
    let mut id = None;
    for cut in cuts {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        if agent.is_hung() {
            return;
        }
        match id {
            None => id = Some(agent.push_message(Role::Agent, text.clone(), cut)),
            Some(id) => agent.grow_message(id, cut),
        }
    }
    agent.transition(Status::Running, Status::Stable);
}

/// Up to `steps` increasing prefix lengths of `text` on char boundaries, ending at its length.
fn cut_points(text: &str, steps: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (1..=steps)
        .map(|i| {
            let mut cut = text.len() * i / steps;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            cut
        })
        .filter(|&cut| cut > 0)
        .collect();
    cuts.dedup();
    if cuts.is_empty() {
        cuts.push(text.len());
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse() {
        assert_eq!(Directive::parse("/fake exit 3"), Some(Directive::Exit(3)));
        assert_eq!(Directive::parse("/fake exit 256"), Some(Directive::Exit(0)));
        assert_eq!(Directive::parse("/fake hang"), Some(Directive::Hang));
        assert_eq!(Directive::parse("/fake big 2"), Some(Directive::Big(2)));
        assert_eq!(Directive::parse("/fake error a b"), Some(Directive::Error("a b".into())));
        assert_eq!(
            Directive::parse("/fake sleep 30"),
            Some(Directive::Sleep(Duration::from_millis(30)))
        );
        assert_eq!(Directive::parse("/fake exit x"), None);
        assert_eq!(Directive::parse("hello"), None);
    }

    #[test]
    fn big_text_is_exact() {
        assert_eq!(big_text(3).len(), 3 * 1024);
        assert!(big_text(1).starts_with("line 0000000000 x"));
        assert!(big_text(2).bytes().all(|b| b.is_ascii_alphanumeric() || b == b' '));
        assert_eq!(big_text(0), "");
    }

    #[test]
    fn cuts_grow_to_the_end() {
        assert_eq!(cut_points("echo: hi", 4), vec![2, 4, 6, 8]);
        assert_eq!(cut_points("é", 4), vec![2]);
        assert_eq!(cut_points("", 4), vec![0]);
    }
}
