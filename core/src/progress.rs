//! Progress of long computations, for a front end that shows it (the browser's worker). Every
//! step of an attack's loop — one input gradient, or one batch of a gradient-free attack's
//! queries — calls [`tick`]; a front end installs a hook that counts them. Thread-local: a
//! hook sees the steps of its own thread only, and without a hook `tick` costs one lookup.

use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    static HOOK: RefCell<Option<Rc<dyn Fn()>>> = const { RefCell::new(None) };
}

/// Installs `hook` (or removes it, with `None`) for this thread.
pub fn set_hook(hook: Option<Rc<dyn Fn()>>) {
    HOOK.with(|h| *h.borrow_mut() = hook);
}

/// One step done.
pub fn tick() {
    // Cloned out first, so that a hook may itself replace the hook.
    if let Some(hook) = HOOK.with(|h| h.borrow().clone()) {
        hook();
    }
}
