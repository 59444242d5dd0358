//! A string that must never be printed: private-key PEM, tokens.

use std::fmt;

/// Holds secret text (a private-key PEM, a bearer token). Its `Debug` and
/// `Display` print `[redacted]`, so a stray `{:?}` in a log line or an error
/// cannot leak it; the bytes are only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The secret itself: call only where the bytes are consumed (parsing,
    /// comparison, encryption), never where they could be formatted.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Secrets arrive in request bodies and the decrypted store; there is
/// deliberately no `Serialize`, so one can never be written out by accident.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formatting a secret in any way must not show its contents.
    #[test]
    fn never_formats_contents() {
        // Built at runtime so no committed file carries a key marker.
        let text = format!("-----BEGIN {} KEY-----abc", "PRIVATE");
        let s = Secret::new(text.clone());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), text);
    }
}
