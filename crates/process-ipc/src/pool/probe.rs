//! Serde messages that survive encoding: postcard (under ipc-channel, and for pool task data)
//! replaces a `Serialize` impl's own error message with a fixed "Serde Serialization Error".
//! After an encode failed, [`serialize_message`] serializes the value once more into a sink
//! that keeps the first custom message.
//!
//! (The `core` branch adds the same service to `wire`; at merge this file gives way to it.)

use std::fmt;

use serde::Serialize;
use serde::ser::{self, Serializer};

/// Why `value` does not serialize, in its own words; `fallback` if it serializes here.
pub(crate) fn serialize_message<T: Serialize + ?Sized>(
    value: &T,
    fallback: impl fmt::Display,
) -> String {
    match value.serialize(Sink) {
        Err(Kept(message)) => message,
        Ok(()) => fallback.to_string(),
    }
}

/// The first custom message a `Serialize` impl gave.
#[derive(Debug)]
struct Kept(String);

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Kept {}

impl ser::Error for Kept {
    fn custom<M: fmt::Display>(message: M) -> Self {
        Kept(message.to_string())
    }
}

/// Takes every shape serde has and writes nothing.
struct Sink;

type Done = Result<(), Kept>;

macro_rules! discard {
    ($($name:ident($ty:ty)),* $(,)?) => {
        $(fn $name(self, _: $ty) -> Done { Ok(()) })*
    };
}

impl Serializer for Sink {
    type Ok = ();
    type Error = Kept;
    type SerializeSeq = Sink;
    type SerializeTuple = Sink;
    type SerializeTupleStruct = Sink;
    type SerializeTupleVariant = Sink;
    type SerializeMap = Sink;
    type SerializeStruct = Sink;
    type SerializeStructVariant = Sink;

    discard!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Done {
        Ok(())
    }
    fn serialize_some<V: Serialize + ?Sized>(self, value: &V) -> Done {
        value.serialize(Sink)
    }
    fn serialize_unit(self) -> Done {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Done {
        Ok(())
    }
    fn serialize_newtype_struct<V: Serialize + ?Sized>(self, _: &'static str, value: &V) -> Done {
        value.serialize(Sink)
    }
    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &V,
    ) -> Done {
        value.serialize(Sink)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Sink, Kept> {
        Ok(Sink)
    }
    fn serialize_tuple(self, _: usize) -> Result<Sink, Kept> {
        Ok(Sink)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Sink, Kept> {
        Ok(Sink)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Sink, Kept> {
        Ok(Sink)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Sink, Kept> {
        Ok(Sink)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Sink, Kept> {
        Ok(Sink)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Sink, Kept> {
        Ok(Sink)
    }
}

macro_rules! compound {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for Sink {
            type Ok = ();
            type Error = Kept;
            fn $method<V: Serialize + ?Sized>(&mut self, value: &V) -> Done {
                value.serialize(Sink)
            }
            fn end(self) -> Done {
                Ok(())
            }
        })*
    };
}

compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for Sink {
    type Ok = ();
    type Error = Kept;
    fn serialize_key<V: Serialize + ?Sized>(&mut self, key: &V) -> Done {
        key.serialize(Sink)
    }
    fn serialize_value<V: Serialize + ?Sized>(&mut self, value: &V) -> Done {
        value.serialize(Sink)
    }
    fn end(self) -> Done {
        Ok(())
    }
}

macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(impl ser::$trait for Sink {
            type Ok = ();
            type Error = Kept;
            fn serialize_field<V: Serialize + ?Sized>(&mut self, _: &'static str, value: &V) -> Done {
                value.serialize(Sink)
            }
            fn end(self) -> Done {
                Ok(())
            }
        })*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;

    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("not today"))
        }
    }

    #[test]
    fn the_impls_own_message_is_kept_wherever_it_sits() {
        assert_eq!(serialize_message(&Refuses, "fallback"), "not today");
        let nested = (1u8, vec![Some(Refuses)], "x");
        assert_eq!(serialize_message(&nested, "fallback"), "not today");
        assert_eq!(serialize_message(&(1u8, "fine"), "fallback"), "fallback");
    }
}
