//! What the error layer and the logging set-up both need to know about panics:
//! the text of a payload, and whether the panic hook already logs each panic
//! (then the error layer does not log it a second time).

use std::any::Any;
use std::cell::RefCell;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};

static HOOK_INSTALLED: AtomicBool = AtomicBool::new(false);

/// A source location as the error reports carry it: file, line, column.
pub(crate) type Spot = (Box<str>, u32, u32);

thread_local! {
    /// The last panic a tower-ops hook saw on this thread: its message and where
    /// it happened. `catch_unwind` hands over only the payload, so the error
    /// layer looks the location up here, on the thread that unwound.
    static LAST: RefCell<Option<(String, Spot)>> = const { RefCell::new(None) };
}

/// Notes where the panic with `message` happened (called from panic hooks).
pub(crate) fn record(message: &str, location: Option<&Location<'_>>) {
    let Some(location) = location else {
        return;
    };
    let spot = (
        Box::from(location.file()),
        location.line(),
        location.column(),
    );
    // Unavailable while the thread's locals are torn down, or borrowed by a
    // panic inside `take_location` itself: the location is then unknown.
    let _ = LAST.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some((message.to_owned(), spot));
        }
    });
}

/// The location noted for the panic just caught on this thread, if its message
/// is `message` (a note left by an earlier panic caught elsewhere does not
/// count). Clears the note either way.
pub(crate) fn take_location(message: &str) -> Option<Spot> {
    LAST.try_with(|last| {
        let (noted, spot) = last.try_borrow_mut().ok()?.take()?;
        (noted == message).then_some(spot)
    })
    .ok()
    .flatten()
}

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
    fn locations_match_their_panic_only() {
        let here = Location::caller();
        record("boom", Some(here));
        assert_eq!(take_location("other"), None, "another panic's note");
        assert_eq!(take_location("boom"), None, "cleared by the first look");
        record("boom", Some(here));
        let (file, line, _) = take_location("boom").unwrap();
        assert_eq!((&*file, line), (here.file(), here.line()));
        record("no location", None);
        assert_eq!(take_location("no location"), None);
    }

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
