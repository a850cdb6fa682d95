//! The mark a limit in shadow mode leaves on a response it would have refused.

use std::sync::Arc;

use super::Code;

/// A limit in shadow mode would have refused this request; it was served as usual.
///
/// The limiting layer inserts it into the response extensions in place of the
/// [`Problem`](super::Problem) it would have answered with, so that the request log
/// writes `shadow_rejected_by` (and `shadow_policy`) on the line and the metrics
/// layer counts `http_server_shadow_rejections_total{rejected_by,code}`, while
/// the client sees the handler's response. Rolling a new limit out in shadow
/// mode first shows who it would refuse before anyone is refused.
///
/// ```
/// use tower_ops::error::{Code, ShadowRejection};
///
/// let mark = ShadowRejection::new("rate_limit", Code::RATE_LIMITED).policy("user");
/// assert_eq!(mark.rejected_by(), "rate_limit");
/// assert_eq!(mark.code(), &Code::RATE_LIMITED);
/// assert_eq!(mark.policy_name(), Some("user"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowRejection {
    rejected_by: &'static str,
    code: Code,
    policy: Option<Arc<str>>,
}

impl ShadowRejection {
    /// `rejected_by` names the layer (as [`Problem::rejected_by`](super::Problem::rejected_by)
    /// does), `code` the answer it would have given.
    pub fn new(rejected_by: &'static str, code: Code) -> Self {
        Self {
            rejected_by,
            code,
            policy: None,
        }
    }

    /// The name of the policy that would have refused the request.
    pub fn policy(mut self, name: impl Into<Arc<str>>) -> Self {
        self.policy = Some(name.into());
        self
    }

    /// The layer that would have refused the request.
    pub fn rejected_by(&self) -> &'static str {
        self.rejected_by
    }

    /// The code it would have answered with.
    pub fn code(&self) -> &Code {
        &self.code
    }

    /// The policy that would have refused the request, when the layer has several.
    pub fn policy_name(&self) -> Option<&str> {
        self.policy.as_deref()
    }
}
