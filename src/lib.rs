//! fleetgate: manage a fleet of machines from git, with a person approving every plan.
//!
//! [`fleet`] is the pure core (parse, validate, resolve, plan, render); [`cli`] holds
//! the command implementations the thin binaries call; [`source`] fetches fleet files
//! from git.

pub mod api;
pub mod attest;
pub mod cli;
pub mod controller;
pub use fleetgate_fleet as fleet;
pub mod provider;
pub mod source;
