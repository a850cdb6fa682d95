//! Log sampling: which ordinary successes get a line.

/// The log sampling decision for one request, made by
/// [`RequestLogLayer`](super::RequestLogLayer) before the inner service runs and
/// carried by the request's [`LogFields`](super::LogFields)
/// ([`LogFields::sample`](super::LogFields::sample)), so handing it over costs
/// no allocation of its own.
///
/// With a sample rate below 1 ([`RequestLogLayer::sample_successes`](super::RequestLogLayer::sample_successes),
/// `LOG_SAMPLE_RATE`), only that fraction of *ordinary successes* gets a line: a
/// request whose status is below 400, that is not slow, not aborted, and carries
/// no [`Problem`](crate::error::Problem) and no
/// [`ShadowRejection`](crate::error::ShadowRejection). Every other request is
/// logged whatever the decision, so the decision says what happens to the line
/// *if* the request ends well. Metrics count every request either way.
///
/// A handler reads it to skip work that only feeds the line, such as building
/// [`LogFields`](super::LogFields). With axum it is an extractor that never
/// fails ([`LogSample::ALL`] without a request log layer):
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use axum::Extension;
/// use tower_ops::log::{LogFields, LogSample};
///
/// async fn handler(
///     sample: LogSample,
///     Extension(fields): Extension<LogFields>,
/// ) -> &'static str {
///     if sample.is_logged() {
///         fields.insert("cart_items", 3);
///     }
///     "ok"
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(handler));
/// # }
/// ```
///
/// Lines written under a rate below 1 carry `sample_rate`, so a log pipeline can
/// weigh each line by `1 / sample_rate` when it counts requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogSample {
    rate: f64,
    logged: bool,
}

impl LogSample {
    /// Every request logged: the decision when the rate is 1.
    pub const ALL: Self = Self {
        rate: 1.0,
        logged: true,
    };

    /// Draws the decision for one request at `rate` (0.0 to 1.0).
    pub(super) fn draw(rate: f64) -> Self {
        if rate >= 1.0 {
            return Self::ALL;
        }
        Self {
            rate,
            // `f64()` is in [0, 1): a rate of 0 logs none, 0.5 half.
            logged: fastrand::f64() < rate,
        }
    }

    /// Whether this request's line is written should it turn out an ordinary
    /// success (other requests are always logged).
    pub fn is_logged(&self) -> bool {
        self.logged
    }

    /// The fraction of ordinary successes that get a line (1.0: all of them).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The decision of the request with these extensions, or
    /// [`LogSample::ALL`] when no request log layer made one.
    pub fn of(extensions: &http::Extensions) -> Self {
        extensions
            .get::<super::LogFields>()
            .map_or(Self::ALL, super::LogFields::sample)
    }
}

/// The request's decision, [`LogSample::ALL`] without a request log layer.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for LogSample {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

impl Default for LogSample {
    fn default() -> Self {
        Self::ALL
    }
}

#[cfg(test)]
mod tests {
    use super::LogSample;

    #[test]
    fn rates_at_the_ends_are_exact() {
        for _ in 0..1000 {
            assert!(LogSample::draw(1.0).is_logged());
            assert!(LogSample::draw(2.0).is_logged());
            assert!(!LogSample::draw(0.0).is_logged());
        }
        assert_eq!(LogSample::draw(1.0), LogSample::ALL);
        assert_eq!(LogSample::of(&http::Extensions::new()), LogSample::ALL);
        // The decision is read from the request's fields.
        let mut extensions = http::Extensions::new();
        extensions.insert(super::super::LogFields::sampled(LogSample::draw(0.0)));
        let read = LogSample::of(&extensions);
        assert!(!read.is_logged());
        assert_eq!(read.rate(), 0.0);
    }

    #[test]
    fn a_fraction_logs_about_that_fraction() {
        let logged = (0..100_000)
            .filter(|_| LogSample::draw(0.25).is_logged())
            .count();
        // Binomial(100000, 0.25): sd ~137; 6 sd either side.
        assert!((24_180..=25_820).contains(&logged), "{logged}");
        assert_eq!(LogSample::draw(0.25).rate(), 0.25);
    }
}
