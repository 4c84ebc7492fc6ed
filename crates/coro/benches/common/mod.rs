//! What the coro benches share.

/// `CORO_BENCH_POOL=n` sets coro's stack pool (`Config::with_stack_pool`) before
/// the runtime starts. coro configures may's scheduler, which raw may shares in
/// this process, so raw may runs with the same pool: `CORO_BENCH_POOL=1000`
/// is may's own default (1000 stacks mapped at start, 1000 kept).
pub(crate) fn configure_pool() {
    if let Some(n) = std::env::var("CORO_BENCH_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        coro::configure(coro::Config::new().with_stack_pool(n)).unwrap();
    }
    eprintln!("stack pool: {}", coro::runtime_config().stack_pool());
}
