//! Configuration errors shared by every `from_env()`.
//!
//! Reading the environment never stops at the first bad value: every problem is
//! collected, so a misconfigured deployment is fixed in one round.

use std::fmt;
use std::time::Duration;

/// One invalid environment variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The variable, for example `TRUSTED_PROXIES`.
    pub variable: String,
    /// The value found (shortened when very long).
    pub value: String,
    /// What was expected instead.
    pub expected: String,
}

/// Every problem found while reading configuration.
///
/// Its `Debug` output is the readable list too, so `main` returning
/// `Result<(), Box<dyn Error>>` prints every problem legibly.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// The problems, in the order they were found.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }

    /// Records a problem. The value is redacted (a password in `REDIS_URL`, a
    /// token) and shortened before it is kept, since errors end up in logs.
    pub fn push(&mut self, variable: &str, value: &str, expected: impl Into<String>) {
        const MAX: usize = 200;
        let redacted = crate::redact::Redactor::default().redact_text(value);
        let value: &str = &redacted;
        let value = if value.len() > MAX {
            let mut end = MAX;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}...", &value[..end])
        } else {
            value.to_owned()
        };
        self.problems.push(ConfigProblem {
            variable: variable.to_owned(),
            value,
            expected: expected.into(),
        });
    }

    /// Adds the problems of `other` to these, skipping exact duplicates (several
    /// layers read `ERROR_FORMAT`, for example).
    pub fn merge(&mut self, other: ConfigError) {
        for problem in other.problems {
            if !self.problems.contains(&problem) {
                self.problems.push(problem);
            }
        }
    }

    /// Keeps the value of `result`, or records its problems and returns `None`.
    pub fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(errors) => {
                self.merge(errors);
                None
            }
        }
    }

    /// `Ok(value)` when no problem was recorded, `Err(self)` otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.problems.len())?;
        if self.problems.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str(")")?;
        for p in &self.problems {
            write!(
                f,
                "\n  {}={:?}: expected {}",
                p.variable, p.value, p.expected
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}

/// Reads a variable; `None` when it is unset or empty. Values that are not valid
/// Unicode are reported as problems.
pub(crate) fn var(name: &str, errors: &mut ConfigError) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => None,
        Ok(v) => Some(v.trim().to_owned()),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(raw)) => {
            errors.push(name, &raw.to_string_lossy(), "valid UTF-8");
            None
        }
    }
}

/// Reads a duration in milliseconds from `name`; `min` is the smallest value
/// accepted (at most a day). On a bad value, records it in `errors` and
/// returns `default`.
pub(crate) fn parse_ms(
    name: &str,
    default: Duration,
    min: u64,
    errors: &mut ConfigError,
) -> Duration {
    const DAY: u64 = 24 * 60 * 60 * 1000;
    ms(name, min..=DAY, errors).unwrap_or(default)
}

/// The one millisecond parser: a whole number of milliseconds in `range` from
/// `name`, or `None` when the variable is unset or invalid (then recorded in
/// `errors`).
pub(crate) fn ms(
    name: &str,
    range: std::ops::RangeInclusive<u64>,
    errors: &mut ConfigError,
) -> Option<Duration> {
    let raw = var(name, errors)?;
    ms_value(name, &raw, range, errors)
}

fn ms_value(
    name: &str,
    raw: &str,
    range: std::ops::RangeInclusive<u64>,
    errors: &mut ConfigError,
) -> Option<Duration> {
    match raw.parse::<u64>() {
        Ok(ms) if range.contains(&ms) => Some(Duration::from_millis(ms)),
        _ => {
            let (min, max) = (range.start(), range.end());
            let expected = if *max == u64::MAX {
                format!("a whole number of milliseconds of at least {min}")
            } else {
                format!("a whole number of milliseconds from {min} to {max}")
            };
            errors.push(name, raw, expected);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds() {
        let mut errors = ConfigError::default();
        let ms = |raw, errors: &mut ConfigError| ms_value("T_MS", raw, 1..=86_400_000, errors);
        assert_eq!(ms("250", &mut errors), Some(Duration::from_millis(250)));
        assert_eq!(
            ms("86400000", &mut errors),
            Some(Duration::from_secs(86_400))
        );
        assert!(errors.problems().is_empty());
        for bad in [
            "0",
            "30s",
            "-5",
            "1.5",
            "",
            " 5",
            "86400001",
            "99999999999999999999",
        ] {
            assert_eq!(ms(bad, &mut errors), None, "{bad:?}");
        }
        assert_eq!(errors.problems().len(), 8);
        let text = errors.to_string();
        assert!(
            text.contains(
                "T_MS=\"30s\": expected a whole number of milliseconds from 1 to 86400000"
            ),
            "{text}"
        );
        let mut errors = ConfigError::default();
        assert_eq!(
            ms_value("S_MS", "0", 0..=u64::MAX, &mut errors),
            Some(Duration::ZERO)
        );
        assert_eq!(ms_value("S_MS", "x", 0..=u64::MAX, &mut errors), None);
        assert!(errors.to_string().contains("of at least 0"), "{errors}");
    }

    #[test]
    fn lists_every_problem() {
        let mut e = ConfigError::default();
        e.push("A", "x", "a number");
        e.push("B", &"é".repeat(300), "short");
        let text = e.to_string();
        assert!(text.starts_with("invalid configuration (2 problems)"));
        assert!(text.contains("A=\"x\": expected a number"));
        assert!(e.problems()[1].value.ends_with("..."));
        e.push("REDIS_URL", "redis://:hunter2@cache:6379", "a URL");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.into_result(()).is_err());
        assert_eq!(ConfigError::default().into_result(5), Ok(5));
    }
}
