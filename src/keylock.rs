//! Per-key async locks: two builds that reach the same cache key run the
//! step once, and two pulls of the same blob download it once; the second
//! waits for the first and then finds the result. Entries are dropped when
//! nobody holds or waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// A set of named locks.
#[derive(Default)]
pub struct KeyLocks {
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl KeyLocks {
    /// Waits for and takes the lock named `key`.
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.locks.lock().expect("key locks");
            map.retain(|_, w| w.strong_count() > 0);
            match map.get(key).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(AsyncMutex::new(()));
                    map.insert(key.to_string(), Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_key_waits_other_keys_do_not() {
        let locks = Arc::new(KeyLocks::default());
        let held = locks.lock("a").await;
        let other = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("b")).await;
        assert!(other.is_ok(), "another key is free");
        let same = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("a")).await;
        assert!(same.is_err(), "the same key waits");
        drop(held);
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("a")).await.is_ok());
    }
}
