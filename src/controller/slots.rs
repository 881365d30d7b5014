//! Bounded work shared fairly: at most `per_key` at once for one key (a namespace, a
//! tenant) and `total` over all of them. A key's own slot is taken before the shared
//! one, so each key has at most `per_key` waiters for the shared slots, and tokio's
//! semaphores are FIFO: however much one key asks for, another key waits for at most
//! `per_key` turns of each key ahead of it, never for all of that key's work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Keys remembered before the idle ones are dropped.
const PRUNE_AT: usize = 1_024;

pub struct Slots {
    total: Arc<Semaphore>,
    per_key: usize,
    keys: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A key's slot and a shared one, held together; dropping it frees both.
pub struct Permit {
    _own: OwnedSemaphorePermit,
    _shared: OwnedSemaphorePermit,
}

impl Slots {
    /// `total` slots over all keys, `per_key` of them for one key (both at least 1).
    pub fn new(total: usize, per_key: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_key: per_key.max(1),
            keys: Mutex::default(),
        }
    }

    fn of(&self, key: &str) -> Arc<Semaphore> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= PRUNE_AT {
            // A semaphore nobody holds or waits for is only a count of free slots.
            keys.retain(|_, s| Arc::strong_count(s) > 1);
        }
        keys.entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_key)))
            .clone()
    }

    /// Waits for a slot of `key`, then for a shared one.
    pub async fn acquire(&self, key: &str) -> Permit {
        let own = self.of(key);
        // The semaphores are never closed: they live as long as `self`.
        let own = own.acquire_owned().await.expect("slots are never closed");
        let shared = self
            .total
            .clone()
            .acquire_owned()
            .await
            .expect("slots are never closed");
        Permit {
            _own: own,
            _shared: shared,
        }
    }

    /// Shared slots free now.
    pub fn available(&self) -> usize {
        self.total.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_key_never_takes_every_slot_and_another_key_goes_next() {
        let slots = Arc::new(Slots::new(2, 1));
        let a1 = slots.acquire("a").await;
        // `a` asks for more: its own slot is taken, so it waits there, not for a shared one.
        let waiting_a = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire("a").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(slots.available(), 1, "a holds one shared slot, not two");
        let b = tokio::time::timeout(Duration::from_secs(1), slots.acquire("b"))
            .await
            .expect("b is served at once");
        assert_eq!(slots.available(), 0);
        drop(a1);
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), waiting_a)
            .await
            .expect("a's second request is served once its first is done")
            .unwrap();
    }

    #[tokio::test]
    async fn idle_keys_are_forgotten() {
        let slots = Slots::new(4, 2);
        for i in 0..PRUNE_AT + 10 {
            drop(slots.acquire(&format!("k{i}")).await);
        }
        assert!(slots.keys.lock().unwrap().len() <= PRUNE_AT);
    }
}
