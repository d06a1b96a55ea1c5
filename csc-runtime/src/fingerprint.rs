//! FNV-1a, 64 bits: a quick, stable fingerprint (not a security hash) of a document
//! (the solution's HASH), a session's name (the tag of every name a driver adds) or
//! test data.

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
