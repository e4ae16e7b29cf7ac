//! [`ByteStr`]: the immutable byte string behind Luau strings, buffers and dictionary keys.

use bytes::{BufMut, Bytes, BytesMut};
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, Range};

/// The longest string kept inline, without a heap allocation or a reference count.
const INLINE_CAPACITY: usize = 23;

/// An immutable byte string: the contents of a Luau string or buffer, or a dictionary key.
///
/// It may hold any bytes, including NUL and bytes that are not UTF-8. Strings of up to 23 bytes
/// (nearly every remote name, dictionary key and short message a game sends) are stored inline,
/// so making, cloning and dropping them touches no allocator and no shared counter; longer ones
/// are a [`Bytes`], and when decoded from a frame they are a view into it rather than a copy.
/// Either way a `ByteStr` takes 32 bytes.
#[derive(Clone)]
pub struct ByteStr(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        data: [u8; INLINE_CAPACITY],
    },
    Shared(Bytes),
}

impl ByteStr {
    /// The empty string.
    pub const fn new() -> ByteStr {
        ByteStr(Repr::Inline {
            len: 0,
            data: [0; INLINE_CAPACITY],
        })
    }

    /// A string holding a copy of `bytes` (inline when short).
    pub fn copy_from_slice(bytes: &[u8]) -> ByteStr {
        Self::inline(bytes).unwrap_or_else(|| ByteStr(Repr::Shared(Bytes::copy_from_slice(bytes))))
    }

    /// Turns this empty string into `buf[span]` where it lies, so a decoder writing into a
    /// vector slot never builds the string elsewhere and moves it (the move's wide reloads of
    /// freshly written bytes defeat store forwarding, measured as the largest decode cost).
    ///
    /// # Panics
    /// When `span` is out of `buf`'s bounds; debug builds also when `self` is not empty.
    #[inline(always)]
    pub(crate) fn fill_from(&mut self, buf: &Bytes, span: Range<usize>) {
        debug_assert!(self.is_empty() && !self.is_shared());
        if span.len() > INLINE_CAPACITY {
            *self = ByteStr(Repr::Shared(buf.slice(span)));
        } else if let Repr::Inline { len, data } = &mut self.0 {
            // Short strings are copied as one fixed-size block when the input extends that far
            // (the bytes past `len` are never read): a fixed copy is two moves, a variable one
            // a call into `memmove`.
            match buf.get(span.start..span.start + INLINE_CAPACITY) {
                Some(block) => data.copy_from_slice(block),
                None => data[..span.len()].copy_from_slice(&buf[span.clone()]),
            }
            *len = span.len() as u8;
        }
    }

    /// Appends the wire form of the string to `out`: `tag` when given, the length as a varint,
    /// then the bytes.
    #[inline(always)]
    pub(crate) fn put_into(&self, out: &mut BytesMut, tag: Option<u8>) {
        match &self.0 {
            Repr::Inline { len, data } => {
                // One capacity check, one fixed-size copy of the whole inline block (of which
                // only `len` bytes are kept) and one length update: the length of an inline
                // string is a one-byte varint. Written straight into the output, not assembled
                // on the stack first: reloading a block of narrow stores with wide loads stalls.
                const MAX: usize = 2 + INLINE_CAPACITY;
                let at = usize::from(tag.is_some());
                out.reserve(MAX);
                let dst = &mut out.chunk_mut()[..MAX];
                if let Some(tag) = tag {
                    dst.write_byte(0, tag);
                }
                dst.write_byte(at, *len);
                dst[at + 1..at + 1 + INLINE_CAPACITY].copy_from_slice(data);
                // SAFETY: the writes above initialised the first `at + 1 + INLINE_CAPACITY`
                // bytes of spare capacity, and `len <= INLINE_CAPACITY`.
                unsafe { out.advance_mut(at + 1 + usize::from(*len)) };
            }
            Repr::Shared(bytes) => {
                if let Some(tag) = tag {
                    out.put_u8(tag);
                }
                super::codec::put_varint(out, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
        }
    }

    #[inline(always)]
    fn inline(bytes: &[u8]) -> Option<ByteStr> {
        if bytes.len() > INLINE_CAPACITY {
            return None;
        }
        let mut data = [0; INLINE_CAPACITY];
        data[..bytes.len()].copy_from_slice(bytes);
        Some(ByteStr(Repr::Inline {
            len: bytes.len() as u8,
            data,
        }))
    }

    /// The bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, data } => &data[..usize::from(*len)],
            Repr::Shared(bytes) => bytes,
        }
    }

    /// The string as [`Bytes`] (a copy for inline strings, a shared view otherwise).
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(self.as_bytes()),
            Repr::Shared(bytes) => bytes.clone(),
        }
    }

    /// The string as UTF-8 text, if it is valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(self).ok()
    }

    /// Whether the bytes live in shared storage (long strings) rather than inline.
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Repr::Shared(_))
    }
}

impl Default for ByteStr {
    fn default() -> Self {
        ByteStr::new()
    }
}

impl Deref for ByteStr {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for ByteStr {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<[u8]> for ByteStr {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for ByteStr {
    fn eq(&self, other: &ByteStr) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ByteStr {}

impl PartialEq<[u8]> for ByteStr {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialOrd for ByteStr {
    fn partial_cmp(&self, other: &ByteStr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByteStr {
    fn cmp(&self, other: &ByteStr) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for ByteStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl fmt::Debug for ByteStr {
    /// Text when the bytes are UTF-8, otherwise escaped like a byte string literal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_str() {
            Some(text) => fmt::Debug::fmt(text, f),
            None => write!(f, "b\"{}\"", self.as_bytes().escape_ascii()),
        }
    }
}

impl From<&[u8]> for ByteStr {
    fn from(bytes: &[u8]) -> ByteStr {
        ByteStr::copy_from_slice(bytes)
    }
}

impl<const N: usize> From<&[u8; N]> for ByteStr {
    fn from(bytes: &[u8; N]) -> ByteStr {
        ByteStr::copy_from_slice(bytes)
    }
}

impl From<&str> for ByteStr {
    fn from(text: &str) -> ByteStr {
        ByteStr::copy_from_slice(text.as_bytes())
    }
}

impl From<String> for ByteStr {
    fn from(text: String) -> ByteStr {
        ByteStr::from(text.into_bytes())
    }
}

impl From<Vec<u8>> for ByteStr {
    /// Short vectors are copied inline; long ones are taken over without a copy.
    fn from(bytes: Vec<u8>) -> ByteStr {
        ByteStr::inline(&bytes).unwrap_or_else(|| ByteStr(Repr::Shared(Bytes::from(bytes))))
    }
}

impl From<Bytes> for ByteStr {
    /// Short strings are copied inline; long ones keep sharing `bytes`' storage.
    fn from(bytes: Bytes) -> ByteStr {
        ByteStr::inline(&bytes).unwrap_or(ByteStr(Repr::Shared(bytes)))
    }
}

impl From<ByteStr> for Bytes {
    fn from(s: ByteStr) -> Bytes {
        match s.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(s.as_bytes()),
            Repr::Shared(bytes) => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_inline_and_long_ones_share_their_storage() {
        let exactly = ByteStr::from(vec![b'a'; INLINE_CAPACITY]);
        assert!(!exactly.is_shared());
        assert_eq!(exactly.len(), INLINE_CAPACITY);
        let longer = ByteStr::from(vec![b'a'; INLINE_CAPACITY + 1]);
        assert!(longer.is_shared());

        let frame = Bytes::from((0..100).collect::<Vec<u8>>());
        let mut view = ByteStr::new();
        view.fill_from(&frame, 10..60);
        assert!(view.is_shared());
        assert_eq!(view.as_ptr(), frame[10..].as_ptr());
        // Short: copied, whether the input extends past it (one fixed block) or ends with it.
        for span in [10..20, 90..100] {
            let mut short = ByteStr::new();
            short.fill_from(&frame, span.clone());
            assert!(!short.is_shared());
            assert_eq!(&*short, &frame[span]);
        }
    }

    #[test]
    fn equality_hashing_and_order_follow_the_bytes_not_the_storage() {
        use std::collections::HashSet;
        let long = vec![b'z'; 40];
        let shared = ByteStr::from(Bytes::from(long.clone()));
        let copied = ByteStr::copy_from_slice(&long);
        assert_eq!(shared, copied);
        let set: HashSet<ByteStr> = [shared, copied].into_iter().collect();
        assert_eq!(set.len(), 1);
        let (a, b) = (ByteStr::from("a"), ByteStr::from("b"));
        assert!(a < b);
        assert_eq!(ByteStr::from("hp"), "hp");
        assert_eq!(ByteStr::new(), ByteStr::default());
        assert!(ByteStr::new().is_empty());
    }

    #[test]
    fn debug_shows_text_or_escaped_bytes() {
        assert_eq!(format!("{:?}", ByteStr::from("hp")), "\"hp\"");
        assert_eq!(format!("{:?}", ByteStr::from(&b"a\xff"[..])), "b\"a\\xff\"");
    }

    #[test]
    fn it_is_as_small_as_bytes() {
        assert_eq!(size_of::<ByteStr>(), size_of::<Bytes>());
        assert_eq!(size_of::<super::super::Value>(), 40);
    }

    #[test]
    fn conversions_back_to_bytes_keep_the_contents() {
        for len in [0, 5, INLINE_CAPACITY, INLINE_CAPACITY + 1, 300] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let s = ByteStr::from(data.clone());
            assert_eq!(s.to_bytes(), data);
            assert_eq!(Bytes::from(s), data);
        }
    }
}
