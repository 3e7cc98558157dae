//! Random values of the OAuth flows: `state`, PKCE verifiers and their S256 challenges,
//! proxy tokens (`aps_` + 256 random bits), and the SHA-256 hex under which they are stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// `bytes` random bytes as hex.
pub fn random_hex(bytes: usize) -> Result<String, ApiError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("no randomness: {error}")))?;
    Ok(hex::encode(buffer))
}

/// A PKCE code verifier: 43 characters of the unreserved alphabet (RFC 7636 §4.1).
pub fn code_verifier() -> Result<String, ApiError> {
    let mut buffer = [0u8; 32];
    getrandom::fill(&mut buffer)
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("no randomness: {error}")))?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

/// The S256 challenge of a verifier: BASE64URL(SHA-256(verifier)) without padding.
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
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
    fn the_s256_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn secrets_are_long_distinct_and_well_formed() {
        let verifier = code_verifier().expect("verifier");
        assert_eq!(verifier.len(), 43);
        assert_ne!(verifier, code_verifier().expect("verifier"));
        let token = proxy_token().expect("token");
        assert!(token.starts_with("aps_") && token.len() == 4 + 64);
        assert_eq!(hash_hex(&token).len(), 64);
    }
}
