//! `iter_gen`: placeholder until its issue lands.
