//! Server-generated event ids: `evt_` followed by a ULID.

/// Crockford base32 alphabet (no I, L, O, U), as ULID uses.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Largest ULID timestamp (48 bits of milliseconds, year 10889).
const MAX_ULID_MILLIS: u64 = (1 << 48) - 1;

/// Builds `evt_` + a 26-character ULID (Crockford base32, uppercase) from a Unix time in
/// milliseconds and 80 random bits. Ids sort by time as strings. Times beyond the 48-bit
/// ULID range are clamped to its maximum.
pub fn new_event_id(unix_ms: u64, random: [u8; 10]) -> String {
    let millis = unix_ms.min(MAX_ULID_MILLIS);
    let mut value = u128::from(millis) << 80;
    for (position, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (8 * (9 - position));
    }
    let mut id = String::with_capacity(30);
    id.push_str("evt_");
    // 26 characters × 5 bits = 130 bits: the first character carries the top 3 bits.
    for position in (0..26).rev() {
        let digit = (value >> (5 * position)) & 0x1f;
        id.push(char::from(CROCKFORD[digit as usize]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::is_valid_event_id;

    #[test]
    fn matches_the_ulid_spec_example_timestamp() {
        // From the ULID spec: 1469918176385 ms encodes as "01ARYZ6S41".
        let id = new_event_id(1_469_918_176_385, [0; 10]);
        assert_eq!(id, "evt_01ARYZ6S410000000000000000");
    }

    #[test]
    fn encodes_random_bits_last() {
        assert_eq!(new_event_id(0, [0xff; 10]), "evt_0000000000ZZZZZZZZZZZZZZZZ");
        let mut random = [0; 10];
        random[9] = 1;
        assert_eq!(new_event_id(0, random), "evt_00000000000000000000000001");
    }

    #[test]
    fn max_time_and_clamping() {
        let max = new_event_id(MAX_ULID_MILLIS, [0xff; 10]);
        assert_eq!(max, "evt_7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        assert_eq!(new_event_id(u64::MAX, [0xff; 10]), max);
    }

    #[test]
    fn ids_sort_by_time_and_are_valid_client_ids() {
        let earlier = new_event_id(1_768_487_531_234, [0xff; 10]);
        let later = new_event_id(1_768_487_531_235, [0; 10]);
        assert!(earlier < later);
        assert_eq!(earlier.len(), 30);
        assert!(is_valid_event_id(&earlier));
    }
}
