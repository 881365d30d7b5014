//! The tests that need no test control plane, one binary: the code's shape, the
//! command-line tools, the plan and its properties, the schema, the image, the git source
//! against the test git server, the fuzz regressions and `make demo` (which starts a
//! control plane of its own). `cargo test --test offline` runs them; one area with
//! `cargo test --test offline plan::`.

#[path = "../support/mod.rs"]
mod support;

mod architecture;
mod cli;
mod demo;
mod demo_environments;
mod fuzz_regressions;
mod git_limits;
mod git_redirect;
mod git_source;
mod image;
mod plan;
mod plan_properties;
mod schema;

/// libgit2's I/O timeout for every test here that does git work in this process.
pub const GIT_IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Sets libgit2's timeouts, which are process-wide and read without synchronization:
/// every test here that does git work in this process calls this first, so that they are
/// written once, before any git work, and are the same for all (git_limits times them).
pub fn git_timeouts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        fleetgate::source::set_network_timeouts(std::time::Duration::from_secs(2), GIT_IO_TIMEOUT)
            .unwrap()
    });
}
