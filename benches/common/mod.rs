//! Fixtures shared by the codec benchmarks.

use remotefn::{tuple, Value, Vector3};

/// The tuple of the codec target: `(42, "sword_of_doom", Vector3, true, {hp = 100, mana = 55.5})`.
pub fn five_values() -> remotefn::Tuple {
    tuple![
        42,
        "sword_of_doom",
        Vector3 {
            x: 1.5,
            y: 20.0,
            z: -3.25
        },
        true,
        Value::dictionary([("hp", Value::from(100)), ("mana", Value::from(55.5))]),
    ]
}
