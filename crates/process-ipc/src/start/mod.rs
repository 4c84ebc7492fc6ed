//! How a child process starts: the two start methods, each whole (its parent half and its
//! child half), and the child's side they share.

pub(crate) mod exit_rule;
pub(crate) mod fork_server;
pub(crate) mod spawn;
