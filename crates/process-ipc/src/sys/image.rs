//! This executable's image: code addresses as offsets from a fixed anchor function, the same in
//! every process running the same binary whatever ASLR did (a child's entry, a pool task, a
//! barrier action travel so); and the text of a panic's payload.

/// The fixed point every entry offset is measured from.
#[inline(never)]
fn anchor() -> i32 {
    std::hint::black_box(7)
}

/// Offset of any code address from [`anchor`] in this executable.
pub(crate) fn offset_of(address: usize) -> isize {
    address.wrapping_sub(anchor as fn() -> i32 as usize) as isize
}

/// The code address at `offset` from [`anchor`] in this executable.
pub(crate) fn address_at(offset: isize) -> usize {
    (anchor as fn() -> i32 as usize).wrapping_add(offset as usize)
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".into()
    }
}
