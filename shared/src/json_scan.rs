//! Finding the end of a JSON string eight bytes at a time: the one hot loop of the hand-written
//! JSON readers (the admission server's review reader, the validation's plain scanner).

/// `byte` in all eight bytes of a word.
const fn splat(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// The high bit of each byte of `word` below `n` (`n <= 0x80`), and possibly of bytes after the
/// first such one (a borrow runs on), never before it: the lowest set bit is exact.
const fn bytes_below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(splat(n)) & !word & splat(0x80)
}

/// The high bit of each byte of `word` (little-endian) that is a quote, a backslash or a control
/// character, or (with `NON_ASCII`) a byte of 0x80 or above; possibly also of other bytes after
/// the first such one (see [`bytes_below`]), never of bytes before it.
const fn stops<const NON_ASCII: bool>(word: u64) -> u64 {
    let mut stops = bytes_below(word ^ splat(b'"'), 1)
        | bytes_below(word ^ splat(b'\\'), 1)
        | bytes_below(word, 0x20);
    if NON_ASCII {
        stops |= word & splat(0x80);
    }
    stops
}

/// The index of the first byte of `word` (little-endian) that is a quote, a backslash or a
/// control character, or (with `NON_ASCII`) a byte of 0x80 or above, if any.
const fn first_string_stop<const NON_ASCII: bool>(word: u64) -> Option<usize> {
    let stops = stops::<NON_ASCII>(word);
    if stops == 0 {
        None
    } else {
        Some(stops.trailing_zeros() as usize / 8)
    }
}

/// Candidate stops (`"`, `\\`, control characters) of the eight bytes at `from`, for a reader
/// that handles several stops per load (escape-heavy strings): the high bit of every such byte is
/// set, and possibly of a few other bytes after the first one, so the caller checks each
/// candidate's byte. `None` when fewer than eight bytes are left (use [`string_stop`] there).
pub fn string_stop_candidates(bytes: &[u8], from: usize) -> Option<u64> {
    let chunk = bytes.get(from..from.checked_add(8)?)?;
    Some(stops::<false>(u64::from_le_bytes(chunk.try_into().ok()?)))
}

fn is_stop<const NON_ASCII: bool>(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20 || (NON_ASCII && b >= 0x80)
}

fn stop<const NON_ASCII: bool>(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        match first_string_stop::<NON_ASCII>(word) {
            None => i += 8,
            Some(at) => return Some(i + at),
        }
    }
    while let Some(&b) = bytes.get(i) {
        if is_stop::<NON_ASCII>(b) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The index of the first `"`, `\` or control character (below 0x20) in `bytes` at or after
/// `from`: where a JSON string's plain run ends. `None` when there is none.
pub fn string_stop(bytes: &[u8], from: usize) -> Option<usize> {
    stop::<false>(bytes, from)
}

/// [`string_stop`] that also stops at the first byte of 0x80 or above: a string whose run ends
/// at its closing quote is plain ASCII, so it needs no UTF-8 validation to be compared.
pub fn ascii_string_stop(bytes: &[u8], from: usize) -> Option<usize> {
    stop::<true>(bytes, from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_stop_at_every_offset() {
        for len in 0..40 {
            for stop in [b'"', b'\\', 0, 0x1f, b'\n'] {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = stop;
                    // Bytes near the stop values that are not stops.
                    if at + 1 < len {
                        bytes[at + 1] = 0x20;
                    }
                    for from in 0..=at {
                        assert_eq!(
                            string_stop(&bytes, from),
                            Some(at),
                            "{len} {stop} {at} {from}"
                        );
                        assert_eq!(ascii_string_stop(&bytes, from), Some(at));
                    }
                    assert_eq!(string_stop(&bytes, at + 1), None);
                    assert_eq!(ascii_string_stop(&bytes, at + 1), None);
                }
            }
            // Candidates cover every stop of each eight-byte window.
            let mut bytes: Vec<u8> = (0..len).map(|i| b' ' + (i * 7 % 90) as u8).collect();
            for (i, b) in bytes.iter_mut().enumerate() {
                if i % 3 == 0 {
                    *b = [b'"', b'\\', 0, 0x1f, b'#', b']'][i / 3 % 6];
                }
            }
            for from in 0..len {
                let Some(mask) = string_stop_candidates(&bytes, from) else {
                    assert!(from + 8 > len);
                    continue;
                };
                for k in 0..8 {
                    let b = bytes[from + k];
                    if b == b'"' || b == b'\\' || b < 0x20 {
                        assert_ne!(mask & (0x80 << (8 * k)), 0, "{from} {k}");
                    }
                }
            }
            let plain: Vec<u8> = (0..len as u8).map(|i| b' ' + (i % 90)).collect();
            let want = plain.iter().position(|&b| b == b'"' || b == b'\\');
            assert_eq!(string_stop(&plain, 0), want);
            assert_eq!(string_stop("é✓\"".as_bytes(), 0), Some(5));
            assert_eq!(ascii_string_stop("ab-é✓\"".as_bytes(), 0), Some(3));
            // Non-ASCII at every offset of a word, after plain bytes.
            for at in 0..len {
                let mut bytes = vec![b'a'; len];
                bytes[at] = 0x80 + (at as u8 % 0x7f);
                assert_eq!(ascii_string_stop(&bytes, 0), Some(at));
                assert_eq!(string_stop(&bytes, 0), None);
            }
        }
    }
}
