//! The panic hook installed by the logging set-up (being written).

/// Installs the hook; later calls replace the flush callback.
pub(crate) fn install(flush: impl Fn() + Send + Sync + 'static) {
    let _ = flush;
}
