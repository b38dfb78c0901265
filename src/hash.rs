//! Stable hashing for placement (partitions on shards, groups and transactional ids on the
//! partitions of their internal logs): FNV-1a, the same across runs, builds and machines,
//! unlike a randomly seeded hasher.

/// The 64-bit FNV-1a hash of `s`.
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
