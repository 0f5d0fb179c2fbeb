//! Avro binary, read and written exactly: the one reader and writer the compiled paths share.
//!
//! The reader answers `None` for anything it cannot read exactly as fastavro would (past
//! the end, a varint past 64 bits, text that is not UTF-8, an unknown union branch), so
//! its callers decline and the Python path decides.

/// A cursor over an Avro body.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes` from `at` (past a wire header, for instance).
    pub(crate) fn new(bytes: &'a [u8], at: usize) -> Self {
        Reader { bytes, at }
    }

    /// Whether every byte was read.
    pub(crate) fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// A zigzag varint of at most 64 bits (Avro's `long`; `int` is read the same way).
    pub(crate) fn long(&mut self) -> Option<i64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return None; // past 64 bits: fastavro would read a larger int
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Some((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        None
    }

    /// Avro `bytes`: a length, then that many bytes.
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let length = usize::try_from(self.long()?).ok()?;
        let end = self.at.checked_add(length)?;
        let raw = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(raw)
    }

    /// Avro `string`: `bytes` that are UTF-8.
    pub(crate) fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// A `["null", T]` union: its branch index, then the value for branch 1.
    pub(crate) fn optional<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<Option<T>> {
        match self.long()? {
            0 => Some(None),
            1 => Some(Some(read(self)?)),
            _ => None,
        }
    }
}

/// Avro's `long`: zig-zag, then varint.
pub(crate) fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut z = ((value << 1) ^ (value >> 63)) as u64;
    while z > 0x7f {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Avro's `string`: its length in bytes, then its UTF-8.
pub(crate) fn write_string(out: &mut Vec<u8>, text: &str) {
    write_long(out, text.len() as i64);
    out.extend_from_slice(text.as_bytes());
}
