//! Progress of long calls for the JS layer: `setProgressHook(f)` installs `f(done, total)`,
//! called after every step of an attack, a diagnosis, a suite or a probe (see
//! `rampart_core::progress`); each long call restarts the count and says its planned total
//! when it knows one. The worker (www/rampart-worker.js) forwards the calls to the page.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

thread_local! {
    static DONE: Cell<u32> = const { Cell::new(0) };
    static TOTAL: Cell<Option<u32>> = const { Cell::new(None) };
}

/// A long call starts: the count restarts, out of `total` steps when known.
pub(crate) fn begin(total: Option<usize>) {
    DONE.with(|d| d.set(0));
    TOTAL.with(|t| t.set(total.map(|n| n.min(u32::MAX as usize) as u32)));
}

/// Installs `hook(done, total)` (`total` is `undefined` when unknown), or removes it.
#[wasm_bindgen(js_name = setProgressHook)]
pub fn set_progress_hook(hook: Option<js_sys::Function>) {
    rampart_core::progress::set_hook(hook.map(|f| {
        Rc::new(move || {
            let done = DONE.with(|d| {
                d.set(d.get().saturating_add(1));
                d.get()
            });
            let total = TOTAL
                .with(Cell::get)
                .map_or(JsValue::UNDEFINED, JsValue::from);
            // A hook that throws must not abort the computation it watches.
            let _ = f.call2(&JsValue::NULL, &done.into(), &total);
        }) as Rc<dyn Fn()>
    }));
}

/// Panics on purpose. The JS layer (www/rampart.js) must turn the trap into a rejected call
/// and a fresh module; its tests call this to prove it does.
#[wasm_bindgen(js_name = __panicForTesting)]
pub fn panic_for_testing() {
    panic!("__panicForTesting: a deliberate panic");
}
