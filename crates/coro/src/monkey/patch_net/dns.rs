//! Name lookups: `getaddrinfo` on a helper thread.

use super::*;

/// One name lookup's result, freed if the asker is gone (killed) before taking it.
struct Lookup {
    status: c_int,
    result: *mut libc::addrinfo,
}

// SAFETY: the addrinfo list is plain heap memory owned by whoever holds this.
unsafe impl Send for Lookup {}

impl Drop for Lookup {
    fn drop(&mut self) {
        if !self.result.is_null() {
            // SAFETY: a list getaddrinfo returned and nobody took.
            unsafe { libc::freeaddrinfo(self.result) };
        }
    }
}

/// The hook for `getaddrinfo(3)`: inside a coroutine the lookup runs on a helper thread.
///
/// # Safety
/// `getaddrinfo`'s contract.
#[unsafe(no_mangle)]
pub(super) unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    let Some(real) = real_getaddrinfo() else {
        return libc::EAI_SYSTEM;
    };
    if !active() || res.is_null() {
        // SAFETY: forwarded unchanged.
        return unsafe { real(node, service, hints, res) };
    }
    // Copy the inputs: the helper must not read the coroutine's memory, which
    // is gone if the coroutine is killed while it waits.
    // SAFETY: non-null names are NUL-terminated strings by the contract.
    let copy = |p: *const c_char| (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_owned());
    let (node_c, service_c): (Option<CString>, Option<CString>) = (copy(node), copy(service));
    // SAFETY: a non-null hints is readable; only its four selector fields count.
    let hints_c =
        unsafe { hints.as_ref() }.map(|h| (h.ai_flags, h.ai_family, h.ai_socktype, h.ai_protocol));
    let answer: crate::queue::Queue<Lookup> = crate::queue::Queue::new();
    let tx = answer.clone();
    let lookup = move || {
        let hints = hints_c.map(|(flags, family, socktype, protocol)| {
            // SAFETY: an all-zero addrinfo is the documented "no hints" value.
            let mut h: libc::addrinfo = unsafe { std::mem::zeroed() };
            (h.ai_flags, h.ai_family, h.ai_socktype, h.ai_protocol) =
                (flags, family, socktype, protocol);
            h
        });
        let mut result = std::ptr::null_mut();
        let p = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        // SAFETY: owned copies of the inputs, and a local out-pointer.
        let status = unsafe {
            real(
                p(&node_c),
                p(&service_c),
                hints.as_ref().map_or(std::ptr::null(), |h| h as *const _),
                &mut result,
            )
        };
        // `answer` is never shut down: the put always succeeds (and a Lookup that
        // did not arrive would free its list when dropped).
        let _ = tx.put(Lookup { status, result });
    };
    if std::thread::Builder::new()
        .name("coro-getaddrinfo".into())
        .spawn(lookup)
        .is_err()
    {
        // No thread to spare: look it up here, blocking the worker.
        // SAFETY: forwarded unchanged.
        return unsafe { real(node, service, hints, res) };
    }
    guarded(libc::EAI_SYSTEM, || {
        let Ok(mut got) = answer.get() else {
            return libc::EAI_SYSTEM; // never: `answer` is not shut down
        };
        // SAFETY: `res` is writable by the contract; the list is handed over.
        unsafe { *res = std::mem::replace(&mut got.result, std::ptr::null_mut()) };
        got.status
    })
}
