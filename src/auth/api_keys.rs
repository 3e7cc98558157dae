//! Static API keys: the set loaded from `auth.static.api_keys` and the keys file, held only
//! as hashes. Plaintext and `sha256:` entries are found by the presented key's SHA-256 in a
//! map; Argon2id entries are verified once, off the async workers and a few at a time, and
//! the verdict is cached by the key's SHA-256, so the proxy path never runs Argon2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::config::{ApiKeyEntry, Config, parse_timestamp, read_keys_file};

/// How long an Argon2 verdict is trusted.
const POSITIVE_CACHE: Duration = Duration::from_secs(300);
const NEGATIVE_CACHE: Duration = Duration::from_secs(30);
/// Most cached verdicts; past this the cache starts over.
const CACHE_LIMIT: usize = 10_000;
/// Argon2 verifications allowed at once.
const ARGON2_PARALLELISM: usize = 2;

/// SHA-256 of a presented credential: how keys are looked up and cached, never the key.
pub type KeyDigest = [u8; 32];

pub fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// Who a key belongs to and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub user_id: Arc<str>,
    pub role: Arc<str>,
    pub permissions: Arc<[String]>,
    pub expires_at: Option<OffsetDateTime>,
}

impl KeyIdentity {
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|expiry| expiry <= now)
    }
}

#[derive(Debug)]
struct SlowKey {
    prefix: Option<String>,
    phc: String,
    /// SHA-256 of `phc`: what a sign-in session made with this key is bound to.
    phc_digest: KeyDigest,
    identity: Arc<KeyIdentity>,
}

/// One loaded generation of keys.
#[derive(Debug, Default)]
struct KeySet {
    by_digest: HashMap<KeyDigest, (KeyDigest, Arc<KeyIdentity>)>,
    slow: Vec<SlowKey>,
}

impl KeySet {
    fn build(entries: &[ApiKeyEntry]) -> Result<Self, String> {
        let mut set = KeySet::default();
        for entry in entries {
            let identity = Arc::new(KeyIdentity {
                user_id: entry.user_id.as_str().into(),
                role: if entry.role.is_empty() {
                    "user".into()
                } else {
                    entry.role.as_str().into()
                },
                permissions: entry.permissions.as_slice().into(),
                expires_at: entry.expires_at.as_deref().and_then(parse_timestamp),
            });
            match (&entry.key, &entry.key_hash) {
                (Some(key), _) => {
                    let key_digest = digest(key);
                    set.by_digest.insert(key_digest, (key_digest, identity));
                }
                (None, Some(hash)) => match hash.strip_prefix("sha256:") {
                    Some(hex_digest) => {
                        let mut key_digest = [0u8; 32];
                        hex::decode_to_slice(hex_digest, &mut key_digest).map_err(|_| {
                            format!("key of {} has a malformed sha256 hash", entry.user_id)
                        })?;
                        set.by_digest.insert(key_digest, (key_digest, identity));
                    }
                    None => set.slow.push(SlowKey {
                        prefix: entry.key_prefix.clone(),
                        phc: hash.clone(),
                        phc_digest: digest(hash),
                        identity,
                    }),
                },
                (None, None) => return Err(format!("an entry of {} has no key", entry.user_id)),
            }
        }
        Ok(set)
    }
}

#[derive(Debug)]
struct Verdict {
    identity: Option<Arc<KeyIdentity>>,
    until: Instant,
}

/// The live set of static API keys; reloadable.
#[derive(Debug)]
pub struct ApiKeys {
    inline: Vec<ApiKeyEntry>,
    keys_file: Option<PathBuf>,
    set: RwLock<Arc<KeySet>>,
    verdicts: Mutex<HashMap<KeyDigest, Verdict>>,
    /// Which Argon2 entry (by PHC string) a key digest matched; kept across reloads so open
    /// streams can tell whether their key survived one.
    argon2_matches: Mutex<HashMap<KeyDigest, String>>,
    argon2: Semaphore,
    /// Bumped whenever the set changes, so open streams re-check their credential.
    generation: tokio::sync::watch::Sender<u64>,
}

impl ApiKeys {
    /// Loads inline keys and the keys file (already validated at startup).
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        let statics = &config.auth.static_keys;
        let keys_file = (!statics.keys_file.is_empty()).then(|| PathBuf::from(&statics.keys_file));
        let mut entries = statics.api_keys.clone();
        if let Some(path) = &keys_file {
            entries.extend(read_keys_file(path).map_err(anyhow::Error::msg)?);
        }
        let set = KeySet::build(&entries).map_err(anyhow::Error::msg)?;
        Ok(Self {
            inline: statics.api_keys.clone(),
            keys_file,
            set: RwLock::new(Arc::new(set)),
            verdicts: Mutex::new(HashMap::new()),
            argon2_matches: Mutex::new(HashMap::new()),
            argon2: Semaphore::new(ARGON2_PARALLELISM),
            generation: tokio::sync::watch::Sender::new(0),
        })
    }

    pub fn keys_file(&self) -> Option<&Path> {
        self.keys_file.as_deref()
    }

    /// Re-reads the keys file; a broken file keeps the previous keys (the error says why).
    pub fn reload(&self) -> Result<(), String> {
        let mut entries = self.inline.clone();
        if let Some(path) = &self.keys_file {
            entries.extend(read_keys_file(path)?);
        }
        let set = KeySet::build(&entries)?;
        *self.set.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(set);
        self.verdicts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
        self.generation.send_modify(|generation| *generation += 1);
        Ok(())
    }

    /// Notified after every reload.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn current(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The identity of a presented key, if it is one of ours (expiry is the caller's check).
    pub async fn verify(&self, presented: &str) -> Option<Arc<KeyIdentity>> {
        self.verify_digested(presented, digest(presented)).await
    }

    /// [`ApiKeys::verify`] for a key whose digest the caller already computed.
    pub async fn verify_digested(
        &self,
        presented: &str,
        presented_digest: KeyDigest,
    ) -> Option<Arc<KeyIdentity>> {
        let set = self.current();
        if let Some((stored, identity)) = set.by_digest.get(&presented_digest) {
            return bool::from(stored.ct_eq(&presented_digest)).then(|| identity.clone());
        }
        if set.slow.is_empty() {
            return None;
        }
        if let Some(verdict) = self.cached(&presented_digest) {
            return verdict;
        }
        let candidates: Vec<(String, Arc<KeyIdentity>)> = set
            .slow
            .iter()
            .filter(|key| key.prefix.as_deref().is_none_or(|prefix| presented.starts_with(prefix)))
            .map(|key| (key.phc.clone(), key.identity.clone()))
            .collect();
        let found = if candidates.is_empty() {
            None
        } else {
            let _permit = self.argon2.acquire().await.ok()?;
            let presented = presented.to_string();
            tokio::task::spawn_blocking(move || {
                candidates.into_iter().find(|(phc, _)| argon2_matches(phc, &presented))
            })
            .await
            .ok()?
        };
        if let Some((phc, _)) = &found {
            let mut matches = self.argon2_matches.lock().unwrap_or_else(|p| p.into_inner());
            if matches.len() >= CACHE_LIMIT {
                matches.clear();
            }
            matches.insert(presented_digest, phc.clone());
        }
        let found = found.map(|(_, identity)| identity);
        self.remember(presented_digest, found.clone());
        found
    }

    /// The unexpired keys of `user_id`: what a person acting without a key (a chat user)
    /// may do when `auth.users` does not name them.
    pub fn identities_of(&self, user_id: &str) -> Vec<Arc<KeyIdentity>> {
        let now = OffsetDateTime::now_utc();
        let set = self.current();
        let fast = set.by_digest.values().map(|(_, identity)| identity);
        let slow = set.slow.iter().map(|key| &key.identity);
        fast.chain(slow)
            .filter(|identity| &*identity.user_id == user_id && !identity.is_expired(now))
            .cloned()
            .collect()
    }

    /// Whether the key with this digest is still in the set and unexpired (no Argon2 runs).
    pub fn still_valid(&self, key: &KeyDigest) -> bool {
        let now = OffsetDateTime::now_utc();
        let set = self.current();
        if let Some((_, identity)) = set.by_digest.get(key) {
            return !identity.is_expired(now);
        }
        let matched =
            self.argon2_matches.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned();
        matched.is_some_and(|phc| {
            set.slow.iter().any(|slow| slow.phc == phc && !slow.identity.is_expired(now))
        })
    }

    /// What a sign-in session opened with this (just verified) key is bound to: the key's
    /// digest (`api_key:<hex>`), or for an Argon2 entry the digest of its PHC string
    /// (`api_key_phc:<hex>`), which survives restarts without the key itself.
    pub fn binding_of(&self, key: &KeyDigest) -> Option<String> {
        if self.current().by_digest.contains_key(key) {
            return Some(format!("api_key:{}", hex::encode(key)));
        }
        let matches = self.argon2_matches.lock().unwrap_or_else(|p| p.into_inner());
        matches.get(key).map(|phc| format!("api_key_phc:{}", hex::encode(digest(phc))))
    }

    /// Whether the key a [`ApiKeys::binding_of`] names is still in the set and unexpired.
    pub fn binding_holds(&self, binding: &str) -> bool {
        let (kind, hex_digest) = binding.split_once(':').unwrap_or_default();
        let mut wanted = [0u8; 32];
        if hex::decode_to_slice(hex_digest, &mut wanted).is_err() {
            return false;
        }
        let now = OffsetDateTime::now_utc();
        let set = self.current();
        match kind {
            "api_key" => {
                set.by_digest.get(&wanted).is_some_and(|(_, identity)| !identity.is_expired(now))
            }
            "api_key_phc" => set.slow.iter().any(|slow| {
                bool::from(slow.phc_digest.ct_eq(&wanted)) && !slow.identity.is_expired(now)
            }),
            _ => false,
        }
    }

    fn cached(&self, key: &KeyDigest) -> Option<Option<Arc<KeyIdentity>>> {
        let verdicts = self.verdicts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        verdicts.get(key).filter(|v| v.until > Instant::now()).map(|v| v.identity.clone())
    }

    fn remember(&self, key: KeyDigest, identity: Option<Arc<KeyIdentity>>) {
        let lifetime = if identity.is_some() { POSITIVE_CACHE } else { NEGATIVE_CACHE };
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if verdicts.len() >= CACHE_LIMIT {
            verdicts.clear();
        }
        verdicts.insert(key, Verdict { identity, until: Instant::now() + lifetime });
    }
}

fn argon2_matches(phc: &str, presented: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|parsed| {
        argon2::Argon2::default().verify_password(presented.as_bytes(), &parsed).is_ok()
    })
}

/// The Argon2id PHC string for `key`, with a fresh random salt (`helpers hash-key`).
pub fn hash_key(key: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|error| anyhow::anyhow!("salt: {error}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(key.as_bytes(), &salt)
        .map_err(|error| anyhow::anyhow!("argon2: {error}"))?;
    Ok(hash.to_string())
}

/// A new random key: `<prefix>_` and 64 hex digits (256 bits).
pub fn generate_key(prefix: &str) -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
    Ok(format!("{prefix}_{}", hex::encode(bytes)))
}

/// The first characters of a key, safe to log.
pub fn loggable_prefix(key: &str) -> String {
    key.chars().take(6).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str) -> ApiKeyEntry {
        ApiKeyEntry {
            user_id: user.into(),
            permissions: vec!["*".into()],
            ..ApiKeyEntry::default()
        }
    }

    fn keys(entries: Vec<ApiKeyEntry>) -> ApiKeys {
        let mut config = Config::default();
        config.auth.static_keys.api_keys = entries;
        ApiKeys::load(&config).expect("loads")
    }

    #[tokio::test]
    async fn plaintext_sha256_and_argon2_entries_all_verify_and_near_misses_do_not() {
        let plain = ApiKeyEntry { key: Some("ap_alice_secret".into()), ..entry("alice") };
        let sha = ApiKeyEntry {
            key_hash: Some(format!("sha256:{}", hex::encode(digest("ap_bob_secret")))),
            ..entry("bob")
        };
        let argon = ApiKeyEntry {
            key_hash: Some(hash_key("ap_carol_secret").expect("hash")),
            key_prefix: Some("ap_carol".into()),
            ..entry("carol")
        };
        let keys = keys(vec![plain, sha, argon]);
        for (key, user) in
            [("ap_alice_secret", "alice"), ("ap_bob_secret", "bob"), ("ap_carol_secret", "carol")]
        {
            assert_eq!(&*keys.verify(key).await.expect(key).user_id, user);
        }
        for wrong in [
            "ap_alice_secreT",
            "AP_ALICE_SECRET",
            "ap_alice_secre",
            "ap_carol_secreX",
            "",
            "ap_bob_secret ",
        ] {
            assert!(keys.verify(wrong).await.is_none(), "{wrong:?}");
        }
        // Remembered: the next check of an Argon2 key is a map lookup, not another hash.
        let remembered = keys.cached(&digest("ap_carol_secret")).expect("a verdict is kept");
        assert_eq!(&*remembered.expect("a positive one").user_id, "carol");
    }

    #[test]
    fn generated_keys_are_long_random_and_hash_to_argon2id() {
        let one = generate_key("ap").expect("key");
        let two = generate_key("ap").expect("key");
        assert_ne!(one, two);
        assert!(one.starts_with("ap_") && one.len() == 3 + 64);
        assert!(hash_key(&one).expect("hash").starts_with("$argon2id$"));
        assert_eq!(loggable_prefix(&one).len(), 6);
    }
}
