//! Checkpoint time-stamps: every row of `checkpoint_timestamps` belongs to a stored checkpoint,
//! and is an RFC 3161 `TimeStampResp` whose token verifies against the exact bytes of that
//! checkpoint's note ([`veritrail_tsa::verify_response`]). A data directory written before
//! time-stamps existed has no such table: it has no time-stamps.

use rusqlite::{Connection, OptionalExtension, params};
use veritrail_tsa::{Expected, TrustAnchors};

use super::{Failure, Location, TimestampReport, VerifyError, bytes_of, ledger_failure};

/// The time-stamps of a ledger snapshot.
pub(super) struct Timestamps<'a> {
    conn: &'a Connection,
    /// False when the ledger has no `checkpoint_timestamps` table.
    present: bool,
    trust: Option<&'a TrustAnchors>,
}

impl<'a> Timestamps<'a> {
    /// Checks that no time-stamp belongs to a tenant or checkpoint that does not exist.
    pub(super) fn open(
        conn: &'a Connection,
        tenants: &[(i64, String)],
        trust: Option<&'a TrustAnchors>,
    ) -> Result<Timestamps<'a>, VerifyError> {
        let present = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoint_timestamps'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if present {
            let orphan: Option<(i64, i64)> = conn
                .query_row(
                    "SELECT tenant_no, tree_size FROM checkpoint_timestamps t WHERE NOT EXISTS
                     (SELECT 1 FROM checkpoints c WHERE c.tenant_no = t.tenant_no AND c.tree_size = t.tree_size)
                     ORDER BY tenant_no, tree_size LIMIT 1",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            if let Some((no, size)) = orphan {
                let problem = format!("a time-stamp of size {size} but no checkpoint at that size");
                return Err(match tenants.iter().find(|(known, _)| *known == no) {
                    Some((_, id)) => {
                        let at = u64::try_from(size).map_or(Location::Ledger, |size| Location::Checkpoint { size });
                        VerifyError::Failed(Failure::new(Some(id), at, problem))
                    }
                    None => ledger_failure(format!("tenant number {no} is unknown but has {problem}")),
                });
            }
        }
        Ok(Timestamps { conn, present, trust })
    }

    /// Verifies the time-stamp of the (verified) checkpoint at `size` with `note`, if it has one.
    pub(super) fn check(
        &self,
        (no, id): (i64, &str),
        size: u64,
        note: &str,
    ) -> Result<Option<TimestampReport>, VerifyError> {
        if !self.present {
            return Ok(None);
        }
        let fail =
            |problem: String| VerifyError::Failed(Failure::new(Some(id), Location::Checkpoint { size }, problem));
        let mut stmt = self
            .conn
            .prepare_cached("SELECT response FROM checkpoint_timestamps WHERE tenant_no = ?1 AND tree_size = ?2")?;
        let mut rows = stmt.query(params![no, i64::try_from(size).unwrap_or(i64::MAX)])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let response = bytes_of(row.get_ref(0)?).ok_or_else(|| fail("time-stamp is not a blob".into()))?;
        let expected = Expected { message: note.as_bytes(), nonce: None, trust: self.trust };
        let verified = veritrail_tsa::verify_response(response, &expected)
            .map_err(|e| fail(format!("time-stamp does not verify: {e}")))?;
        Ok(Some(TimestampReport { size, gen_time: verified.gen_time, tsa: verified.signer }))
    }
}
