//! `helpers generate-token` and `helpers hash-key`: creating keys and their keys-file entries.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::helpers::GenerateTokenArgs;
use crate::auth::PERMISSIONS;
use crate::auth::api_keys::{generate_key, hash_key};
use crate::clock::{format_ms, now_ms};

const DEFAULT_PERMISSIONS: &[&str] =
    &["session:create", "session:list", "session:delete", "session:access"];

pub fn generate_token(args: &GenerateTokenArgs) -> anyhow::Result<()> {
    let permissions: Vec<String> = if args.permissions.is_empty() {
        DEFAULT_PERMISSIONS.iter().map(|p| p.to_string()).collect()
    } else {
        args.permissions.iter().map(|p| p.trim().to_string()).collect()
    };
    if let Some(unknown) = permissions.iter().find(|p| !PERMISSIONS.contains(&p.as_str())) {
        bail!("unknown permission {unknown:?} (known: {})", PERMISSIONS.join(", "));
    }
    if args.user_id.trim().is_empty() {
        bail!("--user-id must not be empty");
    }
    let key = generate_key(&args.key_prefix)?;
    let now = now_ms();
    let expires = now + i64::from(args.expiry_days) * 86_400_000;
    let mut entry = json!({
        "user_id": args.user_id,
        "role": args.role,
        "permissions": permissions,
        "created_at": format_ms(now),
        "expires_at": format_ms(expires),
    });
    if args.plaintext {
        entry["key"] = Value::String(key.clone());
    } else {
        entry["key_hash"] = Value::String(hash_key(&key)?);
        entry["key_prefix"] = Value::String(key.chars().take(8).collect());
    }
    append_entry(&args.output_path, entry)?;
    println!("{key}");
    eprintln!(
        "added a key for {} to {} (shown once; store it now)",
        args.user_id,
        args.output_path.display()
    );
    Ok(())
}

/// Appends to `{"api_keys": [...]}`, rewriting the file atomically with mode 0600.
fn append_entry(path: &Path, entry: Value) -> anyhow::Result<()> {
    let mut document = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<Value>(&text)
            .with_context(|| format!("{} is not valid JSON; not touching it", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => json!({"api_keys": []}),
        Err(error) => {
            return Err(error).with_context(|| format!("while reading {}", path.display()));
        }
    };
    let Some(keys) = document.get_mut("api_keys").and_then(Value::as_array_mut) else {
        bail!("{} has no \"api_keys\" list; not touching it", path.display());
    };
    keys.push(entry);
    let text = serde_json::to_string_pretty(&document)?;
    let temporary = path.with_extension("tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("while writing {}", temporary.display()))?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path).with_context(|| format!("while replacing {}", path.display()))
}

pub fn hash_stdin() -> anyhow::Result<()> {
    let mut key = String::new();
    std::io::stdin().read_to_string(&mut key).context("while reading the key from stdin")?;
    let key = key.trim_end_matches(['\n', '\r']);
    if key.is_empty() {
        bail!("no key on stdin");
    }
    println!("{}", hash_key(key)?);
    Ok(())
}
