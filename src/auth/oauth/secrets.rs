//! Random values of the OAuth flows that the `oauth2` crate does not make (`state` and PKCE
//! are made in `flow.rs`): the browser login's binding cookie, proxy tokens (`aps_` + 256 random bits), and the SHA-256 hex under which they are stored.

use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// `bytes` random bytes as hex.
pub fn random_hex(bytes: usize) -> Result<String, ApiError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("no randomness: {error}")))?;
    Ok(hex::encode(buffer))
}

/// A new proxy-issued token.
pub fn proxy_token() -> Result<String, ApiError> {
    Ok(format!("aps_{}", random_hex(32)?))
}

/// SHA-256 of a secret as lower-case hex: how states, cookies and tokens are stored.
pub fn hash_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_distinct_and_well_formed() {
        assert_ne!(random_hex(32).expect("random"), random_hex(32).expect("random"));
        let token = proxy_token().expect("token");
        assert!(token.starts_with("aps_") && token.len() == 4 + 64);
        assert_eq!(hash_hex(&token).len(), 64);
    }
}
