//! Query strings of API routes, read as ordered pairs so repeated and prefixed keys
//! (`tag.<key>=<value>`) survive; malformed ones are a 400 JSON error.

use crate::error::ApiError;

/// Decodes `a=1&b=2` into pairs; `None` reads as no pairs.
pub fn pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|_| ApiError::bad_request("invalid_request", "the query string is malformed"))
}

/// A whole number parameter within `0..=max`, or `default` when absent.
pub fn number(pairs: &[(String, String)], name: &str, default: u64) -> Result<u64, ApiError> {
    match pairs.iter().rev().find(|(key, _)| key == name) {
        None => Ok(default),
        Some((_, value)) => value.parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid_request", format!("`{name}` must be a whole number"))
        }),
    }
}

/// The last value of `name`, if given.
pub fn text<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}
