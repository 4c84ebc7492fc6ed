//! What crosses between processes: the bound every transported value meets, the messages
//! between a parent and its child, the transfer context that lets file-descriptor handles ride
//! only in a Process argument, and error messages that survive encoding.
//!
//! Layer: above `sys`, below `start` and everything over it (ARCHITECTURE.md's table).

use std::cell::Cell;

use ipc_channel::ipc::IpcSender;
use serde::de::DeserializeOwned;
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};

/// A value that can travel to another process: serde both ways, owned, sendable.
///
/// Every argument, return value and queue item of this crate meets it; it is implemented for
/// every type that does, so there is nothing to implement by hand.
///
/// ```
/// fn takes_wire<T: process_ipc::Wire>(_: T) {}
/// takes_wire((1u8, String::from("two"), vec![3.0f64]));
/// ```
pub trait Wire: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Wire for T {}

// ---------------------------------------------------------------------------------------------
// Messages between a parent and the child it started (after the spawn handshake).

/// The parent's one message to a new child, on the child's private one-shot socket: the nonce
/// that proves it comes from the parent (sent first over the nameless handshake pair), the
/// arguments, and where to report.
#[derive(Serialize, Deserialize)]
pub(crate) struct ParentMsg<A, R> {
    pub(crate) nonce: [u8; 16],
    pub(crate) args: A,
    pub(crate) results: IpcSender<ChildMsg<R>>,
}

/// The sending side's view of a [`ParentMsg`]: the same encoding, with the arguments borrowed,
/// so that a failed encode still has them to explain why (see [`serialize_error`]).
#[derive(Serialize)]
pub(crate) struct ParentMsgOut<'a, A, R> {
    pub(crate) nonce: [u8; 16],
    pub(crate) args: &'a A,
    pub(crate) results: IpcSender<ChildMsg<R>>,
}

/// True if the two nonces are equal (constant time is moot here, one try per child, but cheap).
pub(crate) fn nonce_matches(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A value sent by reference on a channel typed for `T`: encodes exactly as `T`.
pub(crate) struct ByRef<'a, T>(pub(crate) &'a T);

impl<T: Serialize> Serialize for ByRef<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

// ipc-channel wants both directions on a channel type; this one is only ever sent.
impl<'de, T> Deserialize<'de> for ByRef<'_, T> {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "a by-reference value is only ever sent",
        ))
    }
}

/// What a child reports on its result channel: once, after `Started` for a forked child.
#[derive(Serialize, Deserialize)]
pub(crate) enum ChildMsg<R> {
    /// A forked child has its arguments (it comes first, before the report).
    Started,
    /// The target's return value.
    Returned(R),
    /// The target panicked.
    Panicked { message: String, location: String },
    /// The child could not report (the value failed to serialize, say).
    Failed(String),
}

// ---------------------------------------------------------------------------------------------
// The transfer context: handles that carry file descriptors may only be serialized inside an
// ipc-channel message that this crate sends on purpose (a Process argument).

thread_local! {
    static IPC_TRANSFER: Cell<u32> = const { Cell::new(0) };
    /// The last refusal on this thread, and how many there have been.
    static REFUSAL: Cell<(u64, Option<&'static str>)> = const { Cell::new((0, None)) };
}

/// A serialization error that remembers its reason (postcard drops custom messages); read it
/// back with [`encoding`].
pub(crate) fn refuse<E: serde::ser::Error>(reason: &'static str) -> E {
    REFUSAL.with(|r| r.set((r.get().0.wrapping_add(1), Some(reason))));
    E::custom(reason)
}

/// Runs one encode `f`. On failure, returns its error with the reason a handle recorded with
/// [`refuse`] *during this call*; a reason left over by an earlier, unrelated encode is never
/// reported for this one. The success path costs one thread-local read.
#[inline]
pub(crate) fn encoding<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<T, (E, Option<String>)> {
    let before = REFUSAL.with(|r| r.get().0);
    f().map_err(|e| {
        let (count, reason) = REFUSAL.with(|r| r.get());
        let reason = if count == before { None } else { reason };
        (e, reason.map(str::to_string))
    })
}

/// Runs `f` while queue handles may be serialized (they carry file descriptors, which only an
/// ipc-channel message can transfer).
pub(crate) fn with_ipc_transfer<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IPC_TRANSFER.with(|c| c.set(c.get() - 1));
        }
    }
    IPC_TRANSFER.with(|c| c.set(c.get() + 1));
    let _reset = Reset; // also on unwind, so a panicking serializer leaves no permission behind
    f()
}

/// True inside [`with_ipc_transfer`].
pub(crate) fn ipc_transfer_allowed() -> bool {
    IPC_TRANSFER.with(|c| c.get() > 0)
}

// ---------------------------------------------------------------------------------------------
// Error messages that survive: postcard replaces a `Serialize` impl's own message with a fixed
// "Serde Serialization Error". After a failed encode, [`serialize_error`] walks the value again
// through a serializer that writes nothing and keeps the first custom message.

/// Why `value` fails to serialize, in its own words, or `None` if it does not fail here.
pub(crate) fn serialize_error<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    value.serialize(Probe).err().map(|e| e.0)
}

/// Why `value` failed to encode: its own words if its `Serialize` impl gave any, else
/// `fallback` (the encoder's message).
pub(crate) fn serialize_message<T: Serialize + ?Sized>(
    value: &T,
    fallback: impl std::fmt::Display,
) -> String {
    serialize_error(value).unwrap_or_else(|| fallback.to_string())
}

/// The error of [`Probe`]: the custom message a `Serialize` impl gave.
#[derive(Debug)]
pub(crate) struct ProbeError(String);

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProbeError {}

impl serde::ser::Error for ProbeError {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        ProbeError(msg.to_string())
    }
}

/// A serializer that accepts every shape and writes nothing.
struct Probe;

type ProbeResult = Result<(), ProbeError>;

macro_rules! probe_scalars {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(fn $method(self, _: $ty) -> ProbeResult { Ok(()) })*
    };
}

impl Serializer for Probe {
    type Ok = ();
    type Error = ProbeError;
    type SerializeSeq = Probe;
    type SerializeTuple = Probe;
    type SerializeTupleStruct = Probe;
    type SerializeTupleVariant = Probe;
    type SerializeMap = Probe;
    type SerializeStruct = Probe;
    type SerializeStructVariant = Probe;

    probe_scalars!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_f32: f32,
        serialize_f64: f64, serialize_char: char, serialize_str: &str, serialize_bytes: &[u8],
    );

    fn serialize_none(self) -> ProbeResult {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> ProbeResult {
        v.serialize(Probe)
    }
    fn serialize_unit(self) -> ProbeResult {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> ProbeResult {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> ProbeResult {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> ProbeResult {
        v.serialize(Probe)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> ProbeResult {
        v.serialize(Probe)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Probe, ProbeError> {
        Ok(Probe)
    }
    fn serialize_tuple(self, _: usize) -> Result<Probe, ProbeError> {
        Ok(Probe)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Probe, ProbeError> {
        Ok(Probe)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Probe, ProbeError> {
        Ok(Probe)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Probe, ProbeError> {
        Ok(Probe)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Probe, ProbeError> {
        Ok(Probe)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Probe, ProbeError> {
        Ok(Probe)
    }
}

macro_rules! probe_compound {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for Probe {
            type Ok = ();
            type Error = ProbeError;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> ProbeResult {
                v.serialize(Probe)
            }
            fn end(self) -> ProbeResult {
                Ok(())
            }
        })*
    };
}

probe_compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for Probe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> ProbeResult {
        k.serialize(Probe)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> ProbeResult {
        v.serialize(Probe)
    }
    fn end(self) -> ProbeResult {
        Ok(())
    }
}

impl ser::SerializeStruct for Probe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, v: &T) -> ProbeResult {
        v.serialize(Probe)
    }
    fn end(self) -> ProbeResult {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Probe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, v: &T) -> ProbeResult {
        v.serialize(Probe)
    }
    fn end(self) -> ProbeResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Picky;
    impl Serialize for Picky {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("picky refuses, in its own words"))
        }
    }

    #[test]
    fn the_probe_keeps_a_custom_message_found_deep_inside() {
        let value = (1u8, vec![Some(String::new())], [(2u16, Picky)]);
        assert_eq!(
            serialize_error(&value).as_deref(),
            Some("picky refuses, in its own words")
        );
        assert_eq!(serialize_error(&(1u8, "fine")), None);
    }

    #[test]
    fn a_stale_refusal_is_never_reported_for_a_later_encode() {
        let _: Result<(), ProbeError> = Err(refuse("stale reason"));
        let got = encoding(|| Err::<(), _>("plain failure"));
        assert_eq!(got, Err(("plain failure", None)));
        let got = encoding(|| Err::<(), ProbeError>(refuse("fresh reason")));
        assert_eq!(got.unwrap_err().1.as_deref(), Some("fresh reason"));
    }
}
