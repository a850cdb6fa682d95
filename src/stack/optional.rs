//! A layer that can be switched off without changing the stack's type.

use tower_layer::Layer;

/// `Some(layer)` applies the layer; `None` passes requests straight through.
///
/// Either way the service is the layer's own (`L::Service`): a layer that is off
/// builds its service in pass-through mode ([`Switchable::off`]), which costs one
/// branch per request. Wrapping the two cases in an `enum` instead would put the
/// inner service's type in the stack twice at every optional layer, so four of
/// them would repeat it sixteen times, and the compiler would pay for that on
/// every bound it checks (an error in code around the stack would take minutes to
/// report).
///
/// ```
/// use tower_ops::stack::Optional;
/// use tower_ops::timeout::TimeoutLayer;
///
/// let on = Optional::new(Some(TimeoutLayer::new(std::time::Duration::from_secs(5))));
/// let off: Optional<TimeoutLayer> = Optional::new(None);
/// assert!(on.is_on() && !off.is_on());
/// ```
#[derive(Clone, Debug)]
pub struct Optional<L>(Option<L>);

impl<L> Optional<L> {
    /// Wraps an optional layer.
    pub fn new(layer: Option<L>) -> Self {
        Self(layer)
    }

    /// Whether the layer is applied.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The layer, when on.
    pub fn get(&self) -> Option<&L> {
        self.0.as_ref()
    }
}

/// A layer whose service can be made switched off: it then hands every request
/// to the inner service and returns the inner response as it is (in the layer's
/// body type), so [`Optional`] keeps one service type whether the layer is on or
/// off.
///
/// tower-ops implements it for the layers that [`Stack`](super::Stack) can switch
/// off: request log, metrics, timeout and rate limit.
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
///
/// use http::{Request, Response};
/// use tower::{ServiceExt, service_fn};
/// use tower_layer::Layer;
/// use tower_ops::stack::{Optional, Switchable};
/// use tower_ops::timeout::TimeoutLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// tokio::time::pause();
/// let slow = service_fn(|_req: Request<()>| async {
///     tokio::time::sleep(Duration::from_secs(60)).await;
///     Ok::<_, Infallible>(Response::new(String::from("late")))
/// });
/// let on = Optional::new(Some(TimeoutLayer::new(Duration::from_secs(1)))).layer(slow.clone());
/// let off = <TimeoutLayer as Switchable<_>>::off(slow);
/// // One type, on and off: they fit in one array.
/// for (service, status) in [on, off].into_iter().zip([504, 200]) {
///     assert_eq!(service.oneshot(Request::new(())).await.unwrap().status(), status);
/// }
/// # }
/// ```
pub trait Switchable<S>: Layer<S> {
    /// The layer's service around `inner`, switched off.
    fn off(inner: S) -> Self::Service;
}

impl<L, S> Layer<S> for Optional<L>
where
    L: Switchable<S>,
{
    type Service = L::Service;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => layer.layer(inner),
            None => L::off(inner),
        }
    }
}
