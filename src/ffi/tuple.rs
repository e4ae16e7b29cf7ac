//! `rf_tuple` (an owned list of values, with a builder for nested tables) and `rf_value` (a
//! borrowed view of one value inside a tuple).

use super::{boundary, byte_slice, entry, handle, handle_mut, invalid, out_ptr, rf_status};
use crate::error::Error;
use crate::value::ByteStr;
use crate::value::{CFrame, Color3, InstanceRef, Tuple, Value, Vector2, Vector3};
use std::borrow::Cow;
use std::ffi::c_char;

/// Nesting the tuple builder accepts; deeper tables are refused with `RF_ERR_LIMIT`. It bounds
/// the builder's memory and keeps every value shallow enough to drop without deep recursion;
/// what a peer accepts is set by its own (lower) depth limit.
pub const RF_MAX_BUILD_DEPTH: usize = 256;

/// The type of a value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rf_type {
    /// `nil`.
    RF_NIL = 0,
    /// `true` or `false`.
    RF_BOOLEAN = 1,
    /// A double.
    RF_NUMBER = 2,
    /// A binary-safe string.
    RF_STRING = 3,
    /// A `buffer`: raw bytes.
    RF_BUFFER = 4,
    /// `Vector2`.
    RF_VECTOR2 = 5,
    /// `Vector3`.
    RF_VECTOR3 = 6,
    /// `CFrame`.
    RF_CFRAME = 7,
    /// `Color3`.
    RF_COLOR3 = 8,
    /// An engine-defined 64-bit object reference.
    RF_INSTANCE = 9,
    /// An array table.
    RF_ARRAY = 10,
    /// A dictionary table; keys are strings.
    RF_DICTIONARY = 11,
}

/// A `Vector2`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rf_vector2 {
    /// X.
    pub x: f64,
    /// Y.
    pub y: f64,
}

/// A `Vector3`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rf_vector3 {
    /// X.
    pub x: f64,
    /// Y.
    pub y: f64,
    /// Z.
    pub z: f64,
}

/// A `Color3`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rf_color3 {
    /// Red.
    pub r: f64,
    /// Green.
    pub g: f64,
    /// Blue.
    pub b: f64,
}

/// A `CFrame`: position and a row-major 3x3 rotation matrix.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rf_cframe {
    /// Position x, y, z.
    pub position: [f64; 3],
    /// Rotation, row-major.
    pub rotation: [f64; 9],
}

/// A table being built: the value so far, the key it will have in a parent dictionary, and
/// (for a dictionary) the key waiting for its value.
#[derive(Clone, Debug)]
struct OpenTable {
    table: Value,
    key_in_parent: Option<ByteStr>,
    pending_key: Option<ByteStr>,
}

/// An owned, ordered list of values (a Luau "Tuple"). Not thread-safe: modify a tuple from
/// one thread at a time; reading it from several threads at once is fine.
#[derive(Clone, Debug, Default)]
pub struct rf_tuple {
    values: StableValues,
    open: Vec<OpenTable>,
}

/// Capacity of a tuple's first segment: enough for nearly every argument list and result.
const FIRST_SEGMENT: usize = 8;

/// A tuple's top-level values, in segments that are never reallocated: a value, and the bytes
/// of a short string stored inside it, stay where they are for as long as the tuple lives, so
/// the pointers `rf_tuple_get`, `rf_value_string` and the other accessors hand out survive
/// later pushes (the ABI's "valid while the owner lives"). A tuple of up to [`FIRST_SEGMENT`]
/// values (or one received from the network) is one segment and sends as a plain slice.
#[derive(Clone, Debug, Default)]
struct StableValues {
    /// Each segment is filled up to its capacity and never beyond it; each new one is as large
    /// as all before it, so there are O(log n) of them.
    segments: Vec<Vec<Value>>,
    len: usize,
}

impl StableValues {
    fn from_vec(values: Tuple) -> StableValues {
        StableValues {
            len: values.len(),
            segments: vec![values.0],
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, value: Value) {
        match self.segments.last_mut() {
            Some(segment) if segment.len() < segment.capacity() => segment.push(value),
            _ => {
                let mut segment = Vec::with_capacity(self.len.max(FIRST_SEGMENT));
                segment.push(value);
                self.segments.push(segment);
            }
        }
        self.len += 1;
    }

    fn get(&self, mut i: usize) -> Option<&Value> {
        for segment in &self.segments {
            match segment.get(i) {
                Some(value) => return Some(value),
                None => i -= segment.len(),
            }
        }
        None
    }

    /// The values as one slice: borrowed when they are one segment, else a copy (tuples of more
    /// than [`FIRST_SEGMENT`] values built by pushes).
    fn as_slice(&self) -> Cow<'_, [Value]> {
        match self.segments.as_slice() {
            [] => Cow::Borrowed(&[]),
            [one] => Cow::Borrowed(one),
            many => Cow::Owned(many.iter().flatten().cloned().collect()),
        }
    }
}

/// A borrowed view of one value inside a tuple. Never constructed: pointers to it point at a
/// value owned by an `rf_tuple`.
pub struct rf_value {
    _opaque: [u8; 0],
}

impl rf_tuple {
    /// Wraps values received from the network.
    pub(crate) fn from_tuple(values: Tuple) -> rf_tuple {
        rf_tuple {
            values: StableValues::from_vec(values),
            open: Vec::new(),
        }
    }

    /// The values, refusing a tuple with a table still open.
    pub(crate) fn sendable(&self) -> Result<Cow<'_, [Value]>, Error> {
        if self.open.is_empty() {
            Ok(self.values.as_slice())
        } else {
            Err(invalid(format!(
                "the tuple has {} table(s) still open (begin without end)",
                self.open.len()
            )))
        }
    }

    fn push(&mut self, value: Value) -> Result<(), Error> {
        match self.open.last_mut() {
            None => self.values.push(value),
            Some(top) => match &mut top.table {
                Value::Array(items) => items.push(value),
                Value::Dictionary(entries) => {
                    let key = top.pending_key.take().ok_or_else(|| {
                        invalid("a dictionary value must follow rf_tuple_push_key")
                    })?;
                    entries.push((key, value));
                }
                _ => unreachable!("only tables are open"),
            },
        }
        Ok(())
    }

    fn begin(&mut self, table: Value) -> Result<(), Error> {
        if self.open.len() >= RF_MAX_BUILD_DEPTH {
            return Err(Error::Limit(format!(
                "tables nested deeper than {RF_MAX_BUILD_DEPTH}"
            )));
        }
        let key_in_parent = match self.open.last_mut() {
            Some(OpenTable {
                table: Value::Dictionary(_),
                pending_key,
                ..
            }) => Some(
                pending_key
                    .take()
                    .ok_or_else(|| invalid("a dictionary value must follow rf_tuple_push_key"))?,
            ),
            _ => None,
        };
        self.open.push(OpenTable {
            table,
            key_in_parent,
            pending_key: None,
        });
        Ok(())
    }

    fn push_key(&mut self, key: &[u8]) -> Result<(), Error> {
        match self.open.last_mut() {
            Some(OpenTable {
                table: Value::Dictionary(_),
                pending_key: pending @ None,
                ..
            }) => {
                *pending = Some(ByteStr::copy_from_slice(key));
                Ok(())
            }
            Some(OpenTable {
                table: Value::Dictionary(_),
                ..
            }) => Err(invalid(
                "rf_tuple_push_key twice: the previous key has no value yet",
            )),
            _ => Err(invalid("rf_tuple_push_key outside a dictionary")),
        }
    }

    fn end(&mut self) -> Result<(), Error> {
        match self.open.last() {
            None => return Err(invalid("rf_tuple_end without an open table")),
            Some(top) if top.pending_key.is_some() => {
                return Err(invalid("rf_tuple_end after a key with no value"));
            }
            Some(_) => {}
        }
        let done = self.open.pop().expect("checked above");
        match (self.open.last_mut(), done.key_in_parent) {
            (None, _) => self.values.push(done.table),
            (
                Some(OpenTable {
                    table: Value::Array(items),
                    ..
                }),
                _,
            ) => items.push(done.table),
            (
                Some(OpenTable {
                    table: Value::Dictionary(entries),
                    ..
                }),
                Some(key),
            ) => entries.push((key, done.table)),
            (Some(_), _) => unreachable!("a table in a dictionary has a key"),
        }
        Ok(())
    }
}

/// Creates an empty tuple. The caller owns it and frees it with `rf_tuple_free` (or gives it to
/// `rf_*_return`, which consumes it). Never NULL (except on an internal panic).
#[no_mangle]
pub extern "C" fn rf_tuple_new() -> *mut rf_tuple {
    boundary! { Box::into_raw(Box::default()) }
}

/// Deep-copies a tuple, open tables included: the copy is independent of the original. NULL in,
/// NULL out. The caller owns the copy.
///
/// # Safety
/// `t` is NULL or a live tuple.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_clone(t: *const rf_tuple) -> *mut rf_tuple {
    boundary! {
        // SAFETY: the caller passes NULL or a live tuple.
        match unsafe { t.as_ref() } {
            Some(t) => Box::into_raw(Box::new(t.clone())),
            None => std::ptr::null_mut(),
        }
    }
}

/// Frees a tuple. NULL is a no-op. Values borrowed from it become invalid.
///
/// # Safety
/// `t` is NULL or a tuple of this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_free(t: *mut rf_tuple) {
    boundary! {
        if !t.is_null() {
            // SAFETY: a non-NULL `t` was created by this library (Box) and is freed once.
            drop(unsafe { Box::from_raw(t) });
        }
    }
}

/// The number of top-level values (tables still open are not counted). 0 for NULL.
///
/// # Safety
/// `t` is NULL or a live tuple.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_len(t: *const rf_tuple) -> usize {
    boundary! {
        // SAFETY: the caller passes NULL or a live tuple.
        unsafe { t.as_ref() }.map_or(0, |t| t.values.len())
    }
}

/// The value at top-level index `i`, or NULL when out of range (or `t` is NULL). Borrowed: valid
/// while the tuple lives (values never move, even when more are pushed onto it).
///
/// # Safety
/// `t` is NULL or a live tuple.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_get(t: *const rf_tuple, i: usize) -> *const rf_value {
    boundary! {
        // SAFETY: the caller passes NULL or a live tuple.
        unsafe { t.as_ref() }
            .and_then(|t| t.values.get(i))
            .map_or(std::ptr::null(), value_ptr)
    }
}

fn value_ptr(v: &Value) -> *const rf_value {
    (v as *const Value).cast()
}

/// # Safety
/// `v` is NULL or was returned by `rf_tuple_get`, `rf_value_index` or `rf_value_entry` for a
/// tuple that is still alive (values never move within a tuple, see [`StableValues`]).
unsafe fn value<'a>(v: *const rf_value, _: &str) -> Result<&'a Value, Error> {
    // SAFETY: every non-NULL `rf_value` pointer this library hands out is a `*const Value`
    // inside a live tuple (see `value_ptr`); the caller keeps the tuple alive.
    unsafe { v.cast::<Value>().as_ref() }.ok_or_else(|| invalid("value is NULL"))
}

/// A `CFrame` argument.
///
/// # Safety
/// `v` is NULL or points to a readable `rf_cframe`.
unsafe fn cframe<'a>(v: *const rf_cframe, _: &str) -> Result<&'a rf_cframe, Error> {
    // SAFETY: forwarded caller contract.
    unsafe { handle(v, "cframe") }
}

/// A tuple being built.
///
/// # Safety
/// `t` is NULL or a live tuple not used concurrently from another thread.
unsafe fn tuple_mut<'a>(t: *mut rf_tuple, _: &str) -> Result<&'a mut rf_tuple, Error> {
    // SAFETY: forwarded caller contract.
    unsafe { handle_mut(t, "tuple") }
}

/// Appends `nil`.
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_push_nil(t: *mut rf_tuple) -> rf_status {
    entry!(t = tuple_mut(t) => t.push(Value::Nil))
}

/// Appends a boolean.
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_push_boolean(t: *mut rf_tuple, v: bool) -> rf_status {
    entry!(t = tuple_mut(t) => t.push(Value::Boolean(v)))
}

/// Appends a number (any double, NaN and infinities included, bit pattern preserved).
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_push_number(t: *mut rf_tuple, v: f64) -> rf_status {
    entry!(t = tuple_mut(t) => t.push(Value::Number(v)))
}

/// Appends a string of `len` bytes, copied (binary-safe: NUL bytes allowed; `ptr` may be NULL
/// when `len` is 0).
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time; `ptr` is NULL or points to `len`
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_push_string(
    t: *mut rf_tuple,
    ptr: *const c_char,
    len: usize,
) -> rf_status {
    entry!(t = tuple_mut(t) => {
        // SAFETY: `ptr` points to `len` readable bytes (the `# Safety` section above).
        let bytes = unsafe { byte_slice(ptr.cast(), len, "string") }?;
        t.push(Value::String(ByteStr::copy_from_slice(bytes)))
    })
}

/// Appends a buffer of `len` bytes, copied.
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time; `ptr` is NULL or points to `len`
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_push_buffer(
    t: *mut rf_tuple,
    ptr: *const u8,
    len: usize,
) -> rf_status {
    entry!(t = tuple_mut(t) => {
        // SAFETY: `ptr` points to `len` readable bytes (the `# Safety` section above).
        let bytes = unsafe { byte_slice(ptr, len, "buffer") }?;
        t.push(Value::Buffer(ByteStr::copy_from_slice(bytes)))
    })
}

/// Appends a `Vector2`.
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_push_vector2(t: *mut rf_tuple, v: rf_vector2) -> rf_status {
    entry!(t = tuple_mut(t) => t.push(Value::Vector2(Vector2 { x: v.x, y: v.y })))
}

/// Appends a `Vector3`.
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_push_vector3(t: *mut rf_tuple, v: rf_vector3) -> rf_status {
    entry!(t = tuple_mut(t) => t.push(Value::Vector3(Vector3 { x: v.x, y: v.y, z: v.z })))
}

/// Appends a `CFrame` (copied from `*v`).
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time; `v` is NULL or points to a
/// readable `rf_cframe`.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_push_cframe(t: *mut rf_tuple, v: *const rf_cframe) -> rf_status {
    entry!(t = tuple_mut(t), c = cframe(v) => {
        t.push(Value::from(CFrame { position: c.position, rotation: c.rotation }))
    })
}

/// Appends a `Color3`.
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_push_color3(t: *mut rf_tuple, v: rf_color3) -> rf_status {
    entry!(t = tuple_mut(t) => t.push(Value::Color3(Color3 { r: v.r, g: v.g, b: v.b })))
}

/// Appends an instance reference (an engine-defined 64-bit id, opaque to the library).
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_push_instance(t: *mut rf_tuple, r#ref: u64) -> rf_status {
    entry!(t = tuple_mut(t) => t.push(Value::Instance(InstanceRef(r#ref))))
}

/// Opens an array: values pushed until the matching `rf_tuple_end` go inside it. Inside a
/// dictionary, call `rf_tuple_push_key` first. Nesting deeper than `RF_MAX_BUILD_DEPTH` is
/// `RF_ERR_LIMIT`; a misplaced call is `RF_ERR_INVALID_ARGUMENT` and changes nothing.
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_begin_array(t: *mut rf_tuple) -> rf_status {
    entry!(t = tuple_mut(t) => t.begin(Value::Array(Vec::new())))
}

/// Opens a dictionary: each value pushed inside it must be preceded by `rf_tuple_push_key`.
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_begin_dictionary(t: *mut rf_tuple) -> rf_status {
    entry!(t = tuple_mut(t) => t.begin(Value::Dictionary(Vec::new())))
}

/// Sets the key (a binary-safe string, copied) of the next value in the open dictionary.
/// Outside a dictionary, or twice in a row, it is `RF_ERR_INVALID_ARGUMENT`. Keys must be
/// unique within a dictionary: a repeated key is refused when the tuple is sent.
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time; `ptr` is NULL or points to `len`
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_push_key(
    t: *mut rf_tuple,
    ptr: *const c_char,
    len: usize,
) -> rf_status {
    entry!(t = tuple_mut(t) => {
        // SAFETY: `ptr` points to `len` readable bytes (the `# Safety` section above).
        t.push_key(unsafe { byte_slice(ptr.cast(), len, "key") }?)
    })
}

/// Closes the innermost open table. Without an open table, or right after a key with no value,
/// it is `RF_ERR_INVALID_ARGUMENT` and changes nothing.
///
/// # Safety
/// `t` is NULL or a live tuple used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn rf_tuple_end(t: *mut rf_tuple) -> rf_status {
    entry!(t = tuple_mut(t) => t.end())
}

/// The type of a value; `RF_NIL` for NULL.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple.
#[no_mangle]
pub unsafe extern "C" fn rf_value_type(v: *const rf_value) -> rf_type {
    boundary! {
        // SAFETY: the caller passes NULL or a value pointer from this library whose tuple lives.
        match unsafe { value(v, "value") } {
            Err(_) | Ok(Value::Nil) => rf_type::RF_NIL,
            Ok(Value::Boolean(_)) => rf_type::RF_BOOLEAN,
            Ok(Value::Number(_)) => rf_type::RF_NUMBER,
            Ok(Value::String(_)) => rf_type::RF_STRING,
            Ok(Value::Buffer(_)) => rf_type::RF_BUFFER,
            Ok(Value::Vector2(_)) => rf_type::RF_VECTOR2,
            Ok(Value::Vector3(_)) => rf_type::RF_VECTOR3,
            Ok(Value::CFrame(_)) => rf_type::RF_CFRAME,
            Ok(Value::Color3(_)) => rf_type::RF_COLOR3,
            Ok(Value::Instance(_)) => rf_type::RF_INSTANCE,
            Ok(Value::Array(_)) => rf_type::RF_ARRAY,
            Ok(Value::Dictionary(_)) => rf_type::RF_DICTIONARY,
        }
    }
}

impl super::PanicValue for rf_type {
    fn panic_value() -> Self {
        rf_type::RF_NIL
    }
}

/// Reads a value of one expected type into an out-parameter.
fn read<T>(v: &Value, out: &mut T, f: impl FnOnce(&Value) -> Option<T>) -> Result<(), Error> {
    *out = f(v).ok_or_else(|| invalid(format!("the value is a {}", v.type_name())))?;
    Ok(())
}

/// Reads a boolean. Another type is `RF_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_value_boolean(v: *const rf_value, out: *mut bool) -> rf_status {
    entry!(v = value(v), out = out_ptr(out) => read(v, out, Value::as_bool))
}

/// Reads a number.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_value_number(v: *const rf_value, out: *mut f64) -> rf_status {
    entry!(v = value(v), out = out_ptr(out) => read(v, out, Value::as_number))
}

/// Borrows a string's bytes (not NUL-terminated; may contain NULs). Valid while the tuple lives,
/// whatever is pushed onto it meanwhile.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple; `ptr` is NULL or valid for writes; `len`
/// is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_value_string(
    v: *const rf_value,
    ptr: *mut *const c_char,
    len: *mut usize,
) -> rf_status {
    let ptr = ptr.cast::<*const u8>();
    entry!(v = value(v), ptr = out_ptr(ptr), len = out_ptr(len) => {
        bytes_out(v, ptr, len, |v| match v {
            Value::String(s) => Some(s),
            _ => None,
        })
    })
}

/// Borrows a buffer's bytes. Valid while the tuple lives, whatever is pushed onto it meanwhile.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple; `ptr` is NULL or valid for writes; `len`
/// is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_value_buffer(
    v: *const rf_value,
    ptr: *mut *const u8,
    len: *mut usize,
) -> rf_status {
    entry!(v = value(v), ptr = out_ptr(ptr), len = out_ptr(len) => {
        bytes_out(v, ptr, len, |v| match v {
            Value::Buffer(b) => Some(b),
            _ => None,
        })
    })
}

/// Hands out the bytes of a string or buffer value.
fn bytes_out(
    v: &Value,
    ptr: &mut *const u8,
    len: &mut usize,
    f: impl FnOnce(&Value) -> Option<&ByteStr>,
) -> Result<(), Error> {
    let bytes = f(v).ok_or_else(|| invalid(format!("the value is a {}", v.type_name())))?;
    *ptr = bytes.as_ptr();
    *len = bytes.len();
    Ok(())
}

/// Reads a `Vector2`.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_value_vector2(v: *const rf_value, out: *mut rf_vector2) -> rf_status {
    entry!(v = value(v), out = out_ptr(out) => {
        read(v, out, |v| match v {
            Value::Vector2(v) => Some(rf_vector2 { x: v.x, y: v.y }),
            _ => None,
        })
    })
}

/// Reads a `Vector3`.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_value_vector3(v: *const rf_value, out: *mut rf_vector3) -> rf_status {
    entry!(v = value(v), out = out_ptr(out) => {
        read(v, out, |v| match v {
            Value::Vector3(v) => Some(rf_vector3 { x: v.x, y: v.y, z: v.z }),
            _ => None,
        })
    })
}

/// Reads a `CFrame`.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_value_cframe(v: *const rf_value, out: *mut rf_cframe) -> rf_status {
    entry!(v = value(v), out = out_ptr(out) => {
        read(v, out, |v| match v {
            Value::CFrame(c) => Some(rf_cframe { position: c.position, rotation: c.rotation }),
            _ => None,
        })
    })
}

/// Reads a `Color3`.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_value_color3(v: *const rf_value, out: *mut rf_color3) -> rf_status {
    entry!(v = value(v), out = out_ptr(out) => {
        read(v, out, |v| match v {
            Value::Color3(c) => Some(rf_color3 { r: c.r, g: c.g, b: c.b }),
            _ => None,
        })
    })
}

/// Reads an instance reference.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_value_instance(v: *const rf_value, out: *mut u64) -> rf_status {
    entry!(v = value(v), out = out_ptr(out) => {
        read(v, out, |v| match v {
            Value::Instance(r) => Some(r.0),
            _ => None,
        })
    })
}

/// The number of entries of an array or dictionary; 0 for any other value or NULL.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple.
#[no_mangle]
pub unsafe extern "C" fn rf_value_len(v: *const rf_value) -> usize {
    boundary! {
        // SAFETY: forwarded caller contract.
        match unsafe { value(v, "value") } {
            Ok(Value::Array(items)) => items.len(),
            Ok(Value::Dictionary(entries)) => entries.len(),
            _ => 0,
        }
    }
}

/// Element `i` of an array; NULL when `v` is not an array or `i` is out of range. Borrowed like
/// `v`.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple.
#[no_mangle]
pub unsafe extern "C" fn rf_value_index(v: *const rf_value, i: usize) -> *const rf_value {
    boundary! {
        // SAFETY: forwarded caller contract.
        match unsafe { value(v, "value") } {
            Ok(Value::Array(items)) => items.get(i).map_or(std::ptr::null(), value_ptr),
            _ => std::ptr::null(),
        }
    }
}

/// Entry `i` of a dictionary (in the order the sender built it): its key bytes (not
/// NUL-terminated) and its value, both borrowed like `v`. Not a dictionary, or `i` out of range,
/// is `RF_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `v` is NULL or a value handed out by a live tuple; `key` is NULL or valid for writes;
/// `key_len` is NULL or valid for writes; `value_out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rf_value_entry(
    v: *const rf_value,
    i: usize,
    key: *mut *const c_char,
    key_len: *mut usize,
    value_out: *mut *const rf_value,
) -> rf_status {
    entry!(
        v = value(v),
        key = out_ptr(key),
        key_len = out_ptr(key_len),
        value_out = out_ptr(value_out) => {
        let Value::Dictionary(entries) = v else {
            return Err(invalid(format!("the value is a {}, not a dictionary", v.type_name())));
        };
        let (k, item) = entries
            .get(i)
            .ok_or_else(|| invalid(format!("entry {i} of a dictionary of {}", entries.len())))?;
        *key = k.as_ptr().cast();
        *key_len = k.len();
        *value_out = value_ptr(item);
        Ok(())
    })
}
