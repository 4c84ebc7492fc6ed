//! Generators that are `Send`: they can be made on one thread and walked on another.
//!
//! The same API as [`crate::local`], over genawaiter's `sync` generators, which hand each value
//! over through a mutex: expect each step to cost an order of magnitude more than with the
//! [`crate::local`] flavour (see the crate's benchmarks). Use this flavour only when the generator must
//! cross threads.
//!
//! ```
//! use iter_gen::threadsafe::Generator;
//!
//! let squares = Generator::new(|co| async move {
//!     for i in 1..=4u64 {
//!         co.yield_(i * i).await;
//!     }
//! });
//! let sum = std::thread::spawn(move || squares.sum::<u64>()).join().unwrap();
//! assert_eq!(sum, 1 + 4 + 9 + 16);
//! ```

crate::generator::generator_flavour!(backend: sync, name: "threadsafe", boxed: + Send);
