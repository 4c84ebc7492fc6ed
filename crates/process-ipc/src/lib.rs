//! `process_ipc`: placeholder until its issue lands.
