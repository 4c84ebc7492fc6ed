//! `threads_sync`: placeholder until its issue lands.
