//! `helpers setup-claude-code`: mark Claude Code's first-run dialogs (onboarding, trusting
//! the working directory) as done, so an agent started for a session does not stop at them.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Value, json};

pub fn setup() -> anyhow::Result<()> {
    let dir = match std::env::var_os("CLAUDE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("neither CLAUDE_DIR nor HOME is set")?)
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
    let path = dir.join(".claude.json");
    let mut settings: Value = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?,
        Err(_) => json!({}),
    };
    let Some(object) = settings.as_object_mut() else {
        anyhow::bail!("{} does not hold a JSON object", path.display());
    };
    object.insert("hasCompletedOnboarding".into(), Value::Bool(true));
    let project = std::env::current_dir().context("while reading the working directory")?;
    let projects = object.entry("projects").or_insert_with(|| json!({}));
    if let Some(projects) = projects.as_object_mut() {
        let entry = projects.entry(project.display().to_string()).or_insert_with(|| json!({}));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert("hasTrustDialogAccepted".into(), Value::Bool(true));
            entry.insert("hasCompletedProjectOnboarding".into(), Value::Bool(true));
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&settings)?)
        .with_context(|| format!("while writing {}", path.display()))?;
    eprintln!("Claude Code set up in {}", path.display());
    Ok(())
}
