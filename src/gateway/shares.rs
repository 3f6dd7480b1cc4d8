//! Places under two caps, in all and per key: what open connections (per client address) and
//! open streams (per caller) are counted with. A [`Share`] is one place; dropping it gives the
//! place back.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Places taken, in all and per key, against `max` and `max_per_key`.
#[derive(Debug)]
pub struct Shares<K> {
    max: usize,
    max_per_key: usize,
    open: AtomicUsize,
    per_key: Mutex<HashMap<K, usize>>,
    refused: AtomicU64,
}

/// Which cap a refused place met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The cap in all.
    All,
    /// The cap of this key.
    Key,
}

impl<K: Hash + Eq + Clone> Shares<K> {
    /// At most `max` places in all and `max_per_key` per key (0: no cap).
    pub fn new(max: usize, max_per_key: usize) -> Arc<Self> {
        let cap = |n: usize| if n == 0 { usize::MAX } else { n };
        Arc::new(Self {
            max: cap(max),
            max_per_key: cap(max_per_key),
            open: AtomicUsize::new(0),
            per_key: Mutex::default(),
            refused: AtomicU64::new(0),
        })
    }

    /// A place for `key`, unless a cap is reached (atomically: two arriving together cannot
    /// both take the last place). A refusal is counted in [`Shares::refused`].
    pub fn take(self: &Arc<Self>, key: K) -> Result<Share<K>, Full> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        if taken.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Full::All);
        }
        if self.max_per_key != usize::MAX {
            let mut per_key = self.lock();
            let held = per_key.entry(key.clone()).or_insert(0);
            if *held >= self.max_per_key {
                drop(per_key);
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Full::Key);
            }
            *held += 1;
        }
        Ok(Share {
            shares: Arc::clone(self),
            key,
        })
    }

    /// Places taken now.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Places refused since start, over either cap.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, usize>> {
        // Plain counts, consistent after any panic: poisoning carries no meaning here.
        self.per_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One place; dropping it gives it back.
#[derive(Debug)]
pub struct Share<K: Hash + Eq + Clone> {
    shares: Arc<Shares<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for Share<K> {
    fn drop(&mut self) {
        let shares = &self.shares;
        if shares.max_per_key != usize::MAX {
            let mut per_key = shares.lock();
            if let Some(held) = per_key.get_mut(&self.key) {
                *held -= 1;
                if *held == 0 {
                    per_key.remove(&self.key);
                }
            }
        }
        shares.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_count_in_all_and_per_key_and_give_places_back() {
        let shares = Shares::new(3, 2);
        let a1 = shares.take("a").unwrap();
        let _a2 = shares.take("a").unwrap();
        assert_eq!(shares.take("a").unwrap_err(), Full::Key);
        let _b1 = shares.take("b").unwrap();
        assert_eq!(shares.take("b").unwrap_err(), Full::All);
        assert_eq!((shares.count(), shares.refused()), (3, 2));
        drop(a1);
        let _a3 = shares.take("a").unwrap();
        assert_eq!(shares.count(), 3);
    }

    #[test]
    fn zero_means_no_cap() {
        let shares = Shares::new(0, 0);
        let places: Vec<_> = (0..100).map(|_| shares.take("a").unwrap()).collect();
        assert_eq!(shares.count(), places.len());
    }
}
