//! The chaos suite (`make chaos`): faults against the real control plane and git server,
//! all `#[ignore]`d so that only `cargo test --test chaos -- --ignored` runs them. A binary
//! of its own because two of its tests stop kube-apiserver or etcd: no other test may
//! share the control plane then.

#[path = "../support/mod.rs"]
mod support;

mod chaos;
mod chaos_apiserver;
mod chaos_etcd;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Who may use the control plane now: the tests that need it up share it, a test that
/// stops part of it has it alone (the others would see the outage).
static CONTROL_PLANE: RwLock<()> = RwLock::const_new(());

/// Held by a test that needs the control plane up throughout; others like it run beside.
pub async fn control_plane_up() -> RwLockReadGuard<'static, ()> {
    CONTROL_PLANE.read().await
}

/// Held by a test that stops kube-apiserver or etcd: it waits for the others to finish
/// and none starts until it is done.
pub async fn control_plane_alone() -> RwLockWriteGuard<'static, ()> {
    CONTROL_PLANE.write().await
}
