//! Macros shared by the layers.

/// The accessors of a service that wraps its inner service `S` in a field named
/// `inner`: `get_ref`, `get_mut` and `into_inner`. Used inside `impl<S> X<S>`.
macro_rules! define_inner_service_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
