//! The allow-list a live libpcap capture applies, replaceable while the capture runs (a
//! configuration reload), as the XDP path rewrites its kernel map in place.
//!
//! The agent writes a new list with [`Allowlist::set`]; the capture thread holds a [`Reader`]
//! that checks one version counter per frame (a single atomic load) and takes the new list only
//! when the counter moved. Every frame the thread reads after `set` has returned is classified
//! with the new list, so a probe that arrives after the reload was logged never meets the old
//! one.

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicU64, Ordering},
};

use crate::net::Cidr;

/// A shared, replaceable allow-list.
#[derive(Debug, Default)]
pub struct Allowlist {
    /// Bumped after every replacement.
    version: AtomicU64,
    /// The list in force.
    list: Mutex<Arc<Vec<Cidr>>>,
}

impl Allowlist {
    /// An allow-list holding `list`.
    #[must_use]
    pub fn new(list: Vec<Cidr>) -> Arc<Self> {
        Arc::new(Self {
            version: AtomicU64::new(0),
            list: Mutex::new(Arc::new(list)),
        })
    }

    /// Replaces the list; readers take it at their next frame.
    pub fn set(&self, list: &[Cidr]) {
        // A poisoned lock still holds a whole list: the writer only swaps the pointer.
        *self.list.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(list.to_vec());
        self.version.fetch_add(1, Ordering::Release);
    }

    /// A reader for one capture thread, holding the list in force now.
    #[must_use]
    pub fn reader(self: &Arc<Self>) -> Reader {
        let version = self.version.load(Ordering::Acquire);
        let current = Arc::clone(&self.list.lock().unwrap_or_else(PoisonError::into_inner));
        Reader {
            shared: Arc::clone(self),
            version,
            current,
        }
    }
}

/// One thread's view of an [`Allowlist`].
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Allowlist>,
    version: u64,
    current: Arc<Vec<Cidr>>,
}

impl Reader {
    /// The list in force: the one this reader holds, or the newer one if it was replaced.
    pub fn current(&mut self) -> &[Cidr] {
        let version = self.shared.version.load(Ordering::Acquire);
        if version != self.version {
            self.current = Arc::clone(
                &self
                    .shared
                    .list
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            self.version = version;
        }
        &self.current
    }
}

#[cfg(test)]
mod tests {
    use super::Allowlist;
    use crate::net::Cidr;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn a_reader_takes_a_replaced_list_at_its_next_read_and_keeps_it() {
        let shared = Allowlist::new(cidrs(&["192.0.2.0/24"]));
        let mut reader = shared.reader();
        assert_eq!(reader.current(), cidrs(&["192.0.2.0/24"]).as_slice());
        shared.set(&cidrs(&["198.51.100.7/32", "2001:db8::/32"]));
        assert_eq!(
            reader.current(),
            cidrs(&["198.51.100.7/32", "2001:db8::/32"]).as_slice()
        );
        // Emptied: nothing is allow-listed any more, not the union of old and new.
        shared.set(&[]);
        assert!(reader.current().is_empty());
        assert!(reader.current().is_empty());
        // A reader made later starts from the list in force.
        shared.set(&cidrs(&["203.0.113.0/24"]));
        assert_eq!(
            shared.reader().current(),
            cidrs(&["203.0.113.0/24"]).as_slice()
        );
    }
}
