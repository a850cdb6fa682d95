//! What a secret is replaced with.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The default replacement text.
pub const REDACTED: &str = "[REDACTED]";

/// Values shorter than this (in characters) are never shown partly by
/// [`Censor::LastFour`]: four characters of a six-character PIN is most of it.
const LAST_FOUR_MIN_CHARS: usize = 12;

/// How a secret is replaced.
///
/// ```
/// use tower_ops::redact::{Censor, Redactor};
///
/// let fixed = Redactor::default();
/// assert_eq!(fixed.redact_query("token=abc123&page=2"), "token=[REDACTED]&page=2");
///
/// let removed = Redactor::builder().censor(Censor::Remove).build();
/// assert_eq!(removed.redact_query("token=abc123&page=2"), "page=2");
///
/// let hashed = Redactor::builder().censor(Censor::keyed_hash(b"log key")).build();
/// let once = hashed.redact_query("session=s-1");
/// assert!(once.starts_with("session=hmac:"));
/// // The same secret always gives the same digest, so requests can be correlated.
/// assert_eq!(once, hashed.redact_query("session=s-1"));
///
/// let last_four = Redactor::builder().censor(Censor::LastFour).build();
/// assert_eq!(last_four.redact_query("card=4111111111111111"), "card=****1111");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Censor {
    /// Replace the secret with a fixed text (`[REDACTED]` by default). In JSON the
    /// text is written as a string, whatever the type of the value it replaces.
    Fixed(Cow<'static, str>),
    /// Drop the JSON member or query parameter altogether. Where nothing can be
    /// dropped (a header value, a secret inside free text) `[REDACTED]` is written.
    Remove,
    /// Replace the secret with `hmac:` and the first 16 hex digits of its
    /// HMAC-SHA256 under a key of yours: equal secrets give equal digests (to
    /// correlate sessions, as OWASP suggests) without revealing them.
    KeyedHash(HashKey),
    /// Show `****` and the last four characters of secrets of 12 characters or
    /// more (the usual rule for payment cards); shorter secrets are fully replaced.
    LastFour,
}

impl Default for Censor {
    fn default() -> Self {
        Censor::Fixed(Cow::Borrowed(REDACTED))
    }
}

impl Censor {
    /// [`Censor::Fixed`] with your own text.
    pub fn fixed(text: impl Into<Cow<'static, str>>) -> Self {
        Censor::Fixed(text.into())
    }

    /// [`Censor::KeyedHash`] under `key` (any length; 32 random bytes are a good key).
    pub fn keyed_hash(key: impl AsRef<[u8]>) -> Self {
        Censor::KeyedHash(HashKey(Arc::from(key.as_ref())))
    }
}

/// The secret key of [`Censor::KeyedHash`]. Its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct HashKey(Arc<[u8]>);

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// A [`Censor`] prepared for use.
#[derive(Clone)]
pub(crate) enum Compiled {
    Fixed(Box<str>),
    Remove,
    Hash(Box<Hmac<Sha256>>),
    LastFour,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compiled::Fixed(text) => f.debug_tuple("Fixed").field(text).finish(),
            Compiled::Remove => f.write_str("Remove"),
            Compiled::Hash(_) => f.write_str("KeyedHash(..)"),
            Compiled::LastFour => f.write_str("LastFour"),
        }
    }
}

impl Compiled {
    pub(crate) fn new(censor: &Censor) -> Self {
        match censor {
            Censor::Fixed(text) => Compiled::Fixed(text.as_ref().into()),
            Censor::Remove => Compiled::Remove,
            Censor::KeyedHash(HashKey(key)) => match Hmac::<Sha256>::new_from_slice(key) {
                Ok(mac) => Compiled::Hash(Box::new(mac)),
                // HMAC accepts keys of any length; keep the safe fallback regardless.
                Err(_) => Compiled::Fixed(REDACTED.into()),
            },
            Censor::LastFour => Compiled::LastFour,
        }
    }

    pub(crate) fn removes(&self) -> bool {
        matches!(self, Compiled::Remove)
    }

    /// Writes the replacement of `secret` to `out`.
    pub(crate) fn write(&self, secret: &str, out: &mut String) {
        match self {
            Compiled::Fixed(text) => out.push_str(text),
            Compiled::Remove => out.push_str(REDACTED),
            Compiled::Hash(mac) => {
                let mut mac = (**mac).clone();
                mac.update(secret.as_bytes());
                let digest = mac.finalize().into_bytes();
                out.push_str("hmac:");
                for byte in &digest[..8] {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.push(HEX[usize::from(byte >> 4)] as char);
                    out.push(HEX[usize::from(byte & 0xf)] as char);
                }
            }
            Compiled::LastFour => {
                let count = secret.chars().count();
                if count < LAST_FOUR_MIN_CHARS {
                    out.push_str(REDACTED);
                } else {
                    out.push_str("****");
                    out.extend(secret.chars().skip(count - 4));
                }
            }
        }
    }

    /// The replacement of `secret` as a new string.
    pub(crate) fn render(&self, secret: &str) -> String {
        let mut out = String::new();
        self.write(secret, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let censor = Censor::keyed_hash("super-secret-key");
        assert!(!format!("{censor:?}").contains("super"));
        assert!(!format!("{:?}", Compiled::new(&censor)).contains("super"));
    }

    #[test]
    fn keyed_hash_is_stable_and_keyed() {
        let a = Compiled::new(&Censor::keyed_hash("k1"));
        let b = Compiled::new(&Censor::keyed_hash("k2"));
        assert_eq!(a.render("secret"), a.render("secret"));
        assert_ne!(a.render("secret"), b.render("secret"));
        assert_ne!(a.render("secret"), a.render("secreT"));
        assert_eq!(a.render("x").len(), "hmac:".len() + 16);
    }

    #[test]
    fn last_four_hides_short_values() {
        let c = Compiled::LastFour;
        assert_eq!(c.render("1234"), REDACTED);
        assert_eq!(c.render("4111111111111111"), "****1111");
        assert_eq!(c.render("ééééééééééééa"), "****éééa");
    }
}
