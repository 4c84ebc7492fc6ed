//! Generators on one thread (the default flavour): the fastest, and not `Send`.
//!
//! [`crate::Generator`] and [`crate::Yielder`] are this module's types. A generator from here
//! stays on the thread that made it; the compiler says so:
//!
//! ```compile_fail,E0277
//! use iter_gen::local::Generator;
//!
//! let numbers = Generator::new(|co| async move {
//!     co.yield_(1).await;
//! });
//! std::thread::spawn(move || numbers.sum::<i32>()); // error: `Rc<..>` cannot be sent between threads
//! ```
//!
//! Use [`crate::threadsafe`] to move a generator to another thread.

crate::generator::generator_flavour!(backend: rc, name: "local", boxed:);
