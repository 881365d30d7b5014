//! Bounds on git work: how long libgit2 may wait on a socket, how much a fetch may
//! download and how large the fleet file may be. A hostile or broken remote meets these
//! limits as a clear error instead of holding a thread or memory without end.

use std::time::Duration;

use super::SourceError;

/// Size limits of one repository's git work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes one fetch may receive (the pack as sent); the fetch is aborted past it.
    pub max_fetch_bytes: u64,
    /// Size of the fleet file (and of a symbolic link on its way), read from the
    /// object's header before the blob is inflated.
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_fetch_bytes: 128 * 1024 * 1024,
            max_file_bytes: crate::fleet::yaml::MAX_FILE_BYTES as u64,
        }
    }
}

/// Sets libgit2's process-wide socket timeouts: `connect` for establishing a
/// connection, `io` for each read or write on it. A server that accepts and never
/// answers then fails the call after `io`, and frees its thread, instead of holding it
/// for as long as the socket lives.
///
/// Call once at start-up, before any thread does git work: libgit2 reads these globals
/// without synchronization.
pub fn set_network_timeouts(connect: Duration, io: Duration) -> Result<(), SourceError> {
    let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1);
    // SAFETY: libgit2's globals are written before any thread that reads them starts
    // (the controller calls this before building its runtime).
    let result = unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(millis(connect))
            .and_then(|()| git2::opts::set_server_timeout_in_milliseconds(millis(io)))
    };
    result.map_err(|e| SourceError::Cache {
        path: "libgit2 options".into(),
        message: e.message().to_owned(),
    })
}
