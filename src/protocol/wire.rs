//! A bounds-checked reader for Kafka request bodies.
//!
//! Invariant: every length or count read off the wire is checked against the bytes that
//! remain before anything is allocated, so a hostile frame costs at most its own size.
//! Byte fields are returned as zero-copy slices of the frame.

use bytes::Bytes;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("frame ended early: needed {need} more bytes at position {at}")]
    Short { at: usize, need: usize },
    #[error("invalid length {len} at position {at}")]
    BadLength { at: usize, len: i64 },
    #[error("invalid UTF-8 in string at position {0}")]
    Utf8(usize),
    #[error("varint too long at position {0}")]
    Varint(usize),
}

pub type Result<T> = std::result::Result<T, DecodeError>;

/// Cursor over one request frame.
pub struct Reader {
    data: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(data: Bytes) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.remaining() < n {
            return Err(DecodeError::Short {
                at: self.pos,
                need: n - self.remaining(),
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn take_bytes(&mut self, n: usize) -> Result<Bytes> {
        if self.remaining() < n {
            return Err(DecodeError::Short {
                at: self.pos,
                need: n - self.remaining(),
            });
        }
        let b = self.data.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    pub fn i8(&mut self) -> Result<i8> {
        Ok(self.take(1)?[0] as i8)
    }
    pub fn bool(&mut self) -> Result<bool> {
        Ok(self.i8()? != 0)
    }
    pub fn i16(&mut self) -> Result<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    pub fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    pub fn uuid(&mut self) -> Result<[u8; 16]> {
        let b = self.take(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// Unsigned LEB128 varint of at most 5 bytes.
    pub fn uvarint(&mut self) -> Result<u32> {
        let at = self.pos;
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.take(1)?[0];
            v |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Varint(at))
    }

    fn check_len(&self, at: usize, len: i64) -> Result<usize> {
        if len < 0 || len as u64 > self.remaining() as u64 {
            return Err(DecodeError::BadLength { at, len });
        }
        Ok(len as usize)
    }

    /// Length of a string/bytes field: `None` for null.
    fn len_prefix(&mut self, flexible: bool, wide: bool) -> Result<Option<usize>> {
        let at = self.pos;
        let n: i64 = if flexible {
            i64::from(self.uvarint()?) - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        if n == -1 {
            return Ok(None);
        }
        self.check_len(at, n).map(Some)
    }

    pub fn nullable_string(&mut self, flexible: bool) -> Result<Option<String>> {
        let at = self.pos;
        match self.len_prefix(flexible, false)? {
            None => Ok(None),
            Some(n) => {
                let b = self.take(n)?;
                std::str::from_utf8(b)
                    .map(|s| Some(s.to_owned()))
                    .map_err(|_| DecodeError::Utf8(at))
            }
        }
    }

    pub fn string(&mut self, flexible: bool) -> Result<String> {
        let at = self.pos;
        self.nullable_string(flexible)?
            .ok_or(DecodeError::BadLength { at, len: -1 })
    }

    pub fn nullable_bytes(&mut self, flexible: bool) -> Result<Option<Bytes>> {
        match self.len_prefix(flexible, true)? {
            None => Ok(None),
            Some(n) => self.take_bytes(n).map(Some),
        }
    }

    /// Element count of an array; `None` for a null array. A count larger than the bytes
    /// left is refused (every element takes at least one byte).
    pub fn array_len(&mut self, flexible: bool) -> Result<Option<usize>> {
        self.len_prefix(flexible, true)
    }

    /// Reads an array with `f`, treating null as empty.
    pub fn array<T>(
        &mut self,
        flexible: bool,
        mut f: impl FnMut(&mut Reader) -> Result<T>,
    ) -> Result<Vec<T>> {
        Ok(self.nullable_array(flexible, &mut f)?.unwrap_or_default())
    }

    pub fn nullable_array<T>(
        &mut self,
        flexible: bool,
        mut f: impl FnMut(&mut Reader) -> Result<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(n) = self.array_len(flexible)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(Some(out))
    }

    /// Skips a tagged-field section (flexible versions only).
    pub fn tagged_fields(&mut self, flexible: bool) -> Result<()> {
        if !flexible {
            return Ok(());
        }
        let at = self.pos;
        let n = self.uvarint()?;
        self.check_len(at, i64::from(n))?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let at = self.pos;
            let size = self.uvarint()?;
            let size = self.check_len(at, i64::from(size))?;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_array_count_is_refused_without_allocating() {
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0]));
        let e = r.array(false, |r| r.i32()).unwrap_err();
        assert!(matches!(e, DecodeError::BadLength { .. }));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f]));
        assert!(r.array(true, |r| r.i32()).is_err());
    }

    #[test]
    fn strings_and_nulls() {
        let mut r = Reader::new(Bytes::from_static(&[
            0, 2, b'h', b'i', 0xff, 0xff, 3, b'o', b'k', 0,
        ]));
        assert_eq!(r.string(false).unwrap(), "hi");
        assert_eq!(r.nullable_string(false).unwrap(), None);
        assert_eq!(r.string(true).unwrap(), "ok");
        assert_eq!(r.nullable_string(true).unwrap(), None);
        assert_eq!(r.remaining(), 0);
        assert!(r.i8().is_err());
    }

    #[test]
    fn random_input_never_panics() {
        let mut seed = 0x1234_5678u32;
        for _ in 0..2000 {
            let len = (seed % 64) as usize;
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let mut r = Reader::new(Bytes::from(v));
            let _ = r.array(true, |r| {
                r.string(true)?;
                r.nullable_bytes(true)?;
                r.tagged_fields(true)
            });
        }
    }
}
