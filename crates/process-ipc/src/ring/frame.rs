//! How items are framed in a feeder's chunk and in the ring's batch records: each item is its
//! length (a LEB128 varint) then its postcard encoding, so a reader can step over an item
//! that fails to decode.

/// Writes `len` as a LEB128 varint at `at`, where one byte was reserved and the `len` bytes of
/// the item follow it: a length of 128 or more moves the item up to make room.
#[inline]
pub(crate) fn write_len(chunk: &mut [u8], at: usize, len: usize) -> Result<(), usize> {
    if len < 0x80 {
        chunk[at] = len as u8;
        Ok(())
    } else {
        Err(len)
    }
}

/// [`write_len`] for lengths of 128 and more.
#[cold]
pub(crate) fn write_long_len(chunk: &mut Vec<u8>, at: usize, len: usize) {
    let mut bytes = [0u8; 5];
    let mut n = 0;
    let mut v = len as u32;
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        bytes[n] = if v == 0 { low } else { low | 0x80 };
        n += 1;
        if v == 0 {
            break;
        }
    }
    if n > 1 {
        let end = chunk.len();
        chunk.resize(end + n - 1, 0);
        chunk.copy_within(at + 1..end, at + n);
    }
    chunk[at..at + n].copy_from_slice(&bytes[..n]);
}

/// Writes `len` as a LEB128 varint padded to five bytes at `at` (readers accept the padding).
pub(crate) fn write_padded_len(chunk: &mut [u8], at: usize, len: usize) {
    for (i, b) in chunk[at..at + 5].iter_mut().enumerate() {
        let bits = ((len >> (7 * i)) & 0x7f) as u8;
        *b = if i < 4 { bits | 0x80 } else { bits };
    }
}

/// Reads a LEB128 varint length at the start of `bytes`: (length, bytes it took).
#[inline]
pub(crate) fn read_len(bytes: &[u8]) -> Option<(usize, usize)> {
    match bytes.first() {
        Some(&b) if b < 0x80 => Some((usize::from(b), 1)),
        _ => read_long_len(bytes),
    }
}

#[cold]
fn read_long_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().take(5).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((usize::try_from(v).ok()?, i + 1));
        }
    }
    None
}

/// A chunk is a 4-byte little-endian item count followed by the framed items.
#[inline]
pub(crate) fn count_items(chunk: &[u8]) -> usize {
    u32::from_le_bytes(chunk[..4].try_into().expect("chunk header")) as usize
}

#[cfg(test)]
mod tests {
    use super::{read_len, write_len, write_long_len, write_padded_len};

    #[test]
    fn lengths_round_trip_at_every_width() {
        for len in [
            0usize,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            1 << 21,
            u32::MAX as usize,
        ] {
            // A reserved byte, then a stand-in for the item (only its first bytes matter here).
            let body = len.min(600);
            let mut chunk = vec![9u8; 3];
            chunk.push(0);
            chunk.extend((0..body).map(|i| i as u8));
            if write_len(&mut chunk, 3, len).is_err() {
                write_long_len(&mut chunk, 3, len);
            }
            let (got, head) = read_len(&chunk[3..]).unwrap();
            assert_eq!(got, len);
            assert_eq!(&chunk[..3], &[9, 9, 9]);
            let item: Vec<u8> = (0..body).map(|i| i as u8).collect();
            assert_eq!(&chunk[3 + head..], &item[..]);
        }
        assert_eq!(read_len(&[0x80, 0x80]), None);
        for len in [0usize, 1, 127, 128, 65_536, u32::MAX as usize] {
            let mut padded = [0u8; 6];
            write_padded_len(&mut padded, 1, len);
            assert_eq!(read_len(&padded[1..]), Some((len, 5)));
        }
    }
}
