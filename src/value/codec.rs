//! The binary encoding of values, specified byte by byte in `docs/PROTOCOL.md`.
//!
//! Every value is a one-byte tag followed by its body; numbers are little-endian IEEE 754
//! doubles, lengths and counts are unsigned LEB128 varints. Decoding never trusts a length or a
//! count: each is checked against the bytes that remain before anything is reserved, and nesting
//! is bounded by [`DecodeLimits::max_depth`], so hostile input can neither exhaust memory nor
//! overflow the stack. Decoded strings and buffers longer than a few words are slices of the
//! input [`Bytes`], not copies; shorter ones are copied inline (see [`ByteStr`]).

use super::{ByteStr, CFrame, Color3, InstanceRef, Tuple, Value, Vector2, Vector3};
use bytes::{BufMut, Bytes, BytesMut};
use std::ops::Range;

/// Value tags on the wire.
pub(crate) mod tag {
    pub const NIL: u8 = 0x00;
    pub const FALSE: u8 = 0x01;
    pub const TRUE: u8 = 0x02;
    pub const NUMBER: u8 = 0x03;
    pub const STRING: u8 = 0x04;
    pub const BUFFER: u8 = 0x05;
    pub const VECTOR2: u8 = 0x06;
    pub const VECTOR3: u8 = 0x07;
    pub const CFRAME: u8 = 0x08;
    pub const COLOR3: u8 = 0x09;
    pub const INSTANCE: u8 = 0x0A;
    pub const ARRAY: u8 = 0x0B;
    pub const DICTIONARY: u8 = 0x0C;
}

/// The default bound on table nesting, on both encode and decode.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Bounds applied while decoding untrusted bytes.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Tables nested deeper than this are refused (a top-level table has depth 1).
    pub max_depth: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Why a tuple could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The input ended inside a value.
    #[error("value truncated: needed {needed} more bytes")]
    Truncated {
        /// Bytes missing.
        needed: usize,
    },
    /// An unknown type tag.
    #[error("unknown value tag 0x{0:02x}")]
    UnknownTag(u8),
    /// Tables nested deeper than the limit.
    #[error("tables nested deeper than the limit of {limit}")]
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// A varint longer than 10 bytes or overflowing 64 bits.
    #[error("malformed varint")]
    BadVarint,
    /// A length or count larger than the bytes that remain.
    #[error("length {0} exceeds the remaining input")]
    LengthOverflow(u64),
    /// A dictionary with the same key twice.
    #[error("duplicate dictionary key")]
    DuplicateKey,
    /// Bytes left over after the tuple.
    #[error("{0} trailing bytes after the tuple")]
    TrailingBytes(usize),
}

/// Appends the encoding of `values` as a tuple to `out`.
///
/// Fails with [`ValueError::TooDeep`] when tables nest deeper than `max_depth`, or with
/// [`ValueError::DuplicateKey`] when a dictionary repeats a key; `out` may then hold a partial
/// encoding and should be discarded.
pub fn encode_tuple(
    values: &[Value],
    max_depth: usize,
    out: &mut BytesMut,
) -> Result<(), ValueError> {
    put_varint(out, values.len() as u64);
    for v in values {
        encode_value(v, 0, max_depth, out)?;
    }
    Ok(())
}

/// Encodes a tuple into a fresh buffer.
pub fn encode_tuple_to_bytes(values: &[Value], max_depth: usize) -> Result<Bytes, ValueError> {
    let mut out = BytesMut::with_capacity(64);
    encode_tuple(values, max_depth, &mut out)?;
    Ok(out.freeze())
}

/// Appends `tag` and the little-endian `words` as one block of `N` bytes: one capacity check
/// and one length update rather than one per field.
#[inline(always)]
fn put_tagged_words<const N: usize>(out: &mut BytesMut, tag: u8, words: &[u64]) {
    assert_eq!(N, 1 + 8 * words.len());
    out.reserve(N);
    let dst = &mut out.chunk_mut()[..N];
    dst.write_byte(0, tag);
    for (i, word) in words.iter().enumerate() {
        dst[1 + 8 * i..9 + 8 * i].copy_from_slice(&word.to_le_bytes());
    }
    // SAFETY: the writes above initialised all `N` bytes of spare capacity (the assertion,
    // folded away at compile time, checks the words fill the block).
    unsafe { out.advance_mut(N) };
}

/// As [`put_tagged_words`], for doubles (their IEEE 754 bits, NaN payloads included).
#[inline(always)]
fn put_tagged_floats<const N: usize, const K: usize>(
    out: &mut BytesMut,
    tag: u8,
    floats: [f64; K],
) {
    put_tagged_words::<N>(out, tag, &floats.map(f64::to_bits));
}

/// Encodes one value. Scalars are written here, inlined into the loop over a tuple or table;
/// tables go to the out-of-line [`encode_table`], so the common path keeps a small frame and no
/// recursion.
#[inline(always)]
fn encode_value(
    v: &Value,
    depth: usize,
    max_depth: usize,
    out: &mut BytesMut,
) -> Result<(), ValueError> {
    match v {
        Value::Nil => out.put_u8(tag::NIL),
        Value::Boolean(false) => out.put_u8(tag::FALSE),
        Value::Boolean(true) => out.put_u8(tag::TRUE),
        Value::Number(n) => put_tagged_floats::<9, 1>(out, tag::NUMBER, [*n]),
        Value::String(s) => s.put_into(out, Some(tag::STRING)),
        Value::Buffer(b) => b.put_into(out, Some(tag::BUFFER)),
        Value::Vector2(v) => put_tagged_floats::<17, 2>(out, tag::VECTOR2, [v.x, v.y]),
        Value::Vector3(v) => put_tagged_floats::<25, 3>(out, tag::VECTOR3, [v.x, v.y, v.z]),
        Value::CFrame(c) => {
            let mut floats = [0.0; 12];
            floats[..3].copy_from_slice(&c.position);
            floats[3..].copy_from_slice(&c.rotation);
            put_tagged_floats::<97, 12>(out, tag::CFRAME, floats)
        }
        Value::Color3(c) => put_tagged_floats::<25, 3>(out, tag::COLOR3, [c.r, c.g, c.b]),
        Value::Instance(r) => put_tagged_words::<9>(out, tag::INSTANCE, &[r.0]),
        Value::Array(_) | Value::Dictionary(_) => {
            if depth >= max_depth {
                return Err(ValueError::TooDeep { limit: max_depth });
            }
            encode_table(v, depth + 1, max_depth, out)?
        }
    }
    Ok(())
}

/// Encodes a table whose items are at `item_depth`, already checked against `max_depth`.
#[inline(never)]
fn encode_table(
    table: &Value,
    item_depth: usize,
    max_depth: usize,
    out: &mut BytesMut,
) -> Result<(), ValueError> {
    match table {
        Value::Array(items) => {
            out.put_u8(tag::ARRAY);
            put_varint(out, items.len() as u64);
            for item in items {
                encode_value(item, item_depth, max_depth, out)?;
            }
        }
        Value::Dictionary(entries) => {
            check_unique_keys(entries)?;
            out.put_u8(tag::DICTIONARY);
            put_varint(out, entries.len() as u64);
            for (key, value) in entries {
                key.put_into(out, None);
                encode_value(value, item_depth, max_depth, out)?;
            }
        }
        _ => unreachable!("encode_value writes scalars itself"),
    }
    Ok(())
}

/// Dictionaries are Luau tables, so a key appears once. Small tables (the common case) are
/// checked pairwise without allocating; large ones through a hash set.
fn check_unique_keys(entries: &[(ByteStr, Value)]) -> Result<(), ValueError> {
    if entries.len() <= 16 {
        for (i, (key, _)) in entries.iter().enumerate() {
            if entries[..i].iter().any(|(k, _)| k == key) {
                return Err(ValueError::DuplicateKey);
            }
        }
    } else {
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        if !entries.iter().all(|(k, _)| seen.insert(k.as_bytes())) {
            return Err(ValueError::DuplicateKey);
        }
    }
    Ok(())
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// A cursor over an input buffer that hands out zero-copy slices.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ValueError> {
        if self.remaining() < n {
            return Err(ValueError::Truncated {
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn slice(&mut self, n: usize) -> Result<Bytes, ValueError> {
        let span = self.span(n)?;
        Ok(self.buf.slice(span))
    }

    /// Skips `n` bytes, giving their position so the caller can slice them later, straight
    /// into their final place.
    pub(crate) fn span(&mut self, n: usize) -> Result<Range<usize>, ValueError> {
        self.take(n)?;
        Ok(self.pos - n..self.pos)
    }

    /// Fills the empty `dst` with the bytes at `span`, which an earlier [`Reader::span`]
    /// checked.
    #[inline(always)]
    fn fill_str(&self, dst: &mut ByteStr, span: Range<usize>) {
        dst.fill_from(self.buf, span)
    }

    pub(crate) fn rest(&mut self) -> Bytes {
        let rest = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        rest
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ValueError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, ValueError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, ValueError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn f64(&mut self) -> Result<f64, ValueError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// `N` doubles, bounds-checked once.
    fn floats<const N: usize>(&mut self) -> Result<[f64; N], ValueError> {
        let bytes = self.take(8 * N)?;
        let mut out = [0.0; N];
        for (f, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            *f = f64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        }
        Ok(out)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, ValueError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if i == 9 && byte > 1 {
                return Err(ValueError::BadVarint);
            }
            v |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ValueError::BadVarint)
    }

    /// A length that must fit in the remaining input, each unit taking at least `unit` bytes.
    pub(crate) fn length(&mut self, unit: usize) -> Result<usize, ValueError> {
        let n = self.varint()?;
        if n > (self.remaining() / unit) as u64 {
            return Err(ValueError::LengthOverflow(n));
        }
        Ok(n as usize)
    }
}

/// Decodes a whole buffer as one tuple; trailing bytes are an error.
pub fn decode_tuple(buf: &Bytes, limits: DecodeLimits) -> Result<Tuple, ValueError> {
    let mut r = Reader::new(buf);
    let tuple = decode_tuple_from(&mut r, limits)?;
    if r.remaining() != 0 {
        return Err(ValueError::TrailingBytes(r.remaining()));
    }
    Ok(tuple)
}

pub(crate) fn decode_tuple_from(
    r: &mut Reader<'_>,
    limits: DecodeLimits,
) -> Result<Tuple, ValueError> {
    let count = r.length(1)?;
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        decode_value_into(r, 0, limits.max_depth, &mut values)?;
    }
    Ok(Tuple(values))
}

/// Where a decoded value goes: the end of a tuple or array, or the entry of a dictionary whose
/// key was just read.
///
/// The value is written straight into its final place in the vector rather than built on the
/// stack and moved: the move reloads a just-written value with wider loads than the stores that
/// wrote it, and the failed store forwarding was measured at about half of decode time.
trait Sink {
    /// Writes `value` (a cheap, inlined constructor) into the next slot.
    fn put_with(&mut self, input: &Reader<'_>, value: impl FnOnce() -> Value);

    /// The value written last, to finish it in place.
    fn last(&mut self) -> &mut Value;
}

impl Sink for Vec<Value> {
    #[inline(always)]
    fn put_with(&mut self, _input: &Reader<'_>, value: impl FnOnce() -> Value) {
        self.reserve(1);
        let len = self.len();
        // SAFETY: `reserve(1)` guarantees room for one more element at `len`; the slot is
        // initialised by `write` before `set_len` makes it part of the vector (should the
        // constructor panic, the slot is simply left outside the vector).
        unsafe {
            self.as_mut_ptr().add(len).write(value());
            self.set_len(len + 1);
        }
    }

    #[inline(always)]
    fn last(&mut self) -> &mut Value {
        self.last_mut().expect("called after put_with")
    }
}

/// A dictionary's entries, and where in the input the key of the next value lies.
struct Entries<'a> {
    entries: &'a mut Vec<(ByteStr, Value)>,
    key: Range<usize>,
}

impl Sink for Entries<'_> {
    #[inline(always)]
    fn put_with(&mut self, input: &Reader<'_>, value: impl FnOnce() -> Value) {
        self.entries.reserve(1);
        let len = self.entries.len();
        // SAFETY: as for `Vec<Value>`: room is reserved, both fields of the slot are written
        // before `set_len` exposes it.
        unsafe {
            let slot = self.entries.as_mut_ptr().add(len);
            let key = std::ptr::addr_of_mut!((*slot).0);
            key.write(ByteStr::new());
            input.fill_str(&mut *key, self.key.clone());
            std::ptr::addr_of_mut!((*slot).1).write(value());
            self.entries.set_len(len + 1);
        }
    }

    #[inline(always)]
    fn last(&mut self) -> &mut Value {
        &mut self.entries.last_mut().expect("called after put_with").1
    }
}

/// Decodes one value into `out`. A scalar is read whole before it is written; a table is
/// written first and filled in place, so on an error `out` may end with a partial table, which
/// the caller drops with everything else it decoded.
///
/// As in encoding, scalars are decoded inline and tables out of line ([`decode_table_into`]).
#[inline(always)]
fn decode_value_into<S: Sink>(
    r: &mut Reader<'_>,
    depth: usize,
    max_depth: usize,
    out: &mut S,
) -> Result<(), ValueError> {
    let t = r.u8()?;
    match t {
        tag::NIL => out.put_with(r, || Value::Nil),
        tag::FALSE => out.put_with(r, || Value::Boolean(false)),
        tag::TRUE => out.put_with(r, || Value::Boolean(true)),
        tag::NUMBER => {
            let n = r.f64()?;
            out.put_with(r, || Value::Number(n))
        }
        tag::STRING => {
            let n = r.length(1)?;
            let span = r.span(n)?;
            out.put_with(r, || Value::String(ByteStr::new()));
            if let Value::String(s) = out.last() {
                r.fill_str(s, span);
            }
        }
        tag::BUFFER => {
            let n = r.length(1)?;
            let span = r.span(n)?;
            out.put_with(r, || Value::Buffer(ByteStr::new()));
            if let Value::Buffer(b) = out.last() {
                r.fill_str(b, span);
            }
        }
        tag::VECTOR2 => {
            let [x, y] = r.floats()?;
            out.put_with(r, || Value::Vector2(Vector2 { x, y }))
        }
        tag::VECTOR3 => {
            let [x, y, z] = r.floats()?;
            out.put_with(r, || Value::Vector3(Vector3 { x, y, z }))
        }
        tag::CFRAME => {
            let frame = Box::new(CFrame {
                position: r.floats()?,
                rotation: r.floats()?,
            });
            out.put_with(r, || Value::CFrame(frame))
        }
        tag::COLOR3 => {
            let [r_, g, b] = r.floats()?;
            out.put_with(r, || Value::Color3(Color3 { r: r_, g, b }))
        }
        tag::INSTANCE => {
            let id = r.u64()?;
            out.put_with(r, || Value::Instance(InstanceRef(id)))
        }
        tag::ARRAY | tag::DICTIONARY => {
            if depth >= max_depth {
                return Err(ValueError::TooDeep { limit: max_depth });
            }
            decode_table_into(t, r, depth + 1, max_depth, out)?
        }
        other => return Err(ValueError::UnknownTag(other)),
    }
    Ok(())
}

/// Decodes the table whose tag `t` was just read into `out`; its items are at `item_depth`,
/// already checked against `max_depth`.
#[inline(never)]
fn decode_table_into<S: Sink>(
    t: u8,
    r: &mut Reader<'_>,
    item_depth: usize,
    max_depth: usize,
    out: &mut S,
) -> Result<(), ValueError> {
    match t {
        tag::ARRAY => {
            let count = r.length(1)?;
            // The table goes into its slot before its items are decoded into it, for the same
            // reason values are written in place (see `Sink`). Should an item fail, the partly
            // filled table is dropped with the rest of the tuple.
            out.put_with(r, || Value::Array(Vec::with_capacity(count)));
            let Value::Array(items) = out.last() else {
                unreachable!("an array was just written")
            };
            for _ in 0..count {
                decode_value_into(r, item_depth, max_depth, items)?;
            }
        }
        tag::DICTIONARY => {
            // Each entry takes at least a key length byte and a value tag.
            let count = r.length(2)?;
            out.put_with(r, || Value::Dictionary(Vec::with_capacity(count)));
            let Value::Dictionary(entries) = out.last() else {
                unreachable!("a dictionary was just written")
            };
            for _ in 0..count {
                let key_len = r.length(1)?;
                let key = r.span(key_len)?;
                let mut sink = Entries {
                    entries: &mut *entries,
                    key,
                };
                decode_value_into(r, item_depth, max_depth, &mut sink)?;
            }
            check_unique_keys(entries)?;
        }
        _ => unreachable!("decode_value_into decodes scalars itself"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple;
    use proptest::prelude::*;

    fn roundtrip(t: &Tuple) -> Tuple {
        let bytes = encode_tuple_to_bytes(t, DEFAULT_MAX_DEPTH).unwrap();
        decode_tuple(&bytes, DecodeLimits::default()).unwrap()
    }

    fn nested_arrays(depth: usize) -> Value {
        let mut v = Value::Nil;
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn empty_tuple_round_trips() {
        assert_eq!(roundtrip(&tuple![]), tuple![]);
        assert_eq!(encode_tuple_to_bytes(&[], 64).unwrap().as_ref(), &[0]);
    }

    #[test]
    fn special_numbers_keep_their_bits() {
        let nan_payload = f64::from_bits(0x7ff8_0000_dead_beef);
        let t = tuple![
            f64::NAN,
            nan_payload,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE
        ];
        let back = roundtrip(&t);
        assert_eq!(back, t);
        assert_eq!(
            back[1].as_number().unwrap().to_bits(),
            0x7ff8_0000_dead_beef
        );
        assert_ne!(tuple![0.0], tuple![-0.0]);
    }

    #[test]
    fn strings_with_nul_and_non_utf8_bytes_round_trip() {
        let t = tuple![
            Value::string(&b"a\0b\xff"[..]),
            Value::buffer(vec![0u8, 1, 2]),
            ""
        ];
        assert_eq!(roundtrip(&t), t);
    }

    #[test]
    fn nesting_at_the_limit_is_accepted_and_one_deeper_refused() {
        let ok = tuple![nested_arrays(DEFAULT_MAX_DEPTH)];
        assert_eq!(roundtrip(&ok), ok);
        let deep = tuple![nested_arrays(DEFAULT_MAX_DEPTH + 1)];
        assert_eq!(
            encode_tuple_to_bytes(&deep, DEFAULT_MAX_DEPTH),
            Err(ValueError::TooDeep {
                limit: DEFAULT_MAX_DEPTH
            })
        );
        // Encoded with a looser limit, the decoder still refuses it.
        let bytes = encode_tuple_to_bytes(&deep, 1000).unwrap();
        assert_eq!(
            decode_tuple(&bytes, DecodeLimits::default()),
            Err(ValueError::TooDeep {
                limit: DEFAULT_MAX_DEPTH
            })
        );
    }

    #[test]
    fn a_nesting_bomb_is_refused_without_recursion() {
        // 10,000 nested array headers: refused at depth 64, long before the stack is at risk.
        let mut bomb = vec![1u8];
        for _ in 0..10_000 {
            bomb.extend_from_slice(&[tag::ARRAY, 1]);
        }
        bomb.push(tag::NIL);
        let err = decode_tuple(&Bytes::from(bomb), DecodeLimits::default()).unwrap_err();
        assert_eq!(err, ValueError::TooDeep { limit: 64 });
    }

    #[test]
    fn huge_counts_are_refused_before_allocation() {
        // A tuple claiming 2^63 values in 10 bytes.
        let bytes = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(
            decode_tuple(&bytes, DecodeLimits::default()),
            Err(ValueError::LengthOverflow(_))
        ));
        let overlong = Bytes::from_static(&[0xff; 11]);
        assert_eq!(
            decode_tuple(&overlong, DecodeLimits::default()),
            Err(ValueError::BadVarint)
        );
    }

    #[test]
    fn duplicate_keys_are_refused_both_ways() {
        let dup = tuple![Value::dictionary([("a", 1), ("a", 2)])];
        assert_eq!(
            encode_tuple_to_bytes(&dup, 64),
            Err(ValueError::DuplicateKey)
        );
        let bytes =
            Bytes::from_static(&[1, tag::DICTIONARY, 2, 1, b'a', tag::NIL, 1, b'a', tag::NIL]);
        assert_eq!(
            decode_tuple(&bytes, DecodeLimits::default()),
            Err(ValueError::DuplicateKey)
        );
    }

    #[test]
    fn trailing_bytes_and_unknown_tags_are_typed_errors() {
        assert_eq!(
            decode_tuple(&Bytes::from_static(&[0, 0]), DecodeLimits::default()),
            Err(ValueError::TrailingBytes(1))
        );
        assert_eq!(
            decode_tuple(&Bytes::from_static(&[1, 0x7f]), DecodeLimits::default()),
            Err(ValueError::UnknownTag(0x7f))
        );
    }

    #[test]
    fn decoded_long_strings_share_the_input_buffer_and_short_ones_are_inline() {
        let long = "a string longer than fits inline";
        let bytes = encode_tuple_to_bytes(&tuple![long, "hp"], 64).unwrap();
        let t = decode_tuple(&bytes, DecodeLimits::default()).unwrap();
        let (Value::String(long_back), Value::String(short_back)) = (&t[0], &t[1]) else {
            panic!("not strings")
        };
        let inside = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        assert!(long_back.is_shared());
        assert!(inside.contains(&(long_back.as_ptr() as usize)));
        assert_eq!(long_back, long);
        assert!(!short_back.is_shared());
        assert_eq!(short_back, "hp");
    }

    fn any_float() -> impl Strategy<Value = f64> {
        prop_oneof![any::<f64>(), any::<u64>().prop_map(f64::from_bits)]
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf =
            prop_oneof![
                Just(Value::Nil),
                any::<bool>().prop_map(Value::Boolean),
                any_float().prop_map(Value::Number),
                proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::string),
                proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::buffer),
                (any_float(), any_float()).prop_map(|(x, y)| Value::Vector2(Vector2 { x, y })),
                (any_float(), any_float(), any_float())
                    .prop_map(|(x, y, z)| Value::Vector3(Vector3 { x, y, z })),
                (any_float(), any_float(), any_float())
                    .prop_map(|(r, g, b)| Value::Color3(Color3 { r, g, b })),
                proptest::array::uniform12(any_float()).prop_map(|f| {
                    let mut c = CFrame::default();
                    c.position.copy_from_slice(&f[..3]);
                    c.rotation.copy_from_slice(&f[3..]);
                    Value::CFrame(Box::new(c))
                }),
                any::<u64>().prop_map(|r| Value::Instance(InstanceRef(r))),
            ];
        leaf.prop_recursive(8, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\\x00]{0,6}", inner, 0..8).prop_map(|m| {
                    Value::dictionary(m.into_iter().map(|(k, v)| (ByteStr::from(k), v)))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn every_value_round_trips_exactly(values in proptest::collection::vec(any_value(), 0..6)) {
            let t = Tuple(values);
            prop_assert_eq!(roundtrip(&t), t);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_tuple(&Bytes::from(bytes), DecodeLimits::default());
        }

        #[test]
        fn every_truncation_is_an_error(values in proptest::collection::vec(any_value(), 1..4)) {
            let bytes = encode_tuple_to_bytes(&values, DEFAULT_MAX_DEPTH).unwrap();
            for cut in 0..bytes.len() {
                prop_assert!(decode_tuple(&bytes.slice(..cut), DecodeLimits::default()).is_err());
            }
        }
    }
}
