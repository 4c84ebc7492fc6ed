//! `coro`: placeholder until its issue lands.
