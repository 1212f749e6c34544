//! The one place this crate canonicalizes JSON (RFC 8785 JCS), through `veritrail-ledger`, so
//! that commitments and sealed records use exactly the ledger's canonical form.

use serde_json::Value;
use veritrail_ledger::JcsError;

/// The RFC 8785 canonical bytes of `value`.
pub(crate) fn canonical_bytes(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::new();
    veritrail_ledger::jcs::canonicalize_to(value, &mut out)?;
    Ok(out)
}
