//! How one config field's value is read: from the JSON form (what JS objects become) and from
//! text (CLI flags, URL query parameters). Every error names the field, the value given and what
//! is allowed, so forms can show it next to the field.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use crate::error::{AqError, Result};

/// What kind of value a field takes, for callers that parse text (a bare CLI flag means `true`
/// only for booleans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FieldKind {
    Boolean,
    Number,
    /// One of a fixed set of words.
    Choice,
    /// A list of strings (comma-separated as text).
    List,
    /// Name or glob → number (`glob=bits,…` as text).
    Map,
}

/// A config field's type: read from JSON, described, and converted from text.
pub trait ConfigValue: Sized {
    const KIND: FieldKind;
    /// `expected` is the field's own description of what it allows, used when a value has the
    /// right type but cannot be held (an integer above the field's type).
    fn read(field: &str, v: &Value, expected: &str) -> Result<Self>;
    /// The JSON value a text form stands for; text that does not parse stays a string so that
    /// [`read`](Self::read) reports it with the field's name.
    fn from_text(field: &str, text: &str) -> Result<Value> {
        let _ = field;
        Ok(Value::String(text.to_string()))
    }
}

/// A JSON value shortened for messages.
pub fn json_short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.char_indices().nth(57).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}

fn read_uint(field: &str, v: &Value) -> Result<u64> {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && (0.0..=4_294_967_295.0).contains(&x) => Ok(x as u64),
        _ => Err(AqError::config(field, json_short(v), "a non-negative integer")),
    }
}

fn number_from_text(text: &str) -> Value {
    let t = text.trim();
    match t.parse::<f64>().ok().filter(|x| x.is_finite()).and_then(Number::from_f64) {
        // Integers stay integers, so `read_uint` sees 4, not 4.0 (both are accepted).
        Some(_) if t.parse::<u64>().is_ok() => Value::Number(t.parse::<u64>().expect("checked").into()),
        Some(n) => Value::Number(n),
        None => Value::String(text.to_string()),
    }
}

impl ConfigValue for u8 {
    const KIND: FieldKind = FieldKind::Number;
    fn read(field: &str, v: &Value, expected: &str) -> Result<Self> {
        let x = read_uint(field, v)?;
        u8::try_from(x).map_err(|_| AqError::config(field, json_short(v), expected))
    }
    fn from_text(_: &str, text: &str) -> Result<Value> {
        Ok(number_from_text(text))
    }
}

impl ConfigValue for u32 {
    const KIND: FieldKind = FieldKind::Number;
    fn read(field: &str, v: &Value, expected: &str) -> Result<Self> {
        // Not `as u32`: 2^32 + 64 must not become 64.
        u32::try_from(read_uint(field, v)?).map_err(|_| AqError::config(field, json_short(v), expected))
    }
    fn from_text(_: &str, text: &str) -> Result<Value> {
        Ok(number_from_text(text))
    }
}

impl ConfigValue for f64 {
    const KIND: FieldKind = FieldKind::Number;
    fn read(field: &str, v: &Value, _: &str) -> Result<Self> {
        v.as_f64().ok_or_else(|| AqError::config(field, json_short(v), "a number"))
    }
    fn from_text(_: &str, text: &str) -> Result<Value> {
        Ok(number_from_text(text))
    }
}

/// An optional number: `null` (or absent) is "none".
impl ConfigValue for Option<f64> {
    const KIND: FieldKind = FieldKind::Number;
    fn read(field: &str, v: &Value, expected: &str) -> Result<Self> {
        f64::read(field, v, expected).map(Some)
    }
    fn from_text(_: &str, text: &str) -> Result<Value> {
        Ok(number_from_text(text))
    }
}

/// An optional width: `null` (or absent) is "none".
impl ConfigValue for Option<u8> {
    const KIND: FieldKind = FieldKind::Number;
    fn read(field: &str, v: &Value, expected: &str) -> Result<Self> {
        u8::read(field, v, expected).map(Some)
    }
    fn from_text(_: &str, text: &str) -> Result<Value> {
        Ok(match text {
            "null" | "off" | "none" => Value::Null,
            _ => number_from_text(text),
        })
    }
}

/// Words a boolean takes as text.
pub fn boolean_word(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

impl ConfigValue for bool {
    const KIND: FieldKind = FieldKind::Boolean;
    fn read(field: &str, v: &Value, _: &str) -> Result<Self> {
        v.as_bool().ok_or_else(|| AqError::config(field, json_short(v), "true or false"))
    }
    fn from_text(_: &str, text: &str) -> Result<Value> {
        // A bare flag or query key (`?failFast`) means on.
        Ok(if text.is_empty() {
            Value::Bool(true)
        } else {
            boolean_word(text).map_or_else(|| text.into(), Value::Bool)
        })
    }
}

/// A list of glob strings.
impl ConfigValue for Vec<String> {
    const KIND: FieldKind = FieldKind::List;
    fn read(field: &str, v: &Value, _: &str) -> Result<Self> {
        let arr = v.as_array().ok_or_else(|| AqError::config(field, json_short(v), "an array of glob strings"))?;
        arr.iter()
            .map(|p| {
                p.as_str().map(str::to_string).ok_or_else(|| AqError::config(field, json_short(p), "glob strings"))
            })
            .collect()
    }
    fn from_text(_: &str, text: &str) -> Result<Value> {
        Ok(Value::Array(
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect(),
        ))
    }
}

/// Tensor name or glob → width.
impl ConfigValue for BTreeMap<String, u8> {
    const KIND: FieldKind = FieldKind::Map;
    fn read(field: &str, v: &Value, expected: &str) -> Result<Self> {
        let m = v.as_object().ok_or_else(|| {
            AqError::config(field, json_short(v), "an object mapping tensor name or glob to 2, 4, 8 or 16")
        })?;
        m.iter().map(|(pat, b)| Ok((pat.clone(), u8::read(&format!("{field}['{pat}']"), b, expected)?))).collect()
    }
    fn from_text(field: &str, text: &str) -> Result<Value> {
        let mut m = Map::new();
        for entry in text.split(',').filter(|e| !e.is_empty()) {
            let Some((pat, bits)) = entry.rsplit_once('=') else {
                return Err(AqError::config(
                    field,
                    format!("'{entry}'"),
                    "entries of the form glob=bits, comma-separated",
                ));
            };
            m.insert(pat.trim().to_string(), number_from_text(bits));
        }
        Ok(Value::Object(m))
    }
}

/// A field that takes one of a fixed set of words (an enum).
pub trait Choice: Sized + Copy + 'static {
    /// Words and the values they stand for; the first word of a value is how it is written.
    const WORDS: &'static [(&'static str, Self)];
}

/// The enum fields: one of their words, case as written.
macro_rules! choice_value {
    ($t:ty) => {
        impl $crate::policy::fields::ConfigValue for $t {
            const KIND: $crate::policy::fields::FieldKind = $crate::policy::fields::FieldKind::Choice;
            fn read(field: &str, v: &serde_json::Value, expected: &str) -> $crate::error::Result<Self> {
                use $crate::policy::fields::Choice;
                v.as_str().and_then(|s| Self::WORDS.iter().find(|(w, _)| *w == s).map(|(_, x)| *x)).ok_or_else(|| {
                    $crate::error::AqError::config(field, $crate::policy::fields::json_short(v), expected)
                })
            }
        }
    };
}
pub(crate) use choice_value;

/// A field that failed a check beyond its type: the field's path when it is not the field itself
/// (`layerBitWidths['a.*']`), the value as shown, and what is allowed.
pub struct Invalid {
    pub path: Option<String>,
    pub value: String,
    pub expected: String,
}

/// One field of the table, as callers that build forms or parse flags see it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldInfo {
    /// The camelCase name (the JSON key).
    pub name: &'static str,
    /// Other names the input form accepts.
    pub aliases: &'static [&'static str],
    pub kind: FieldKind,
    /// What the field allows, as error messages say it.
    pub allowed: &'static str,
}

/// Generates [`QuantConfig`], its defaults, the input-form reader, validation and the field list
/// from one table. Each entry: doc comment and attributes, `name: Type = default,` the JSON
/// names, what is allowed, and either `when |v| condition` (a plain check of the value) or
/// `check function` (a check that names a sub-path or formats the value itself).
macro_rules! quant_config {
    (
        $(#[$first_attr:meta])* profile: Profile = $profile_default:expr, [$($profile_json:literal),+];
        $(
            $(#[$attr:meta])*
            $field:ident: $ty:ty = $default:expr, [$json:literal $(, $alias:literal)*], $allowed:literal
                $(, when |$v:ident| $cond:expr)? $(, check $check:path)?;
        )*
    ) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
        #[serde(rename_all = "camelCase")]
        pub struct QuantConfig {
            $(#[$first_attr])*
            pub profile: Profile,
            $( $(#[$attr])* pub $field: $ty, )*
        }

        /// The camelCase name of every field, `profile` first.
        pub const KNOWN_FIELDS: &[&str] = &["profile", $($json),*];

        /// Every field: name, aliases, kind and what it allows.
        pub fn fields() -> Vec<FieldInfo> {
            let mut out = vec![FieldInfo {
                name: "profile",
                aliases: &["deploymentProfile"],
                kind: FieldKind::Choice,
                allowed: PROFILE_NAMES,
            }];
            $( out.push(FieldInfo {
                name: $json,
                aliases: &[$($alias),*],
                kind: <$ty as ConfigValue>::KIND,
                allowed: $allowed,
            }); )*
            out
        }

        impl QuantConfig {
            /// Every field at its default (the `local` profile before its own settings).
            fn defaults() -> Self {
                QuantConfig { profile: $profile_default, $( $field: $default, )* }
            }

            /// Set one field from its JSON value; `Ok(false)` when `key` names no field.
            fn set_field(&mut self, key: &str, v: &Value) -> Result<bool> {
                match key {
                    $( $json $(| $alias)* => self.$field = <$ty as ConfigValue>::read(key, v, $allowed)?, )*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// Check every field; the error names the first bad field, its value and what is allowed.
            pub fn validate(&self) -> Result<()> {
                $(
                    $( {
                        let $v = &self.$field;
                        if !($cond) {
                            return Err(AqError::config($json, self.$field, $allowed));
                        }
                    } )?
                    $( if let Err(e) = $check(&self.$field) {
                        return Err(AqError::config(e.path.as_deref().unwrap_or($json), e.value, e.expected));
                    } )?
                )*
                Ok(())
            }

            /// The JSON value a field's text form stands for (CLI flags, query parameters).
            fn value_from_text(field: &str, text: &str) -> Result<Value> {
                match field {
                    $( $json => <$ty as ConfigValue>::from_text($json, text), )*
                    _ => Ok(Value::String(text.to_string())),
                }
            }
        }

        /// The canonical name of a field given as camelCase, kebab-case or an alias.
        pub fn canonical_field(name: &str) -> Option<&'static str> {
            let camel = camel_case(name);
            match camel.as_str() {
                $($profile_json)|+ => Some("profile"),
                $( $json $(| $alias)* => Some($json), )*
                _ => None,
            }
        }
    };
}
pub(crate) use quant_config;
