//! A set of TCP ports that stays small for small scans and bounded (8 KiB) for full ones.

/// Beyond this many ports the sorted vector (2 bytes a port) becomes a 65,536-bit bitmap.
const SPARSE_LIMIT: usize = 4096;

/// Distinct ports, iterated in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSet {
    /// Sorted, deduplicated ports.
    Sparse(Vec<u16>),
    /// One bit per port, and the number of bits set.
    Dense(Box<[u64; 1024]>, usize),
}

impl Default for PortSet {
    fn default() -> Self {
        Self::Sparse(Vec::new())
    }
}

impl PortSet {
    /// Adds a port; returns whether it was new.
    pub fn insert(&mut self, port: u16) -> bool {
        match self {
            Self::Sparse(ports) => match ports.binary_search(&port) {
                Ok(_) => false,
                Err(at) => {
                    ports.insert(at, port);
                    if ports.len() > SPARSE_LIMIT {
                        let mut bits = Box::new([0u64; 1024]);
                        for p in ports.iter() {
                            bits[usize::from(*p >> 6)] |= 1 << (p & 63);
                        }
                        *self = Self::Dense(bits, ports.len());
                    }
                    true
                }
            },
            Self::Dense(bits, len) => {
                let word = &mut bits[usize::from(port >> 6)];
                let bit = 1u64 << (port & 63);
                if *word & bit != 0 {
                    return false;
                }
                *word |= bit;
                *len += 1;
                true
            }
        }
    }

    /// Adds the ports `base + b` for each set bit `b` of `word` (`base` a multiple of 64);
    /// returns how many were new.
    pub fn insert_word(&mut self, base: u16, word: u64) -> u32 {
        if let Self::Dense(bits, len) = self {
            let slot = &mut bits[usize::from(base >> 6)];
            let new = word & !*slot;
            *slot |= word;
            *len += new.count_ones() as usize;
            return new.count_ones();
        }
        let mut new = 0;
        let mut w = word;
        while w != 0 {
            // bit < 64 and base is a multiple of 64, so the sum fits in 16 bits.
            let bit = w.trailing_zeros() as u16;
            w &= w - 1;
            if self.insert(base | bit) {
                new += 1;
            }
        }
        new
    }

    /// Number of distinct ports.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::Sparse(ports) => ports.len(),
            Self::Dense(_, len) => *len,
        }
    }

    /// Heap memory held by the set, in bytes.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        match self {
            Self::Sparse(ports) => ports.capacity() * size_of::<u16>(),
            Self::Dense(..) => size_of::<[u64; 1024]>(),
        }
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ports in ascending order.
    #[must_use]
    pub fn to_vec(&self) -> Vec<u16> {
        match self {
            Self::Sparse(ports) => ports.clone(),
            Self::Dense(bits, len) => {
                let mut out = Vec::with_capacity(*len);
                for (i, word) in bits.iter().enumerate() {
                    let mut w = *word;
                    while w != 0 {
                        let bit = w.trailing_zeros();
                        // i < 1024 and bit < 64, so the port fits in 16 bits.
                        out.push(u16::try_from(i * 64).unwrap_or(u16::MAX) | bit as u16);
                        w &= w - 1;
                    }
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PortSet;

    #[test]
    fn sparse_set_sorts_and_deduplicates() {
        let mut set = PortSet::default();
        for p in [443, 22, 80, 22, 1] {
            set.insert(p);
        }
        assert_eq!(set.to_vec(), vec![1, 22, 80, 443]);
        assert!(!set.insert(80));
    }

    #[test]
    fn words_insert_their_ports_sparse_and_dense() {
        let mut set = PortSet::default();
        set.insert(65);
        assert_eq!(set.insert_word(64, 0b111), 2);
        assert_eq!(set.to_vec(), vec![64, 65, 66]);
        for base in (0..=u16::MAX - 63).step_by(64) {
            set.insert_word(base, u64::MAX);
        }
        assert!(matches!(set, PortSet::Dense(..)));
        assert_eq!(set.len(), 65_536);
        assert_eq!(set.insert_word(128, 1), 0);
    }

    #[test]
    fn full_range_goes_dense_and_round_trips() {
        let mut set = PortSet::default();
        for p in (0..=u16::MAX).rev() {
            assert!(set.insert(p));
        }
        assert!(matches!(set, PortSet::Dense(..)));
        assert_eq!(set.len(), 65_536);
        let all = set.to_vec();
        assert_eq!(all.len(), 65_536);
        assert!(all.windows(2).all(|w| w[0] + 1 == w[1]));
        assert!(!set.insert(65_535));
    }
}
