//! Small typed readers over a JSON object that name the field in every error.

use serde_json::{Map, Value};

use crate::RuleError;

pub(crate) type Result<T> = std::result::Result<T, RuleError>;

/// `parent.key`, or `key` at the top level.
pub(crate) fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

/// A JSON object known to contain only allowed keys.
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    /// Checks that `value` is an object whose keys are all in `allowed`.
    pub(crate) fn open(value: &'a Value, path: &str, allowed: &[&str]) -> Result<Obj<'a>> {
        let Value::Object(map) = value else {
            return Err(RuleError::WrongType { field: display_path(path), expected: "an object" });
        };
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(RuleError::UnknownField { field: child_path(path, key) });
            }
        }
        Ok(Obj { map, path: path.to_owned() })
    }

    /// The path of one of this object's keys.
    pub(crate) fn path_of(&self, key: &str) -> String {
        child_path(&self.path, key)
    }

    /// The value of `key`; `None` when absent or `null`.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => Some(value),
        }
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn required(&self, key: &str) -> Result<&'a Value> {
        self.get(key).ok_or_else(|| RuleError::MissingField { field: self.path_of(key) })
    }

    pub(crate) fn required_str(&self, key: &str) -> Result<&'a str> {
        as_str(self.required(key)?, &self.path_of(key))
    }

    pub(crate) fn optional_str(&self, key: &str) -> Result<Option<&'a str>> {
        self.get(key).map(|value| as_str(value, &self.path_of(key))).transpose()
    }

    pub(crate) fn optional_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(RuleError::WrongType { field: self.path_of(key), expected: "true or false" }),
        }
    }

    /// An optional integer in `min..=max`.
    pub(crate) fn optional_u64(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let field = self.path_of(key);
        let Some(n) = value.as_u64() else {
            return Err(RuleError::WrongType { field, expected: "a non-negative integer" });
        };
        if !(min..=max).contains(&n) {
            return Err(RuleError::invalid(field, format!("must be from {min} to {max}, not {n}")));
        }
        Ok(Some(n))
    }

    /// An optional finite number.
    pub(crate) fn optional_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => match value.as_f64() {
                Some(n) if n.is_finite() => Ok(Some(n)),
                _ => Err(RuleError::WrongType { field: self.path_of(key), expected: "a number" }),
            },
        }
    }

    /// An optional array of strings with at most `max` items.
    pub(crate) fn optional_str_array(&self, key: &str, max: usize) -> Result<Option<Vec<(String, &'a str)>>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let field = self.path_of(key);
        let Value::Array(items) = value else {
            return Err(RuleError::WrongType { field, expected: "an array of strings" });
        };
        if items.len() > max {
            return Err(RuleError::invalid(field, format!("at most {max} items are allowed")));
        }
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let item_field = format!("{field}[{index}]");
            let text = as_str(item, &item_field)?;
            out.push((item_field, text));
        }
        Ok(Some(out))
    }
}

pub(crate) fn as_str<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value.as_str().ok_or_else(|| RuleError::WrongType { field: field.to_owned(), expected: "a string" })
}

fn display_path(path: &str) -> String {
    if path.is_empty() { "rule".to_owned() } else { path.to_owned() }
}
