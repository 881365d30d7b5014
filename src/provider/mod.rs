//! Providers: what realizes fleet objects and reports on them under the provider contract
//! (docs/provider-contract.md). [`conformance`] checks a running provider against that
//! contract; [`lab`] is a provider that realizes a fleet on one Linux machine, for the
//! demo and the tests.
//!
//! A provider names the API (the fleet kinds and their status types) and the pure core;
//! never the controller: fleetgate and its providers meet only through the API server.

pub mod conformance;
pub mod lab;
