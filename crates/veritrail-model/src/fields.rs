//! Small typed readers over a JSON object, producing [`ValidationError`]s that name the field.

use serde_json::{Map, Value};

use crate::error::{ValidationError, ValidationErrorKind};
use crate::json::describe;

pub(crate) type Result<T> = std::result::Result<T, ValidationError>;

/// A JSON object of the schema, known to contain only allowed keys.
pub(crate) struct Fields<'a> {
    object: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    /// Checks that `value` is an object whose keys are all in `allowed`.
    pub(crate) fn open(value: &'a Value, path: String, allowed: &[&str]) -> Result<Fields<'a>> {
        let Value::Object(object) = value else {
            return Err(wrong_type(&path, "an object"));
        };
        for key in object.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(unknown_field(&path, key));
            }
        }
        Ok(Fields { object, path })
    }

    /// The path of one of this object's keys, e.g. `actor.email`.
    pub(crate) fn path_of(&self, key: &str) -> String {
        child_path(&self.path, key)
    }

    /// The value of `key`; `None` when absent or `null` (optional fields may be sent as null).
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        match self.object.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => Some(value),
        }
    }

    /// The value of `key` exactly as sent, `null` included.
    pub(crate) fn get_raw(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key)
    }

    /// The value of a required key; absent or `null` is [`ValidationErrorKind::MissingField`].
    pub(crate) fn required(&self, key: &str) -> Result<&'a Value> {
        match self.get(key) {
            Some(value) => Ok(value),
            None => {
                let path = self.path_of(key);
                let message = format!("missing required field \"{path}\"");
                Err(ValidationError::new(ValidationErrorKind::MissingField, path, message))
            }
        }
    }

    /// An optional string that may be empty, at most `max_chars` characters.
    pub(crate) fn optional_text(&self, key: &str, max_chars: usize) -> Result<Option<&'a str>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let path = self.path_of(key);
        let text = as_str(value, &path)?;
        check_max_chars(text, &path, max_chars)?;
        Ok(Some(text))
    }

    /// An optional string of 1 to `max_chars` characters.
    pub(crate) fn optional_nonempty(&self, key: &str, max_chars: usize) -> Result<Option<&'a str>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let path = self.path_of(key);
        let text = as_str(value, &path)?;
        check_nonempty(text, &path, max_chars)?;
        Ok(Some(text))
    }

    /// A required string of 1 to `max_chars` characters.
    pub(crate) fn required_nonempty(&self, key: &str, max_chars: usize) -> Result<&'a str> {
        let value = self.required(key)?;
        let path = self.path_of(key);
        let text = as_str(value, &path)?;
        check_nonempty(text, &path, max_chars)?;
        Ok(text)
    }

    /// An optional boolean.
    pub(crate) fn optional_bool(&self, key: &str) -> Result<Option<bool>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value {
            Value::Bool(flag) => Ok(Some(*flag)),
            _ => Err(wrong_type(&self.path_of(key), "a boolean")),
        }
    }

    /// An optional string from a closed vocabulary, parsed by `parse`; `allowed` lists the
    /// accepted spellings for the error message.
    pub(crate) fn optional_choice<T>(
        &self,
        key: &str,
        parse: fn(&str) -> Option<T>,
        allowed: &[&str],
    ) -> Result<Option<T>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let path = self.path_of(key);
        let text = as_str(value, &path)?;
        match parse(text) {
            Some(choice) => Ok(Some(choice)),
            None => Err(not_one_of(&path, allowed)),
        }
    }

    /// An optional array of at most `max_items` items.
    pub(crate) fn optional_array(&self, key: &str, max_items: usize) -> Result<&'a [Value]> {
        let Some(value) = self.get(key) else {
            return Ok(&[]);
        };
        let path = self.path_of(key);
        let Value::Array(items) = value else {
            return Err(wrong_type(&path, "an array"));
        };
        if items.len() > max_items {
            let message = format!("field \"{path}\" has more than {max_items} entries");
            return Err(ValidationError::new(ValidationErrorKind::TooMany, path, message));
        }
        Ok(items)
    }
}

/// `parent.key`, or `key` at the root.
pub(crate) fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

/// `parent[index]`.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The string in `value`, or a [`ValidationErrorKind::WrongType`] error.
pub(crate) fn as_str<'v>(value: &'v Value, path: &str) -> Result<&'v str> {
    match value {
        Value::String(text) => Ok(text),
        _ => Err(wrong_type(path, "a string")),
    }
}

/// Checks a string is 1 to `max_chars` characters long.
pub(crate) fn check_nonempty(text: &str, path: &str, max_chars: usize) -> Result<()> {
    if text.is_empty() {
        return Err(invalid(path, format!("{} is empty", describe(path))));
    }
    check_max_chars(text, path, max_chars)
}

/// Checks a string is at most `max_chars` characters (Unicode scalar values) long.
pub(crate) fn check_max_chars(text: &str, path: &str, max_chars: usize) -> Result<()> {
    // Cheap first test: a string never has more characters than bytes.
    if text.len() <= max_chars || text.chars().count() <= max_chars {
        return Ok(());
    }
    Err(invalid(path, format!("{} is longer than {max_chars} characters", describe(path))))
}

/// A [`ValidationErrorKind::InvalidValue`] error.
pub(crate) fn invalid(path: &str, message: String) -> ValidationError {
    ValidationError::new(ValidationErrorKind::InvalidValue, path, message)
}

/// `field "x" must be one of a, b, c`.
pub(crate) fn not_one_of(path: &str, allowed: &[&str]) -> ValidationError {
    invalid(path, format!("{} must be one of {}", describe(path), allowed.join(", ")))
}

/// `field "x" must be <expected>` as a [`ValidationErrorKind::WrongType`] error.
pub(crate) fn wrong_type(path: &str, expected: &str) -> ValidationError {
    ValidationError::new(ValidationErrorKind::WrongType, path, format!("{} must be {expected}", describe(path)))
}

fn unknown_field(parent: &str, key: &str) -> ValidationError {
    let message = if parent.is_empty() {
        format!("unknown field \"{key}\" at top level")
    } else {
        format!("unknown field \"{key}\" in {parent}")
    };
    ValidationError::new(ValidationErrorKind::UnknownField, child_path(parent, key), message)
}
