//! Luau values to and from the wire's [`Value`]s, with Roblox's rules for what a remote
//! carries: tables are copied; an array is a table with keys `1..n` and no holes, a dictionary
//! one whose keys are all strings; functions, threads, coroutines and mixed tables are errors.
//! Metatables do not cross (as in Roblox), except a `Player`'s, which travels as a reference to
//! that player.

use super::types::{type_of, LuaCFrame, LuaColor3, LuaVector2, LuaVector3};
use crate::value::{ByteStr, InstanceRef, Value, Vector3};
use mlua::{Function, Lua, MultiValue, Result, Table, Value as LuaValue};

/// Tables nested deeper than this are refused (a table that contains itself would otherwise
/// never end).
const MAX_DEPTH: usize = 64;

/// The registry key of the prelude's function that says which player a table is, if any.
pub(crate) const PLAYER_ID_OF: &str = "remotefn.player_id_of";
/// The registry key of the prelude's function that gives the `Player` of an id.
pub(crate) const PLAYER_OF: &str = "remotefn.player_of";

/// The host's player handles (see [`super::players`]).
pub(crate) fn handles(lua: &Lua) -> super::players::Handles {
    lua.app_data_ref::<super::players::Handles>()
        .map(|h| h.clone())
        .unwrap_or_default()
}

fn refuse(what: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(what.to_string())
}

/// Converts the values a script passes to a remote, in order.
pub(crate) fn to_values(lua: &Lua, values: MultiValue) -> Result<Vec<Value>> {
    values.into_iter().map(|v| to_value(lua, v, 0)).collect()
}

/// Converts one Luau value.
pub(crate) fn to_value(lua: &Lua, value: LuaValue, depth: usize) -> Result<Value> {
    Ok(match value {
        LuaValue::Nil => Value::Nil,
        LuaValue::Boolean(b) => Value::Boolean(b),
        LuaValue::Integer(i) => Value::Number(i as f64),
        LuaValue::Number(n) => Value::Number(n),
        LuaValue::String(s) => Value::String(ByteStr::copy_from_slice(&s.as_bytes())),
        LuaValue::Buffer(b) => Value::Buffer(b.to_vec().into()),
        LuaValue::Vector(v) => Value::Vector3(Vector3 {
            x: f64::from(v.x()),
            y: f64::from(v.y()),
            z: f64::from(v.z()),
        }),
        LuaValue::Table(t) => table_to_value(lua, t, depth)?,
        // An error a `pcall` caught from the host (a CPU budget, say): its message, as Roblox
        // hands scripts error strings.
        LuaValue::Error(e) => Value::string(super::message_of(&e)),
        LuaValue::UserData(ref ud) => {
            if let Ok(v) = ud.borrow::<LuaVector3>() {
                Value::Vector3(v.0)
            } else if let Ok(v) = ud.borrow::<LuaVector2>() {
                Value::Vector2(v.0)
            } else if let Ok(v) = ud.borrow::<LuaCFrame>() {
                Value::CFrame(Box::new(v.0))
            } else if let Ok(v) = ud.borrow::<LuaColor3>() {
                Value::Color3(v.0)
            } else {
                return Err(refuse(format!(
                    "a {} cannot be sent through a remote",
                    type_of(&value)
                )));
            }
        }
        other => {
            return Err(refuse(format!(
                "a {} cannot be sent through a remote",
                other.type_name()
            )))
        }
    })
}

fn table_to_value(lua: &Lua, table: Table, depth: usize) -> Result<Value> {
    if depth >= MAX_DEPTH {
        return Err(refuse(format!(
            "tables nested deeper than {MAX_DEPTH} (or a table that contains itself) cannot be sent"
        )));
    }
    if table.metatable().is_some() {
        let player_id_of: Function = lua.named_registry_value(PLAYER_ID_OF)?;
        let (player, class): (Option<f64>, Option<String>) = player_id_of.call(&table)?;
        if let Some(handle) = player {
            let id = handles(lua)
                .player(handle)
                .ok_or_else(|| refuse("a Player who left cannot be sent through a remote"))?;
            return Ok(Value::Instance(InstanceRef(id.get())));
        }
        return Err(refuse(match class {
            Some(class) => format!("a {class} cannot be sent through a remote (only a Player can)"),
            None => "a table with a metatable cannot be sent through a remote".to_owned(),
        }));
    }
    let mut array_len = 0usize;
    let mut strings = 0usize;
    let mut others = 0usize;
    let mut max_index = 0usize;
    table.for_each::<LuaValue, LuaValue>(|key, _| {
        match key {
            LuaValue::String(_) => strings += 1,
            LuaValue::Integer(i) if i >= 1 => {
                array_len += 1;
                max_index = max_index.max(i as usize);
            }
            LuaValue::Number(n) if n >= 1.0 && n.fract() == 0.0 && n < 2f64.powi(53) => {
                array_len += 1;
                max_index = max_index.max(n as usize);
            }
            _ => others += 1,
        }
        Ok(())
    })?;
    if others > 0 {
        return Err(refuse(
            "a table with keys that are neither strings nor array indices cannot be sent",
        ));
    }
    if strings > 0 && array_len > 0 {
        return Err(refuse(
            "a table mixing array and string keys cannot be sent through a remote",
        ));
    }
    if strings > 0 {
        let mut entries = Vec::with_capacity(strings);
        table.for_each::<mlua::LuaString, LuaValue>(|key, value| {
            entries.push((
                ByteStr::copy_from_slice(&key.as_bytes()),
                to_value(lua, value, depth + 1)?,
            ));
            Ok(())
        })?;
        return Ok(Value::Dictionary(entries));
    }
    if max_index != array_len {
        return Err(refuse(
            "an array with holes (nil between values) cannot be sent through a remote",
        ));
    }
    let mut items = Vec::with_capacity(array_len);
    for i in 1..=array_len {
        items.push(to_value(lua, table.raw_get(i)?, depth + 1)?);
    }
    Ok(Value::Array(items))
}

/// Converts values received from a remote into the arguments a script sees.
pub(crate) fn from_values(lua: &Lua, values: &[Value]) -> Result<MultiValue> {
    values.iter().map(|v| from_value(lua, v)).collect()
}

/// Converts one received value.
pub(crate) fn from_value(lua: &Lua, value: &Value) -> Result<LuaValue> {
    Ok(match value {
        Value::Nil => LuaValue::Nil,
        Value::Boolean(b) => LuaValue::Boolean(*b),
        Value::Number(n) => LuaValue::Number(*n),
        Value::String(s) => LuaValue::String(lua.create_string(s.as_bytes())?),
        Value::Buffer(b) => LuaValue::Buffer(lua.create_buffer(b.as_bytes())?),
        Value::Vector2(v) => LuaValue::UserData(lua.create_userdata(LuaVector2(*v))?),
        Value::Vector3(v) => LuaValue::UserData(lua.create_userdata(LuaVector3(*v))?),
        Value::CFrame(cf) => LuaValue::UserData(lua.create_userdata(LuaCFrame(**cf))?),
        Value::Color3(c) => LuaValue::UserData(lua.create_userdata(LuaColor3(*c))?),
        Value::Instance(id) => {
            let handle = handles(lua).handle(crate::PlayerId::from_raw(id.0));
            let player_of: Function = lua.named_registry_value(PLAYER_OF)?;
            player_of.call(handle)?
        }
        Value::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, from_value(lua, item)?)?;
            }
            LuaValue::Table(table)
        }
        Value::Dictionary(entries) => {
            let table = lua.create_table_with_capacity(0, entries.len())?;
            for (key, item) in entries {
                table.raw_set(lua.create_string(key.as_bytes())?, from_value(lua, item)?)?;
            }
            LuaValue::Table(table)
        }
    })
}
