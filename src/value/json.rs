//! A JSON form of values, for the command line (`remotefn call`) and for logs.
//!
//! Plain JSON maps onto Luau directly: `null`, booleans, numbers, strings, arrays and objects
//! (dictionaries). Game types and everything JSON cannot say are single-key objects whose key
//! starts with `$`:
//!
//! | Luau value | JSON form |
//! | --- | --- |
//! | `Vector2` | `{"$vector2": [x, y]}` |
//! | `Vector3` | `{"$vector3": [x, y, z]}` |
//! | `CFrame` | `{"$cframe": [px, py, pz, r00, r01, r02, r10, r11, r12, r20, r21, r22]}` |
//! | `Color3` | `{"$color3": [r, g, b]}` |
//! | Instance reference | `{"$instance": 42}` |
//! | `buffer` | `{"$buffer": "00ff10"}` (hex) |
//! | string that is not UTF-8 | `{"$bytes": "ff00"}` (hex) |
//! | NaN, infinities | `{"$number": "nan"}`, `"inf"`, `"-inf"` |
//!
//! A dictionary whose only key starts with `$` would be ambiguous; write it as
//! `{"$dict": {...}}`.

use super::{ByteStr, CFrame, Color3, InstanceRef, Value, Vector2, Vector3};
use serde_json::{json, Map, Number, Value as Json};

/// Converts a value to its JSON form.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        // Whole numbers print without a fraction, as Luau prints them.
        Value::Number(n)
            if n.fract() == 0.0 && n.abs() < 9.0e15 && !(*n == 0.0 && n.is_sign_negative()) =>
        {
            Json::Number(Number::from(*n as i64))
        }
        Value::Number(n) => match Number::from_f64(*n) {
            Some(num) => Json::Number(num),
            None if n.is_nan() => json!({"$number": "nan"}),
            None if *n > 0.0 => json!({"$number": "inf"}),
            None => json!({"$number": "-inf"}),
        },
        Value::String(s) => match std::str::from_utf8(s) {
            Ok(text) => Json::String(text.to_owned()),
            Err(_) => json!({ "$bytes": hex(s) }),
        },
        Value::Buffer(b) => json!({ "$buffer": hex(b) }),
        Value::Vector2(v) => json!({"$vector2": [v.x, v.y]}),
        Value::Vector3(v) => json!({"$vector3": [v.x, v.y, v.z]}),
        Value::CFrame(c) => {
            let all: Vec<f64> = c.position.iter().chain(&c.rotation).copied().collect();
            json!({ "$cframe": all })
        }
        Value::Color3(c) => json!({"$color3": [c.r, c.g, c.b]}),
        Value::Instance(r) => json!({"$instance": r.0}),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Dictionary(entries) => {
            let map: Map<String, Json> = entries
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), to_json(v)))
                .collect();
            if map.len() == 1 && map.keys().all(|k| k.starts_with('$')) {
                json!({ "$dict": map })
            } else {
                Json::Object(map)
            }
        }
    }
}

/// Why a JSON document is not a value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonValueError(String);

fn bad(msg: impl Into<String>) -> JsonValueError {
    JsonValueError(msg.into())
}

fn floats<const N: usize>(j: &Json, what: &str) -> Result<[f64; N], JsonValueError> {
    let items = j
        .as_array()
        .filter(|a| a.len() == N)
        .ok_or_else(|| bad(format!("{what} takes an array of {N} numbers")))?;
    let mut out = [0.0; N];
    for (slot, item) in out.iter_mut().zip(items) {
        *slot = item
            .as_f64()
            .ok_or_else(|| bad(format!("{what} takes an array of {N} numbers")))?;
    }
    Ok(out)
}

/// Converts a JSON document to a value, following the table in the module documentation.
pub fn from_json(j: &Json) -> Result<Value, JsonValueError> {
    Ok(match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => Value::Number(n.as_f64().ok_or_else(|| bad("number out of range"))?),
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(items.iter().map(from_json).collect::<Result<_, _>>()?),
        Json::Object(map) => {
            if map.len() == 1 {
                let (key, inner) = map.iter().next().expect("one entry");
                if key.starts_with('$') {
                    return tagged(key, inner);
                }
            }
            Value::Dictionary(
                map.iter()
                    .map(|(k, v)| Ok((ByteStr::from(k.as_str()), from_json(v)?)))
                    .collect::<Result<_, JsonValueError>>()?,
            )
        }
    })
}

fn tagged(key: &str, inner: &Json) -> Result<Value, JsonValueError> {
    Ok(match key {
        "$vector2" => {
            let [x, y] = floats(inner, "$vector2")?;
            Value::Vector2(Vector2 { x, y })
        }
        "$vector3" => {
            let [x, y, z] = floats(inner, "$vector3")?;
            Value::Vector3(Vector3 { x, y, z })
        }
        "$color3" => {
            let [r, g, b] = floats(inner, "$color3")?;
            Value::Color3(Color3 { r, g, b })
        }
        "$cframe" => {
            let all: [f64; 12] = floats(inner, "$cframe")?;
            let mut c = CFrame::default();
            c.position.copy_from_slice(&all[..3]);
            c.rotation.copy_from_slice(&all[3..]);
            Value::CFrame(Box::new(c))
        }
        "$instance" => Value::Instance(InstanceRef(
            inner
                .as_u64()
                .ok_or_else(|| bad("$instance takes an unsigned integer"))?,
        )),
        "$buffer" => Value::buffer(unhex(inner)?),
        "$bytes" => Value::string(unhex(inner)?),
        "$number" => Value::Number(match inner.as_str() {
            Some("nan") => f64::NAN,
            Some("inf") => f64::INFINITY,
            Some("-inf") => f64::NEG_INFINITY,
            _ => return Err(bad("$number takes \"nan\", \"inf\" or \"-inf\"")),
        }),
        "$dict" => match inner {
            Json::Object(map) => Value::Dictionary(
                map.iter()
                    .map(|(k, v)| Ok((ByteStr::from(k.as_str()), from_json(v)?)))
                    .collect::<Result<_, JsonValueError>>()?,
            ),
            _ => return Err(bad("$dict takes an object")),
        },
        other => return Err(bad(format!("unknown tagged form {other:?}"))),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(j: &Json) -> Result<Vec<u8>, JsonValueError> {
    let s = j.as_str().ok_or_else(|| bad("expected a hex string"))?;
    if s.len() % 2 != 0 {
        return Err(bad("hex string of odd length"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| bad("invalid hex digit")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn game_types_round_trip_through_json() {
        let v = Value::Array(vec![
            Value::Vector3(Vector3 {
                x: 1.0,
                y: 2.5,
                z: -3.0,
            }),
            Value::from(CFrame::default()),
            Value::Color3(Color3 {
                r: 1.0,
                g: 0.5,
                b: 0.0,
            }),
            Value::Instance(InstanceRef(7)),
            Value::buffer(vec![0u8, 255]),
            Value::string(&b"\xff"[..]),
            Value::Number(f64::INFINITY),
            Value::dictionary([("$odd", 1)]),
            Value::dictionary([("hp", 100), ("name", 3)]),
        ]);
        let j = to_json(&v);
        assert_eq!(from_json(&j).unwrap(), v);
    }

    #[test]
    fn malformed_tagged_forms_are_errors() {
        assert!(from_json(&json!({"$vector3": [1, 2]})).is_err());
        assert!(from_json(&json!({"$nope": 1})).is_err());
        assert!(from_json(&json!({"$buffer": "0"})).is_err());
    }
}
