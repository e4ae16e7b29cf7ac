//! Roblox's value types as Luau userdata: `Vector2`, `Vector3`, `CFrame`, `Color3`, with the
//! constructors, properties, methods and operators scripts use. Each wraps the wire type of
//! [`crate::value`], so a value crosses a remote without conversion. They are immutable, as in
//! Roblox (`v.X = 1` is an error). Components are doubles (Roblox stores float32).

use crate::value::{CFrame, Color3, Vector2, Vector3};
use mlua::{
    Lua, MetaMethod, Result, Table, UserData, UserDataFields, UserDataMethods, UserDataRef,
    Value as LuaValue,
};

/// `Vector2` in a script.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LuaVector2(pub Vector2);
/// `Vector3` in a script.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LuaVector3(pub Vector3);
/// `CFrame` in a script.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LuaCFrame(pub CFrame);
/// `Color3` in a script.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LuaColor3(pub Color3);

fn bad_operands(op: &str, a: &LuaValue, b: &LuaValue) -> mlua::Error {
    mlua::Error::runtime(format!(
        "attempt to perform arithmetic ({op}) on {} and {}",
        type_of(a),
        type_of(b)
    ))
}

/// The Roblox `typeof` of a value, for error messages.
pub(crate) fn type_of(v: &LuaValue) -> String {
    if let LuaValue::UserData(ud) = v {
        for (is, name) in [
            (ud.is::<LuaVector2>(), "Vector2"),
            (ud.is::<LuaVector3>(), "Vector3"),
            (ud.is::<LuaCFrame>(), "CFrame"),
            (ud.is::<LuaColor3>(), "Color3"),
        ] {
            if is {
                return name.to_owned();
            }
        }
    }
    v.type_name().to_owned()
}

fn number(v: &LuaValue) -> Option<f64> {
    match v {
        LuaValue::Integer(i) => Some(*i as f64),
        LuaValue::Number(n) => Some(*n),
        _ => None,
    }
}

fn userdata<T: 'static + Copy>(v: &LuaValue) -> Option<T> {
    match v {
        LuaValue::UserData(ud) => ud.borrow::<T>().ok().map(|r| *r),
        _ => None,
    }
}

fn fmt_number(n: f64) -> String {
    // Luau's tostring of a number: integers without a fraction, others shortest round trip.
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn join(parts: &[f64]) -> String {
    parts
        .iter()
        .map(|n| fmt_number(*n))
        .collect::<Vec<_>>()
        .join(", ")
}

macro_rules! vector_ops {
    ($methods:ident, $ty:ident, $name:literal, [$($field:ident),+]) => {
        $methods.add_meta_function(MetaMethod::Add, |_, (a, b): (LuaValue, LuaValue)| {
            match (userdata::<$ty>(&a), userdata::<$ty>(&b)) {
                (Some(a), Some(b)) => Ok($ty(Inner { $($field: a.0.$field + b.0.$field),+ })),
                _ => Err(bad_operands("add", &a, &b)),
            }
        });
        $methods.add_meta_function(MetaMethod::Sub, |_, (a, b): (LuaValue, LuaValue)| {
            match (userdata::<$ty>(&a), userdata::<$ty>(&b)) {
                (Some(a), Some(b)) => Ok($ty(Inner { $($field: a.0.$field - b.0.$field),+ })),
                _ => Err(bad_operands("sub", &a, &b)),
            }
        });
        $methods.add_meta_function(MetaMethod::Mul, |_, (a, b): (LuaValue, LuaValue)| {
            match (userdata::<$ty>(&a), userdata::<$ty>(&b), number(&a), number(&b)) {
                (Some(a), Some(b), _, _) => Ok($ty(Inner { $($field: a.0.$field * b.0.$field),+ })),
                (Some(v), None, _, Some(k)) | (None, Some(v), Some(k), _) => {
                    Ok($ty(Inner { $($field: v.0.$field * k),+ }))
                }
                _ => Err(bad_operands("mul", &a, &b)),
            }
        });
        $methods.add_meta_function(MetaMethod::Div, |_, (a, b): (LuaValue, LuaValue)| {
            match (userdata::<$ty>(&a), userdata::<$ty>(&b), number(&a), number(&b)) {
                (Some(a), Some(b), _, _) => Ok($ty(Inner { $($field: a.0.$field / b.0.$field),+ })),
                (Some(v), None, _, Some(k)) => Ok($ty(Inner { $($field: v.0.$field / k),+ })),
                (None, Some(v), Some(k), _) => Ok($ty(Inner { $($field: k / v.0.$field),+ })),
                _ => Err(bad_operands("div", &a, &b)),
            }
        });
        $methods.add_meta_method(MetaMethod::Unm, |_, v, ()| {
            Ok($ty(Inner { $($field: -v.0.$field),+ }))
        });
        $methods.add_meta_function(MetaMethod::Eq, |_, (a, b): (LuaValue, LuaValue)| {
            Ok(match (userdata::<$ty>(&a), userdata::<$ty>(&b)) {
                (Some(a), Some(b)) => true $(&& a.0.$field == b.0.$field)+,
                _ => false,
            })
        });
        $methods.add_meta_method(MetaMethod::ToString, |_, v, ()| {
            Ok(join(&[$(v.0.$field),+]))
        });
        $methods.add_method("Dot", |_, v, other: UserDataRef<$ty>| {
            Ok(0.0 $(+ v.0.$field * other.0.$field)+)
        });
        $methods.add_method("Lerp", |_, v, (goal, alpha): (UserDataRef<$ty>, f64)| {
            Ok($ty(Inner { $($field: v.0.$field + (goal.0.$field - v.0.$field) * alpha),+ }))
        });
        $methods.add_method("FuzzyEq", |_, v, (other, epsilon): (UserDataRef<$ty>, Option<f64>)| {
            let epsilon = epsilon.unwrap_or(1e-5);
            Ok(true $(&& (v.0.$field - other.0.$field).abs() <= epsilon)+)
        });
    };
}

fn magnitude(parts: &[f64]) -> f64 {
    parts.iter().map(|p| p * p).sum::<f64>().sqrt()
}

impl UserData for LuaVector2 {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(MetaMethod::Type, "Vector2");
        fields.add_field_method_get("X", |_, v| Ok(v.0.x));
        fields.add_field_method_get("Y", |_, v| Ok(v.0.y));
        fields.add_field_method_get("Magnitude", |_, v| Ok(magnitude(&[v.0.x, v.0.y])));
        fields.add_field_method_get("Unit", |_, v| {
            let m = magnitude(&[v.0.x, v.0.y]);
            Ok(LuaVector2(Vector2 {
                x: v.0.x / m,
                y: v.0.y / m,
            }))
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        type Inner = Vector2;
        vector_ops!(methods, LuaVector2, "Vector2", [x, y]);
        methods.add_method("Cross", |_, v, o: UserDataRef<LuaVector2>| {
            Ok(v.0.x * o.0.y - v.0.y * o.0.x)
        });
    }
}

impl UserData for LuaVector3 {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(MetaMethod::Type, "Vector3");
        fields.add_field_method_get("X", |_, v| Ok(v.0.x));
        fields.add_field_method_get("Y", |_, v| Ok(v.0.y));
        fields.add_field_method_get("Z", |_, v| Ok(v.0.z));
        fields.add_field_method_get("Magnitude", |_, v| Ok(magnitude(&[v.0.x, v.0.y, v.0.z])));
        fields.add_field_method_get("Unit", |_, v| Ok(LuaVector3(unit(v.0))));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        type Inner = Vector3;
        vector_ops!(methods, LuaVector3, "Vector3", [x, y, z]);
        methods.add_method("Cross", |_, v, o: UserDataRef<LuaVector3>| {
            Ok(LuaVector3(cross(v.0, o.0)))
        });
    }
}

fn unit(v: Vector3) -> Vector3 {
    let m = magnitude(&[v.x, v.y, v.z]);
    Vector3 {
        x: v.x / m,
        y: v.y / m,
        z: v.z / m,
    }
}

fn cross(a: Vector3, b: Vector3) -> Vector3 {
    Vector3 {
        x: a.y * b.z - a.z * b.y,
        y: a.z * b.x - a.x * b.z,
        z: a.x * b.y - a.y * b.x,
    }
}

fn v3(x: f64, y: f64, z: f64) -> Vector3 {
    Vector3 { x, y, z }
}

impl UserData for LuaColor3 {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(MetaMethod::Type, "Color3");
        fields.add_field_method_get("R", |_, c| Ok(c.0.r));
        fields.add_field_method_get("G", |_, c| Ok(c.0.g));
        fields.add_field_method_get("B", |_, c| Ok(c.0.b));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_function(MetaMethod::Eq, |_, (a, b): (LuaValue, LuaValue)| {
            Ok(
                match (userdata::<LuaColor3>(&a), userdata::<LuaColor3>(&b)) {
                    (Some(a), Some(b)) => a.0.r == b.0.r && a.0.g == b.0.g && a.0.b == b.0.b,
                    _ => false,
                },
            )
        });
        methods.add_meta_method(MetaMethod::ToString, |_, c, ()| {
            Ok(join(&[c.0.r, c.0.g, c.0.b]))
        });
        methods.add_method(
            "Lerp",
            |_, c, (goal, alpha): (UserDataRef<LuaColor3>, f64)| {
                let mix = |a: f64, b: f64| a + (b - a) * alpha;
                Ok(LuaColor3(Color3 {
                    r: mix(c.0.r, goal.0.r),
                    g: mix(c.0.g, goal.0.g),
                    b: mix(c.0.b, goal.0.b),
                }))
            },
        );
        methods.add_method("ToHex", |_, c, ()| {
            let byte = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            Ok(format!(
                "{:02x}{:02x}{:02x}",
                byte(c.0.r),
                byte(c.0.g),
                byte(c.0.b)
            ))
        });
    }
}

/// Row-major 3x3 products and the rigid-transform algebra of `CFrame`.
mod frame {
    use crate::value::{CFrame, Vector3};

    pub fn rotate(r: &[f64; 9], v: Vector3) -> Vector3 {
        Vector3 {
            x: r[0] * v.x + r[1] * v.y + r[2] * v.z,
            y: r[3] * v.x + r[4] * v.y + r[5] * v.z,
            z: r[6] * v.x + r[7] * v.y + r[8] * v.z,
        }
    }

    pub fn multiply(a: &[f64; 9], b: &[f64; 9]) -> [f64; 9] {
        let mut out = [0.0; 9];
        for row in 0..3 {
            for col in 0..3 {
                out[row * 3 + col] = (0..3).map(|k| a[row * 3 + k] * b[k * 3 + col]).sum();
            }
        }
        out
    }

    pub fn transpose(r: &[f64; 9]) -> [f64; 9] {
        [r[0], r[3], r[6], r[1], r[4], r[7], r[2], r[5], r[8]]
    }

    pub fn position(cf: &CFrame) -> Vector3 {
        Vector3 {
            x: cf.position[0],
            y: cf.position[1],
            z: cf.position[2],
        }
    }

    pub fn point(cf: &CFrame, v: Vector3) -> Vector3 {
        let r = rotate(&cf.rotation, v);
        Vector3 {
            x: r.x + cf.position[0],
            y: r.y + cf.position[1],
            z: r.z + cf.position[2],
        }
    }

    pub fn compose(a: &CFrame, b: &CFrame) -> CFrame {
        let p = point(a, position(b));
        CFrame {
            position: [p.x, p.y, p.z],
            rotation: multiply(&a.rotation, &b.rotation),
        }
    }

    pub fn inverse(cf: &CFrame) -> CFrame {
        let rotation = transpose(&cf.rotation);
        let p = rotate(&rotation, position(cf));
        CFrame {
            position: [-p.x, -p.y, -p.z],
            rotation,
        }
    }

    /// `CFrame.Angles(rx, ry, rz)`: rotation about X, then Y, then Z, in object space (the
    /// product Rx * Ry * Rz).
    pub fn angles(rx: f64, ry: f64, rz: f64) -> [f64; 9] {
        let (sx, cx) = rx.sin_cos();
        let (sy, cy) = ry.sin_cos();
        let (sz, cz) = rz.sin_cos();
        let x = [1.0, 0.0, 0.0, 0.0, cx, -sx, 0.0, sx, cx];
        let y = [cy, 0.0, sy, 0.0, 1.0, 0.0, -sy, 0.0, cy];
        let z = [cz, -sz, 0.0, sz, cz, 0.0, 0.0, 0.0, 1.0];
        multiply(&multiply(&x, &y), &z)
    }
}

impl UserData for LuaCFrame {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(MetaMethod::Type, "CFrame");
        fields.add_field_method_get("Position", |_, cf| Ok(LuaVector3(frame::position(&cf.0))));
        fields.add_field_method_get("p", |_, cf| Ok(LuaVector3(frame::position(&cf.0))));
        fields.add_field_method_get("X", |_, cf| Ok(cf.0.position[0]));
        fields.add_field_method_get("Y", |_, cf| Ok(cf.0.position[1]));
        fields.add_field_method_get("Z", |_, cf| Ok(cf.0.position[2]));
        fields.add_field_method_get("Rotation", |_, cf| {
            Ok(LuaCFrame(CFrame {
                position: [0.0; 3],
                rotation: cf.0.rotation,
            }))
        });
        fields.add_field_method_get("LookVector", |_, cf| {
            let r = &cf.0.rotation;
            Ok(LuaVector3(v3(-r[2], -r[5], -r[8])))
        });
        fields.add_field_method_get("RightVector", |_, cf| {
            let r = &cf.0.rotation;
            Ok(LuaVector3(v3(r[0], r[3], r[6])))
        });
        fields.add_field_method_get("UpVector", |_, cf| {
            let r = &cf.0.rotation;
            Ok(LuaVector3(v3(r[1], r[4], r[7])))
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_function(MetaMethod::Mul, |lua, (a, b): (LuaValue, LuaValue)| {
            let Some(cf) = userdata::<LuaCFrame>(&a) else {
                return Err(bad_operands("mul", &a, &b));
            };
            if let Some(other) = userdata::<LuaCFrame>(&b) {
                Ok(LuaValue::UserData(lua.create_userdata(LuaCFrame(
                    frame::compose(&cf.0, &other.0),
                ))?))
            } else if let Some(v) = userdata::<LuaVector3>(&b) {
                Ok(LuaValue::UserData(
                    lua.create_userdata(LuaVector3(frame::point(&cf.0, v.0)))?,
                ))
            } else {
                Err(bad_operands("mul", &a, &b))
            }
        });
        methods.add_meta_function(MetaMethod::Add, |_, (a, b): (LuaValue, LuaValue)| {
            match (userdata::<LuaCFrame>(&a), userdata::<LuaVector3>(&b)) {
                (Some(cf), Some(v)) => Ok(translate(cf, v.0, 1.0)),
                _ => Err(bad_operands("add", &a, &b)),
            }
        });
        methods.add_meta_function(MetaMethod::Sub, |_, (a, b): (LuaValue, LuaValue)| {
            match (userdata::<LuaCFrame>(&a), userdata::<LuaVector3>(&b)) {
                (Some(cf), Some(v)) => Ok(translate(cf, v.0, -1.0)),
                _ => Err(bad_operands("sub", &a, &b)),
            }
        });
        methods.add_meta_function(MetaMethod::Eq, |_, (a, b): (LuaValue, LuaValue)| {
            Ok(
                match (userdata::<LuaCFrame>(&a), userdata::<LuaCFrame>(&b)) {
                    (Some(a), Some(b)) => {
                        a.0.position == b.0.position && a.0.rotation == b.0.rotation
                    }
                    _ => false,
                },
            )
        });
        methods.add_meta_method(MetaMethod::ToString, |_, cf, ()| {
            let mut parts = cf.0.position.to_vec();
            parts.extend_from_slice(&cf.0.rotation);
            Ok(join(&parts))
        });
        methods.add_method("Inverse", |_, cf, ()| Ok(LuaCFrame(frame::inverse(&cf.0))));
        methods.add_method("GetComponents", |_, cf, ()| {
            let mut parts = cf.0.position.to_vec();
            parts.extend_from_slice(&cf.0.rotation);
            Ok(mlua::Variadic::from_iter(parts))
        });
        methods.add_method("ToWorldSpace", |_, cf, other: UserDataRef<LuaCFrame>| {
            Ok(LuaCFrame(frame::compose(&cf.0, &other.0)))
        });
        methods.add_method("ToObjectSpace", |_, cf, other: UserDataRef<LuaCFrame>| {
            Ok(LuaCFrame(frame::compose(&frame::inverse(&cf.0), &other.0)))
        });
        methods.add_method("PointToWorldSpace", |_, cf, v: UserDataRef<LuaVector3>| {
            Ok(LuaVector3(frame::point(&cf.0, v.0)))
        });
        methods.add_method("PointToObjectSpace", |_, cf, v: UserDataRef<LuaVector3>| {
            Ok(LuaVector3(frame::point(&frame::inverse(&cf.0), v.0)))
        });
        methods.add_method("VectorToWorldSpace", |_, cf, v: UserDataRef<LuaVector3>| {
            Ok(LuaVector3(frame::rotate(&cf.0.rotation, v.0)))
        });
        methods.add_method(
            "VectorToObjectSpace",
            |_, cf, v: UserDataRef<LuaVector3>| {
                Ok(LuaVector3(frame::rotate(
                    &frame::transpose(&cf.0.rotation),
                    v.0,
                )))
            },
        );
    }
}

fn translate(cf: LuaCFrame, v: Vector3, sign: f64) -> LuaCFrame {
    let mut out = cf.0;
    out.position[0] += sign * v.x;
    out.position[1] += sign * v.y;
    out.position[2] += sign * v.z;
    LuaCFrame(out)
}

fn args_numbers(args: &mlua::Variadic<LuaValue>, what: &str) -> Result<Vec<f64>> {
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            number(a).ok_or_else(|| {
                mlua::Error::runtime(format!(
                    "invalid argument #{} to '{what}' (number expected, got {})",
                    i + 1,
                    type_of(a)
                ))
            })
        })
        .collect()
}

/// `CFrame.new(...)`: identity; a position (numbers or a `Vector3`); a position looking at a
/// point; or a position and the nine rotation components.
fn cframe_new(args: mlua::Variadic<LuaValue>) -> Result<LuaCFrame> {
    if let [a] = &args[..] {
        if let Some(p) = userdata::<LuaVector3>(a) {
            return Ok(LuaCFrame(CFrame {
                position: [p.0.x, p.0.y, p.0.z],
                ..CFrame::default()
            }));
        }
    }
    if let [a, b] = &args[..] {
        if let (Some(eye), Some(target)) = (userdata::<LuaVector3>(a), userdata::<LuaVector3>(b)) {
            return Ok(LuaCFrame(look_at(eye.0, target.0)));
        }
    }
    let n = args_numbers(&args, "CFrame.new")?;
    match n.len() {
        0 => Ok(LuaCFrame(CFrame::default())),
        3 => Ok(LuaCFrame(CFrame {
            position: [n[0], n[1], n[2]],
            ..CFrame::default()
        })),
        12 => {
            let mut rotation = [0.0; 9];
            rotation.copy_from_slice(&n[3..]);
            Ok(LuaCFrame(CFrame {
                position: [n[0], n[1], n[2]],
                rotation,
            }))
        }
        k => Err(mlua::Error::runtime(format!(
            "CFrame.new takes 0, 3 or 12 numbers, a Vector3, or two Vector3s; got {k} numbers"
        ))),
    }
}

fn look_at(eye: Vector3, target: Vector3) -> CFrame {
    let forward = unit(v3(target.x - eye.x, target.y - eye.y, target.z - eye.z));
    let up = if forward.y.abs() > 0.9999 {
        v3(0.0, 0.0, 1.0)
    } else {
        v3(0.0, 1.0, 0.0)
    };
    let right = unit(cross(forward, up));
    let up = cross(right, forward);
    // Columns: right, up, back (-forward).
    CFrame {
        position: [eye.x, eye.y, eye.z],
        rotation: [
            right.x, up.x, -forward.x, right.y, up.y, -forward.y, right.z, up.z, -forward.z,
        ],
    }
}

fn components(args: &mlua::Variadic<f64>, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| args.get(i).copied().unwrap_or(0.0))
        .collect()
}

/// Adds the constructors (`Vector2`, `Vector3`, `CFrame`, `Color3` tables) to `globals`.
pub(crate) fn install(lua: &Lua, globals: &Table) -> Result<()> {
    let vector2 = lua.create_table()?;
    vector2.set(
        "new",
        lua.create_function(|_, a: mlua::Variadic<f64>| {
            let c = components(&a, 2);
            Ok(LuaVector2(Vector2 { x: c[0], y: c[1] }))
        })?,
    )?;
    vector2.set("zero", LuaVector2(Vector2 { x: 0.0, y: 0.0 }))?;
    vector2.set("one", LuaVector2(Vector2 { x: 1.0, y: 1.0 }))?;
    vector2.set("xAxis", LuaVector2(Vector2 { x: 1.0, y: 0.0 }))?;
    vector2.set("yAxis", LuaVector2(Vector2 { x: 0.0, y: 1.0 }))?;
    globals.set("Vector2", vector2)?;

    let vector3 = lua.create_table()?;
    vector3.set(
        "new",
        lua.create_function(|_, a: mlua::Variadic<f64>| {
            let c = components(&a, 3);
            Ok(LuaVector3(v3(c[0], c[1], c[2])))
        })?,
    )?;
    vector3.set("zero", LuaVector3(v3(0.0, 0.0, 0.0)))?;
    vector3.set("one", LuaVector3(v3(1.0, 1.0, 1.0)))?;
    vector3.set("xAxis", LuaVector3(v3(1.0, 0.0, 0.0)))?;
    vector3.set("yAxis", LuaVector3(v3(0.0, 1.0, 0.0)))?;
    vector3.set("zAxis", LuaVector3(v3(0.0, 0.0, 1.0)))?;
    globals.set("Vector3", vector3)?;

    let cframe = lua.create_table()?;
    cframe.set("new", lua.create_function(|_, a| cframe_new(a))?)?;
    let angles = lua.create_function(|_, (rx, ry, rz): (f64, f64, f64)| {
        Ok(LuaCFrame(CFrame {
            position: [0.0; 3],
            rotation: frame::angles(rx, ry, rz),
        }))
    })?;
    cframe.set("Angles", angles.clone())?;
    cframe.set("fromEulerAnglesXYZ", angles)?;
    cframe.set(
        "lookAt",
        lua.create_function(
            |_, (eye, target): (UserDataRef<LuaVector3>, UserDataRef<LuaVector3>)| {
                Ok(LuaCFrame(look_at(eye.0, target.0)))
            },
        )?,
    )?;
    cframe.set("identity", LuaCFrame(CFrame::default()))?;
    globals.set("CFrame", cframe)?;

    let color3 = lua.create_table()?;
    color3.set(
        "new",
        lua.create_function(|_, a: mlua::Variadic<f64>| {
            let c = components(&a, 3);
            Ok(LuaColor3(Color3 {
                r: c[0],
                g: c[1],
                b: c[2],
            }))
        })?,
    )?;
    color3.set(
        "fromRGB",
        lua.create_function(|_, a: mlua::Variadic<f64>| {
            let c = components(&a, 3);
            Ok(LuaColor3(Color3 {
                r: c[0] / 255.0,
                g: c[1] / 255.0,
                b: c[2] / 255.0,
            }))
        })?,
    )?;
    color3.set(
        "fromHex",
        lua.create_function(|_, hex: String| {
            let digits = hex.trim_start_matches('#');
            let value = u32::from_str_radix(digits, 16)
                .ok()
                .filter(|_| digits.len() == 6)
                .ok_or_else(|| {
                    mlua::Error::runtime(format!("Unable to convert {hex:?} to Color3"))
                })?;
            let byte = |shift: u32| f64::from((value >> shift) & 0xff) / 255.0;
            Ok(LuaColor3(Color3 {
                r: byte(16),
                g: byte(8),
                b: byte(0),
            }))
        })?,
    )?;
    globals.set("Color3", color3)?;
    Ok(())
}
