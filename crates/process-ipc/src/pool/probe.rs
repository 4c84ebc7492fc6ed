//! The pool's and the manager's name for the encoder-message probe, which lives in `wire`.

pub(crate) use crate::wire::serialize_message;
