//! The Luau value set that games pass through remotes, as a Rust type.
//!
//! A [`Tuple`] is what `InvokeServer(...)` takes and what `OnServerInvoke` returns: an ordered
//! list of [`Value`]s. Roblox's argument limitations hold by construction: dictionary keys are
//! strings, tables are copied (a `Value` owns its contents), and there is no way to express a
//! function or a metatable. Depth is bounded when values are encoded and decoded (see [`codec`](crate::value::codec)).
//!
//! Strings are byte strings, as in Luau: they may hold NUL bytes or bytes that are not UTF-8.
//! They are stored as [`ByteStr`]: short ones inline, long ones as a view into the received
//! frame rather than a copy.

mod bytestr;
pub mod codec;
#[cfg(feature = "json")]
pub mod json;

pub use bytestr::ByteStr;
use std::ops::{Deref, DerefMut};

/// A 2D vector (`Vector2`).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Vector2 {
    /// X component.
    pub x: f64,
    /// Y component.
    pub y: f64,
}

/// A 3D vector (`Vector3`).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Vector3 {
    /// X component.
    pub x: f64,
    /// Y component.
    pub y: f64,
    /// Z component.
    pub z: f64,
}

/// A colour with components in 0..=1 (`Color3`).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Color3 {
    /// Red.
    pub r: f64,
    /// Green.
    pub g: f64,
    /// Blue.
    pub b: f64,
}

/// A coordinate frame (`CFrame`): a position and a row-major 3x3 rotation matrix.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct CFrame {
    /// Position x, y, z.
    pub position: [f64; 3],
    /// Rotation matrix, row-major.
    pub rotation: [f64; 9],
}

impl Default for CFrame {
    /// The identity frame at the origin.
    fn default() -> Self {
        CFrame {
            position: [0.0; 3],
            rotation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        }
    }
}

/// An engine-defined reference to an object (`Instance`), opaque to the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InstanceRef(pub u64);

/// One Luau value.
///
/// Equality is exact: numbers compare by their bit pattern, so `NaN == NaN` when the payloads
/// match and `0.0 != -0.0`. Two values are equal exactly when they encode to the same bytes.
#[derive(Clone, Debug, Default)]
pub enum Value {
    /// `nil`.
    #[default]
    Nil,
    /// `true` / `false`.
    Boolean(bool),
    /// A Luau number (an IEEE 754 double).
    Number(f64),
    /// A byte string (binary-safe).
    String(ByteStr),
    /// A `buffer`: raw bytes.
    Buffer(ByteStr),
    /// `Vector2`.
    Vector2(Vector2),
    /// `Vector3`.
    Vector3(Vector3),
    /// `CFrame` (boxed: it is 96 bytes, and keeping it out of line keeps every other value
    /// small).
    CFrame(Box<CFrame>),
    /// `Color3`.
    Color3(Color3),
    /// An object reference.
    Instance(InstanceRef),
    /// An array table (`{a, b, c}`).
    Array(Vec<Value>),
    /// A dictionary table with string keys, in insertion order.
    Dictionary(Vec<(ByteStr, Value)>),
}

fn same_floats(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        match (self, other) {
            (Nil, Nil) => true,
            (Boolean(a), Boolean(b)) => a == b,
            (Number(a), Number(b)) => a.to_bits() == b.to_bits(),
            (String(a), String(b)) | (Buffer(a), Buffer(b)) => a == b,
            (Vector2(a), Vector2(b)) => same_floats(&[a.x, a.y], &[b.x, b.y]),
            (Vector3(a), Vector3(b)) => same_floats(&[a.x, a.y, a.z], &[b.x, b.y, b.z]),
            (Color3(a), Color3(b)) => same_floats(&[a.r, a.g, a.b], &[b.r, b.g, b.b]),
            (CFrame(a), CFrame(b)) => {
                same_floats(&a.position, &b.position) && same_floats(&a.rotation, &b.rotation)
            }
            (Instance(a), Instance(b)) => a == b,
            (Array(a), Array(b)) => a == b,
            (Dictionary(a), Dictionary(b)) => a == b,
            _ => false,
        }
    }
}

impl Value {
    /// A string value from anything byte-like.
    pub fn string(s: impl Into<ByteStr>) -> Value {
        Value::String(s.into())
    }

    /// A buffer value from anything byte-like.
    pub fn buffer(b: impl Into<ByteStr>) -> Value {
        Value::Buffer(b.into())
    }

    /// A dictionary from `(key, value)` pairs.
    pub fn dictionary<K: Into<ByteStr>, V: Into<Value>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Value {
        Value::Dictionary(
            entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The Luau type name of this value (`"nil"`, `"number"`, `"Vector3"`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Boolean(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Buffer(_) => "buffer",
            Value::Vector2(_) => "Vector2",
            Value::Vector3(_) => "Vector3",
            Value::CFrame(_) => "CFrame",
            Value::Color3(_) => "Color3",
            Value::Instance(_) => "Instance",
            Value::Array(_) => "array",
            Value::Dictionary(_) => "dictionary",
        }
    }

    /// The number, if this is one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The string as UTF-8 text, if this is a string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }

    /// The raw bytes of a string or a buffer.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::String(s) | Value::Buffer(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value stored under `key` in a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dictionary(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

macro_rules! number_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Value {
                Value::Number(n as f64)
            }
        }
    )*};
}
number_from!(f64, f32, i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(ByteStr::from(s))
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(ByteStr::from(s))
    }
}
impl From<Vector2> for Value {
    fn from(v: Vector2) -> Value {
        Value::Vector2(v)
    }
}
impl From<Vector3> for Value {
    fn from(v: Vector3) -> Value {
        Value::Vector3(v)
    }
}
impl From<CFrame> for Value {
    fn from(v: CFrame) -> Value {
        Value::CFrame(Box::new(v))
    }
}
impl From<Color3> for Value {
    fn from(v: Color3) -> Value {
        Value::Color3(v)
    }
}
impl From<InstanceRef> for Value {
    fn from(v: InstanceRef) -> Value {
        Value::Instance(v)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Value {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Nil, Into::into)
    }
}

/// An ordered list of values: the arguments of a call or the values it returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tuple(pub Vec<Value>);

impl Tuple {
    /// An empty tuple.
    pub fn new() -> Tuple {
        Tuple(Vec::new())
    }

    /// Consumes the tuple, giving its values.
    pub fn into_vec(self) -> Vec<Value> {
        self.0
    }
}

impl Deref for Tuple {
    type Target = Vec<Value>;
    fn deref(&self) -> &Vec<Value> {
        &self.0
    }
}

impl DerefMut for Tuple {
    fn deref_mut(&mut self) -> &mut Vec<Value> {
        &mut self.0
    }
}

impl From<Vec<Value>> for Tuple {
    fn from(values: Vec<Value>) -> Tuple {
        Tuple(values)
    }
}

impl FromIterator<Value> for Tuple {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Tuple {
        Tuple(iter.into_iter().collect())
    }
}

impl IntoIterator for Tuple {
    type Item = Value;
    type IntoIter = std::vec::IntoIter<Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Builds a [`Tuple`] from expressions convertible into [`Value`]:
/// `tuple![1, "two", true, Vector3 { x: 1.0, y: 2.0, z: 3.0 }]`.
#[macro_export]
macro_rules! tuple {
    () => { $crate::Tuple::new() };
    ($($value:expr),+ $(,)?) => {
        $crate::Tuple(vec![$($crate::Value::from($value)),+])
    };
}
