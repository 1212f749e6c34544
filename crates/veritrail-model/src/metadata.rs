//! `metadata`: any JSON object, with reserved keys (COMPLIANCE.md §11.3) validated when present.

use serde_json::{Map, Value};

use crate::error::{ValidationError, ValidationErrorKind};
use crate::fields::{Fields, Result, as_str, check_nonempty, index_path, not_one_of, wrong_type};
use crate::limits::{Limits, MAX_CONSENT_PURPOSES, MAX_METADATA_SHORT_CHARS, MAX_METADATA_TEXT_CHARS};
use crate::vocabulary::PurposeCategory;

/// The reserved top-level `metadata` keys, validated when present.
pub const RESERVED_METADATA_KEYS: &[&str] =
    &["disclosure", "change", "consent", "legal_basis", "purpose_category", "source", "on_behalf_of", "error"];

const DISCLOSURE_FIELDS: &[&str] =
    &["recipient", "description", "purpose_category", "request_ref", "business_associate"];
const RECIPIENT_FIELDS: &[&str] = &["name", "address", "country", "type"];
const CHANGE_FIELDS: &[&str] = &["ticket", "author", "approver", "deployer", "emergency", "tested"];
const CONSENT_FIELDS: &[&str] = &["consent_id", "purposes", "legal_basis", "notice_version", "notice_hash", "method"];
const SOURCE_FIELDS: &[&str] = &["service", "host", "version"];
const ERROR_FIELDS: &[&str] = &["code", "message"];

/// Validates `metadata` and returns it unchanged (an empty object becomes `None`).
pub(crate) fn validate_metadata(value: Option<&Value>, limits: &Limits) -> Result<Option<Map<String, Value>>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let metadata = check_metadata(value, limits)?;
    Ok((!metadata.is_empty()).then(|| metadata.clone()))
}

/// [`validate_metadata`] of a value the caller owns: the map is moved out, not copied.
pub(crate) fn validate_owned_metadata(value: Value, limits: &Limits) -> Result<Option<Map<String, Value>>> {
    check_metadata(&value, limits)?;
    match value {
        Value::Object(metadata) if !metadata.is_empty() => Ok(Some(metadata)),
        _ => Ok(None),
    }
}

/// The metadata object, checked: its size and its reserved keys.
fn check_metadata<'a>(value: &'a Value, limits: &Limits) -> Result<&'a Map<String, Value>> {
    let Value::Object(metadata) = value else {
        return Err(wrong_type("metadata", "an object"));
    };
    if metadata.len() > limits.max_metadata_keys {
        return Err(ValidationError::new(
            ValidationErrorKind::TooMany,
            "metadata",
            format!("field \"metadata\" has more than {} keys", limits.max_metadata_keys),
        ));
    }
    for (key, value) in metadata {
        if value.is_null() {
            continue;
        }
        validate_reserved_key(key, value)?;
    }
    Ok(metadata)
}

fn validate_reserved_key(key: &str, value: &Value) -> Result<()> {
    match key {
        "disclosure" => disclosure(value),
        "change" => change(value),
        "consent" => consent(value),
        "legal_basis" => short_string(value, "metadata.legal_basis"),
        "purpose_category" => purpose_category(value, "metadata.purpose_category"),
        "source" => source(value),
        "on_behalf_of" => short_string(value, "metadata.on_behalf_of"),
        "error" => error(value),
        _ => Ok(()),
    }
}

/// `metadata.disclosure`: HIPAA §164.528(b)(2) accounting elements.
fn disclosure(value: &Value) -> Result<()> {
    let disclosure = Fields::open(value, "metadata.disclosure".to_owned(), DISCLOSURE_FIELDS)?;
    if let Some(recipient) = disclosure.get("recipient") {
        let path = disclosure.path_of("recipient");
        let recipient = Fields::open(recipient, path, RECIPIENT_FIELDS)?;
        recipient.optional_nonempty("name", MAX_METADATA_SHORT_CHARS)?;
        recipient.optional_nonempty("address", MAX_METADATA_TEXT_CHARS)?;
        recipient.optional_nonempty("country", MAX_METADATA_SHORT_CHARS)?;
        recipient.optional_nonempty("type", MAX_METADATA_SHORT_CHARS)?;
    }
    disclosure.optional_nonempty("description", MAX_METADATA_TEXT_CHARS)?;
    if let Some(category) = disclosure.get("purpose_category") {
        purpose_category(category, &disclosure.path_of("purpose_category"))?;
    }
    disclosure.optional_nonempty("request_ref", MAX_METADATA_SHORT_CHARS)?;
    disclosure.optional_bool("business_associate")?;
    Ok(())
}

/// `metadata.change`: SOX / SOC 2 change-management evidence.
fn change(value: &Value) -> Result<()> {
    let change = Fields::open(value, "metadata.change".to_owned(), CHANGE_FIELDS)?;
    for key in ["ticket", "author", "approver", "deployer"] {
        change.optional_nonempty(key, MAX_METADATA_SHORT_CHARS)?;
    }
    change.optional_bool("emergency")?;
    change.optional_bool("tested")?;
    Ok(())
}

/// `metadata.consent`: GDPR Art. 7 consent record.
fn consent(value: &Value) -> Result<()> {
    let consent = Fields::open(value, "metadata.consent".to_owned(), CONSENT_FIELDS)?;
    for key in ["consent_id", "legal_basis", "notice_version", "notice_hash", "method"] {
        consent.optional_nonempty(key, MAX_METADATA_SHORT_CHARS)?;
    }
    let purposes = consent.optional_array("purposes", MAX_CONSENT_PURPOSES)?;
    for (index, purpose) in purposes.iter().enumerate() {
        let path = index_path("metadata.consent.purposes", index);
        let purpose = as_str(purpose, &path)?;
        check_nonempty(purpose, &path, MAX_METADATA_SHORT_CHARS)?;
    }
    Ok(())
}

/// `metadata.source`: the emitting system component.
fn source(value: &Value) -> Result<()> {
    let source = Fields::open(value, "metadata.source".to_owned(), SOURCE_FIELDS)?;
    for key in ["service", "host", "version"] {
        source.optional_nonempty(key, MAX_METADATA_SHORT_CHARS)?;
    }
    Ok(())
}

/// `metadata.error`: a message, or `{code, message}` where `code` is a string or an integer.
fn error(value: &Value) -> Result<()> {
    let path = "metadata.error";
    match value {
        Value::String(message) => check_nonempty(message, path, MAX_METADATA_TEXT_CHARS),
        Value::Object(_) => {
            let error = Fields::open(value, path.to_owned(), ERROR_FIELDS)?;
            if let Some(code) = error.get("code") {
                let code_path = error.path_of("code");
                match code {
                    Value::String(code) => check_nonempty(code, &code_path, MAX_METADATA_SHORT_CHARS)?,
                    Value::Number(number) if number.is_i64() || number.is_u64() => {}
                    _ => return Err(wrong_type(&code_path, "a string or an integer")),
                }
            }
            error.optional_nonempty("message", MAX_METADATA_TEXT_CHARS)?;
            Ok(())
        }
        _ => Err(wrong_type(path, "a string or an object")),
    }
}

fn short_string(value: &Value, path: &str) -> Result<()> {
    let text = as_str(value, path)?;
    check_nonempty(text, path, MAX_METADATA_SHORT_CHARS)
}

fn purpose_category(value: &Value, path: &str) -> Result<()> {
    let text = as_str(value, path)?;
    if PurposeCategory::parse(text).is_some() {
        return Ok(());
    }
    let mut allowed = Vec::new();
    for category in PurposeCategory::ALL {
        allowed.push(category.as_str());
    }
    Err(not_one_of(path, &allowed))
}
