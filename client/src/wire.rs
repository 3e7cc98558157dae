//! Decoding rules shared by the request bodies: a `null` reads as the field's default, as an
//! absent field does.

use serde::{Deserialize, Deserializer};

/// `null` or absent (with `#[serde(default)]`) give `T::default()`.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
