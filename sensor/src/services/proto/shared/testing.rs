//! Test helpers the protocols' hostile-input tests share.

/// `len` deterministic pseudo-random bytes (xorshift64 from `seed`), so a failure reproduces.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}
