//! Bounded reading and writing of wire fields.
//!
//! Every decoder in this crate reads through [`Reader`]: it never panics,
//! never reads past the bytes it was given, and never trusts a length it has
//! not checked against both a maximum and the bytes actually present (the
//! rustls `Codec` habit). Integers are big-endian.

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated: the input ends inside `{0}`")]
    Truncated(&'static str),
    /// A length prefix exceeds what the field allows.
    #[error("`{field}` is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The declared length.
        len: usize,
        /// The maximum for this field.
        max: usize,
    },
    /// Bytes follow the end of a message.
    #[error("{0} unexpected bytes after the end of the message")]
    Trailing(usize),
    /// A field has a value the protocol does not define.
    #[error("invalid `{field}`: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// A cursor over untrusted bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes exactly `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(field));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Reads a `u16`-length-prefixed byte string of at most `max` bytes.
    pub fn vec16(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        self.take(len, field)
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// Appends a `u16`-length-prefixed byte string. The caller bounds `bytes`
/// below 64 KiB; a longer one is an encoding bug and is refused.
pub fn put_vec16(out: &mut Vec<u8>, field: &'static str, bytes: &[u8]) -> Result<(), DecodeError> {
    let len = u16::try_from(bytes.len()).map_err(|_| DecodeError::TooLong {
        field,
        len: bytes.len(),
        max: usize::from(u16::MAX),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded_by_input_and_maximum() {
        let mut r = Reader::new(&[0, 5, 1, 2]);
        assert_eq!(
            r.vec16("x", 4),
            Err(DecodeError::TooLong {
                field: "x",
                len: 5,
                max: 4
            })
        );
        let mut r = Reader::new(&[0, 3, 1, 2]);
        assert_eq!(r.vec16("x", 8), Err(DecodeError::Truncated("x")));
        let mut r = Reader::new(&[0, 2, 1, 2, 9]);
        assert_eq!(r.vec16("x", 8), Ok(&[1u8, 2][..]));
        assert_eq!(r.finish(), Err(DecodeError::Trailing(1)));
        assert_eq!(r.u16("y"), Err(DecodeError::Truncated("y")));
    }

    #[test]
    fn put_vec16_refuses_what_it_cannot_encode() {
        let mut out = Vec::new();
        assert!(put_vec16(&mut out, "x", &vec![0u8; 70_000]).is_err());
        put_vec16(&mut out, "x", b"ab").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, [0, 2, b'a', b'b']);
    }
}
