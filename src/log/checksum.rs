//! Small checksummed files (producer snapshots, committed-offset snapshots): a 5-byte magic,
//! a body, and the CRC-32C of both as the last 4 bytes.
//!
//! Invariant: `open` returns a body only when the magic and the checksum both match; it
//! never panics on any input.

/// Bytes of the magic that starts every file.
pub const MAGIC_LEN: usize = 5;
/// The smallest file: magic, a 4-byte count, the checksum.
const MIN_LEN: usize = MAGIC_LEN + 4 + 4;

/// Appends the CRC-32C of `out` (magic and body) to it.
pub fn seal(out: &mut Vec<u8>) {
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// The body of `buf` (between the magic and the checksum), if it starts with `magic` and
/// its checksum holds.
pub fn open<'a>(buf: &'a [u8], magic: &[u8; MAGIC_LEN]) -> Option<&'a [u8]> {
    if buf.len() < MIN_LEN || &buf[..MAGIC_LEN] != magic {
        return None;
    }
    let (sealed, crc) = buf.split_at(buf.len() - 4);
    let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    (crc32c::crc32c(sealed) == crc).then_some(&sealed[MAGIC_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut f = b"ABCDE".to_vec();
        f.extend_from_slice(&[0, 0, 0, 1, 9, 9]);
        seal(&mut f);
        assert_eq!(open(&f, b"ABCDE"), Some(&[0, 0, 0, 1, 9, 9][..]));
        assert_eq!(open(&f, b"ABCDX"), None);
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 1;
            assert_eq!(open(&g, b"ABCDE"), None, "flip at {i}");
        }
        for cut in 0..f.len() {
            assert_eq!(open(&f[..cut], b"ABCDE"), None);
        }
    }
}
