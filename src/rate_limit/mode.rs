//! Whether a policy refuses requests over its limit or only marks them.

use crate::config::{self, ConfigError};

/// Whether a policy refuses what it limits (`RATE_LIMIT_MODE`).
///
/// Set it for every policy with [`RateLimitLayer::mode`](super::RateLimitLayer::mode),
/// or for one with [`Policy::mode`](super::Policy::mode); a policy's own mode wins
/// over the layer's. See [shadow mode](super#shadow-mode) in the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Over the limit, answer 429 (the default).
    #[default]
    Enforce,
    /// Over the limit, serve the request as usual and leave a
    /// [`ShadowRejection`](crate::error::ShadowRejection) on the response for the
    /// log and metrics layers: a new limit shows whom it would refuse before it
    /// refuses anyone.
    Shadow,
}

impl Mode {
    /// Reads `RATE_LIMIT_MODE` (`enforce` or `shadow`, in any case; default
    /// `enforce`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut errors = ConfigError::default();
        let mode = Self::read_env(&mut errors);
        errors.into_result(mode)
    }

    pub(crate) fn read_env(errors: &mut ConfigError) -> Self {
        const VAR: &str = "RATE_LIMIT_MODE";
        match config::var(VAR, errors) {
            None => Mode::Enforce,
            Some(value) => Self::parse(&value).unwrap_or_else(|| {
                errors.push(VAR, &value, "enforce or shadow");
                Mode::Enforce
            }),
        }
    }

    fn parse(value: &str) -> Option<Self> {
        if value.eq_ignore_ascii_case("enforce") {
            Some(Mode::Enforce)
        } else if value.eq_ignore_ascii_case("shadow") {
            Some(Mode::Shadow)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_words_in_any_case_and_nothing_else() {
        for (text, mode) in [
            ("enforce", Some(Mode::Enforce)),
            ("ENFORCE", Some(Mode::Enforce)),
            ("shadow", Some(Mode::Shadow)),
            ("Shadow", Some(Mode::Shadow)),
            ("", None),
            (" shadow", None),
            ("shadows", None),
            ("dry-run", None),
            ("off", None),
        ] {
            assert_eq!(Mode::parse(text), mode, "{text:?}");
        }
        assert_eq!(Mode::default(), Mode::Enforce);
    }
}
