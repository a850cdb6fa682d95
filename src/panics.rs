//! What the error layer and the logging set-up both need to know about panics:
//! the text of a payload, and whether the panic hook already logs each panic
//! (then the error layer does not log it a second time).

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};

static HOOK_INSTALLED: AtomicBool = AtomicBool::new(false);

/// The text of a panic payload: the `&str` or `String` given to `panic!`.
pub(crate) fn message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "a panic payload that is not a string"
    }
}

/// Records that the logging hook is in place; true the first time.
pub(crate) fn mark_hook_installed() -> bool {
    !HOOK_INSTALLED.swap(true, Ordering::AcqRel)
}

/// Whether the logging hook makes every panic its event.
pub(crate) fn hook_installed() -> bool {
    HOOK_INSTALLED.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        let s: Box<dyn Any + Send> = Box::new("static");
        assert_eq!(message(&*s), "static");
        let s: Box<dyn Any + Send> = Box::new(String::from("owned"));
        assert_eq!(message(&*s), "owned");
        let s: Box<dyn Any + Send> = Box::new(42_u8);
        assert!(message(&*s).contains("not a string"));
    }
}
