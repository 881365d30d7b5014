//! Fair shares of bounded work between tenants (namespaces), as pure data structures:
//! [`FairQueue`] serves waiting items round-robin over their keys, [`Shares`] counts
//! what each key holds of a bounded capacity, [`Bucket`] spreads work over time. No I/O
//! and no clock of their own: the callers decide what an item is, and pass the time.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Items waiting per key, served one key after another: FIFO within a key, round-robin
/// between keys, so that a key with many items waits its turn like a key with one. Each
/// key may hold at most `per_key` waiting items, and all keys `capacity`.
pub struct FairQueue<T> {
    queues: HashMap<String, VecDeque<T>>,
    /// The keys with waiting items, in the order they are served next.
    turns: VecDeque<String>,
    per_key: usize,
    capacity: usize,
    len: usize,
}

impl<T> FairQueue<T> {
    pub fn new(per_key: usize, capacity: usize) -> Self {
        Self {
            queues: HashMap::new(),
            turns: VecDeque::new(),
            per_key: per_key.max(1),
            capacity: capacity.max(1),
            len: 0,
        }
    }

    /// Queues `item` for `key`; gives it back when the key's share, or the queue, is full.
    pub fn push(&mut self, key: &str, item: T) -> Result<(), T> {
        let waiting = self.queues.get(key).map_or(0, VecDeque::len);
        if waiting >= self.per_key || self.len >= self.capacity {
            return Err(item);
        }
        if waiting == 0 {
            self.turns.push_back(key.to_owned());
        }
        self.queues
            .entry(key.to_owned())
            .or_default()
            .push_back(item);
        self.len += 1;
        Ok(())
    }

    /// The oldest item of the key whose turn it is; that key goes to the back of the
    /// line if it has more.
    pub fn pop(&mut self) -> Option<(String, T)> {
        let key = self.turns.pop_front()?;
        let queue = self.queues.get_mut(&key)?;
        let item = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&key);
        } else {
            self.turns.push_back(key.clone());
        }
        self.len -= 1;
        Some((key, item))
    }

    /// Removes the items of every key for which `keep` is false (abandoned ones).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for queue in self.queues.values_mut() {
            queue.retain(&mut keep);
        }
        self.queues.retain(|_, q| !q.is_empty());
        let queues = &self.queues;
        self.turns.retain(|k| queues.contains_key(k));
        self.len = self.queues.values().map(VecDeque::len).sum();
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What each key holds of a bounded capacity: at most `per_key` for one key and
/// `capacity` in all. Taken before the work is started, given back when it ends.
pub struct Shares {
    held: HashMap<String, usize>,
    per_key: usize,
    capacity: usize,
    total: usize,
}

impl Shares {
    pub fn new(per_key: usize, capacity: usize) -> Self {
        Self {
            held: HashMap::new(),
            per_key: per_key.max(1),
            capacity: capacity.max(1),
            total: 0,
        }
    }

    /// Takes `n` for `key` if both its share and the whole have room; else nothing.
    pub fn take(&mut self, key: &str, n: usize) -> bool {
        let held = self.held.get(key).copied().unwrap_or(0);
        if n == 0 || held + n > self.per_key || self.total + n > self.capacity {
            return n == 0;
        }
        self.held.insert(key.to_owned(), held + n);
        self.total += n;
        true
    }

    /// Gives back `n` that `key` took.
    pub fn give_back(&mut self, key: &str, n: usize) {
        let Some(held) = self.held.get_mut(key) else {
            return;
        };
        let n = n.min(*held);
        *held -= n;
        self.total -= n;
        if *held == 0 {
            self.held.remove(key);
        }
    }

    /// What `key` holds now.
    pub fn held(&self, key: &str) -> usize {
        self.held.get(key).copied().unwrap_or(0)
    }

    /// What all keys hold now.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// A token bucket: at most `capacity` at once, refilled by one every `every`.
#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: u32,
    every: Duration,
    tokens: u32,
    /// When the last token was added (or the bucket made).
    since: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(capacity: u32, every: Duration, now: Instant) -> Self {
        Self {
            capacity: capacity.max(1),
            every: every.max(Duration::from_millis(1)),
            tokens: capacity.max(1),
            since: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since);
        let earned = (elapsed.as_nanos() / self.every.as_nanos()) as u64;
        if earned == 0 {
            return;
        }
        let tokens = (self.tokens as u64 + earned).min(self.capacity as u64) as u32;
        self.tokens = tokens;
        self.since = if tokens == self.capacity {
            now
        } else {
            self.since + self.every * earned as u32
        };
    }

    /// Takes one token if there is one at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Tokens there are at `now`.
    pub fn tokens(&mut self, now: Instant) -> u32 {
        self.refill(now);
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_served_in_turn_however_many_items_each_has() {
        let mut q = FairQueue::new(100, 1000);
        for i in 0..5 {
            q.push("noisy", format!("n{i}")).unwrap();
        }
        q.push("quiet", "q0".to_owned()).unwrap();
        q.push("other", "o0".to_owned()).unwrap();
        let served: Vec<String> = std::iter::from_fn(|| q.pop().map(|(_, i)| i)).collect();
        assert_eq!(served, ["n0", "q0", "o0", "n1", "n2", "n3", "n4"]);
        assert!(q.is_empty());
        // A key that comes back joins the end of the line.
        q.push("noisy", "n5".to_owned()).unwrap();
        q.push("noisy", "n6".to_owned()).unwrap();
        assert_eq!(q.pop().unwrap().1, "n5");
        q.push("quiet", "q1".to_owned()).unwrap();
        assert_eq!(q.pop().unwrap().1, "n6");
        assert_eq!(q.pop().unwrap().1, "q1");
    }

    #[test]
    fn a_key_cannot_take_more_than_its_share_or_the_queue_more_than_its_capacity() {
        let mut q = FairQueue::new(2, 3);
        assert!(q.push("a", 1).is_ok());
        assert!(q.push("a", 2).is_ok());
        assert_eq!(q.push("a", 3), Err(3), "a's share is full");
        assert!(q.push("b", 4).is_ok());
        assert_eq!(q.push("c", 5), Err(5), "the queue is full");
        assert_eq!(q.len(), 3);
        q.retain(|i| *i != 1);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(("a".to_owned(), 2)));
        assert_eq!(q.pop(), Some(("b".to_owned(), 4)));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn shares_are_bounded_per_key_and_in_all_and_given_back() {
        let mut s = Shares::new(3, 4);
        assert!(s.take("a", 2));
        assert!(!s.take("a", 2), "a's share is 3");
        assert!(s.take("a", 1));
        assert!(s.take("b", 1));
        assert!(!s.take("c", 1), "4 in all");
        assert!(s.take("c", 0), "nothing is always there");
        s.give_back("a", 2);
        assert_eq!((s.held("a"), s.total()), (1, 2));
        assert!(s.take("c", 2));
        s.give_back("c", 10);
        assert_eq!((s.held("c"), s.total()), (0, 2));
        s.give_back("nobody", 1);
        assert_eq!(s.total(), 2);
    }

    #[test]
    fn a_bucket_spreads_work_over_time() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3, Duration::from_secs(2), t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0), "empty");
        assert!(!b.take(t0 + Duration::from_secs(1)));
        assert!(b.take(t0 + Duration::from_secs(2)), "one every 2 s");
        assert!(!b.take(t0 + Duration::from_secs(3)));
        // A long pause refills it, never past its capacity.
        assert_eq!(b.tokens(t0 + Duration::from_secs(3600)), 3);
        let later = t0 + Duration::from_secs(3600);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later));
        // Over 120 s: the capacity and one token per refill, and no more.
        let mut b = Bucket::new(300, Duration::from_secs(2), t0);
        let taken = (0..120_000u64)
            .filter(|ms| b.take(t0 + Duration::from_millis(*ms)))
            .count();
        assert_eq!(taken, 300 + 59);
    }
}
