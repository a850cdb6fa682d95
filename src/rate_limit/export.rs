//! The limiter's own numbers as Prometheus metrics (feature `metrics`).

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::RateLimitLayer;

impl<M> RateLimitLayer<M> {
    /// Exports, read at each scrape:
    /// - `rate_limit_tracked_keys` (gauge): keys held in process;
    /// - `rate_limit_backend_fallbacks_total` (counter): checks answered by the
    ///   failure mode because the shared backend was unavailable;
    /// - `rate_limit_backend_unavailable` (gauge, 0 or 1): whether the backend's
    ///   circuit breaker is open.
    ///
    /// The registry keeps a handle on the limiter's state, so register the layer
    /// your service uses, once.
    ///
    /// ```
    /// use tower_ops::rate_limit::RateLimitLayer;
    ///
    /// let mut registry = prometheus_client::registry::Registry::default();
    /// let limiter = RateLimitLayer::new();
    /// limiter.register_metrics(&mut registry);
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    /// assert!(text.contains("rate_limit_tracked_keys 0"));
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(LimiterCollector(self.same_state())));
    }
}

struct LimiterCollector(RateLimitLayer);

impl fmt::Debug for LimiterCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LimiterCollector").finish()
    }
}

impl Collector for LimiterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let keys = ConstGauge::new(self.0.len() as i64);
        keys.encode(encoder.encode_descriptor(
            "rate_limit_tracked_keys",
            "Rate-limit keys held in process",
            None,
            keys.metric_type(),
        )?)?;
        let fallbacks = ConstCounter::new(self.0.fallbacks());
        fallbacks.encode(encoder.encode_descriptor(
            "rate_limit_backend_fallbacks",
            "Checks answered by the failure mode while the shared backend was unavailable",
            None,
            fallbacks.metric_type(),
        )?)?;
        let open = ConstGauge::new(i64::from(self.0.backend_unavailable()));
        open.encode(encoder.encode_descriptor(
            "rate_limit_backend_unavailable",
            "1 while the shared backend's circuit breaker is open",
            None,
            open.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use http::Request;
    use tower::{ServiceExt, service_fn};
    use tower_layer::Layer;

    use super::*;
    use crate::client_ip::ClientIp;

    #[tokio::test]
    async fn tracked_keys_follow_requests() {
        let limiter = RateLimitLayer::with_quota(crate::rate_limit::Quota::per_minute(10));
        let mut registry = Registry::default();
        limiter.register_metrics(&mut registry);
        let svc = limiter.layer(service_fn(|_req: Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }));
        for i in 0..3u8 {
            let mut req = Request::new(());
            req.extensions_mut()
                .insert(ClientIp::from_peer(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))));
            svc.clone().oneshot(req).await.unwrap();
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("rate_limit_tracked_keys 3"), "{text}");
        assert!(
            text.contains("rate_limit_backend_fallbacks_total 0"),
            "{text}"
        );
        assert!(text.contains("rate_limit_backend_unavailable 0"), "{text}");
    }
}
