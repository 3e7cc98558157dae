//! The bridge's text work, all pure: options in a message (`profile:`, `repo:`), commands,
//! the initial message with the thread's history, and an agent's reply made fit for a chat
//! message (terminal chrome trimmed, code fenced, split at the platform's limit).

use crate::chat::platform::HistoryMessage;

/// What a starting message asks for besides its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub profile: Option<String>,
    pub repository: Option<String>,
    /// The text without the options.
    pub text: String,
}

/// Takes `profile:<name>` and `repo:<owner/repo>` words out of `text`.
pub fn options(text: &str) -> Options {
    let mut found = Options::default();
    let mut rest = Vec::new();
    for word in text.split(' ') {
        if let Some(name) = word.strip_prefix("profile:").filter(|n| !n.is_empty()) {
            found.profile = Some(name.to_string());
        } else if let Some(repo) = word.strip_prefix("repo:").filter(|r| !r.is_empty()) {
            found.repository = Some(repo.to_string());
        } else {
            rest.push(word);
        }
    }
    found.text = rest.join(" ").trim().to_string();
    found
}

/// A command addressed to the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Stop,
    Status,
}

/// `stop` or `status` as the whole message (case and a trailing `!`/`.` ignored).
pub fn command(text: &str) -> Option<Command> {
    let word = text.trim().trim_end_matches(['!', '.']).to_ascii_lowercase();
    match word.as_str() {
        "stop" => Some(Command::Stop),
        "status" => Some(Command::Status),
        _ => None,
    }
}

/// The first message of a session: the request, then the thread's earlier messages.
pub fn initial_message(
    request: &str,
    history: &[HistoryMessage],
    name_of: impl Fn(&HistoryMessage) -> String,
) -> String {
    if history.is_empty() {
        return request.to_string();
    }
    let mut message = String::from(request);
    message.push_str("\n\nEarlier in this thread (oldest first):\n");
    for earlier in history {
        message.push_str(&format!("{}: {}\n", name_of(earlier), earlier.text));
    }
    message.trim_end().to_string()
}

/// Box-drawing and block characters a terminal UI draws around text.
fn is_chrome(character: char) -> bool {
    matches!(character, '\u{2500}'..='\u{259F}')
}

/// The agent's terminal text made fit for a message: trailing spaces and box-drawing chrome
/// trimmed from every line, lines of chrome only dropped, blank runs collapsed.
pub fn clean(reply: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in reply.lines() {
        let trimmed = line.trim_end().trim_end_matches(is_chrome).trim_end();
        let framed = trimmed.starts_with(is_chrome);
        let trimmed = trimmed.trim_start_matches(is_chrome);
        let trimmed = if framed { trimmed.trim_start() } else { trimmed };
        let only_chrome = !line.trim().is_empty() && trimmed.trim().is_empty();
        if only_chrome {
            continue;
        }
        let blank = trimmed.trim().is_empty();
        if blank && lines.last().is_none_or(|last| last.is_empty()) {
            continue;
        }
        lines.push(if blank { String::new() } else { trimmed.to_string() });
    }
    while lines.last().is_some_and(|last| last.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// Whether text reads as code (most non-blank lines indented or shaped like code) and
/// carries no fence of its own.
fn looks_like_code(text: &str) -> bool {
    if text.contains("```") {
        return false;
    }
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    if lines.len() < 3 {
        return false;
    }
    let code_like = lines
        .iter()
        .filter(|line| {
            line.starts_with("    ")
                || line.starts_with('\t')
                || line.trim_end().ends_with([';', '{', '}'])
        })
        .count();
    code_like * 2 > lines.len()
}

/// `text` as one or more messages of at most `max_chars` characters: split at line ends
/// where possible; code goes in a fenced block in every part.
pub fn split(text: &str, max_chars: usize) -> Vec<String> {
    let fenced = looks_like_code(text);
    let overhead = if fenced { 8 } else { 0 };
    let limit = max_chars.saturating_sub(overhead).max(1);
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut current_chars = 0usize;
    for line in text.split_inclusive('\n') {
        let mut line = line;
        loop {
            let line_chars = line.chars().count();
            if current_chars + line_chars <= limit {
                current.push_str(line);
                current_chars += line_chars;
                break;
            }
            if current_chars > 0 {
                parts.push(std::mem::take(&mut current));
                current_chars = 0;
                continue;
            }
            let cut = line.char_indices().nth(limit).map_or(line.len(), |(index, _)| index);
            parts.push(line[..cut].to_string());
            line = &line[cut..];
            if line.is_empty() {
                break;
            }
        }
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
        .into_iter()
        .map(|part| {
            let part = part.trim_end_matches('\n');
            if fenced { format!("```\n{part}\n```") } else { part.to_string() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_taken_out_of_the_text() {
        let found = options("profile:backend fix the build repo:acme/api please");
        assert_eq!(found.profile.as_deref(), Some("backend"));
        assert_eq!(found.repository.as_deref(), Some("acme/api"));
        assert_eq!(found.text, "fix the build please");
        assert_eq!(options("just text").profile, None);
    }

    #[test]
    fn commands_are_whole_messages() {
        assert_eq!(command(" Stop! "), Some(Command::Stop));
        assert_eq!(command("status"), Some(Command::Status));
        assert_eq!(command("stop the build"), None);
    }

    #[test]
    fn chrome_and_trailing_spaces_are_trimmed() {
        let raw = "╭──────╮   \n│ hello world   │\n╰──────╯\n\n\n  next line   \n\n";
        assert_eq!(clean(raw), "hello world\n\n  next line");
    }

    #[test]
    fn long_text_is_split_at_line_ends_within_the_limit() {
        let text = "aaaa\nbbbb\ncccc\n";
        assert_eq!(split(text, 10), ["aaaa\nbbbb", "cccc"]);
        let long = "x".repeat(25);
        let parts = split(&long, 10);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|part| part.chars().count() <= 10));
        assert_eq!(parts.concat(), long);
    }

    #[test]
    fn code_is_fenced_in_every_part() {
        let code = "fn main() {\n    let x = 1;\n    println!(\"{x}\");\n}\n";
        let parts = split(code, 4000);
        assert_eq!(parts, [format!("```\n{}\n```", code.trim_end())]);
    }

    #[test]
    fn history_follows_the_request_with_authors() {
        let earlier = HistoryMessage {
            message_id: "1".into(),
            user: Some("U1".into()),
            text: "it broke".into(),
            from_bot: false,
        };
        let message = initial_message("fix it", &[earlier], |_| "alice".into());
        assert_eq!(message, "fix it\n\nEarlier in this thread (oldest first):\nalice: it broke");
    }
}
