//! Key to slot: CRC16 (XMODEM) of the key, or of its `{hash tag}`, modulo 16384.

/// Number of slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The slot of a key.
///
/// When the key holds a `{...}` with at least one byte between the first `{` and the first `}`
/// after it, only those bytes are hashed, so that related keys can share a slot.
///
/// ```
/// use redis_cluster::slot;
///
/// assert_eq!(slot(b"foo"), 12182);
/// assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
/// ```
pub fn slot(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_part(key)) % SLOTS
}

/// The part of the key that is hashed.
fn hash_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_slots_and_hash_tag_rules() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b""), 0);
        assert_eq!(slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(hash_part(b"{user1000}.following"), b"user1000");
        assert_eq!(
            hash_part(b"foo{}{bar}"),
            b"foo{}{bar}",
            "empty tag: whole key"
        );
        assert_eq!(hash_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_part(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_part(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_part(b"}{x}"), b"x");
    }
}
