//! Key material of the embedded store: the master key file, the tenants' blind-index keys, the
//! subjects' data keys, and the one-time encryption of sidecars written before encryption.
//! Everything here runs on the writer thread (or before it starts), except the loads by id
//! and by subject, which readers and appends run on pooled connections.

use std::io::Write as _;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use veritrail_crypto::{MasterKey, MasterKeys};
use veritrail_model::PersonalData;
use veritrail_store::index_row::IndexRow;
use veritrail_store::privacy::{Privacy, SubjectKeyRow};
use veritrail_store::{StoreError, StoreResult};

use crate::schema::MAX_SEQ;
use crate::sql_error;

/// The master key file in the data directory (embedded mode, when no key is configured).
pub const MASTER_KEY_FILE: &str = "master.key";
/// The key being rotated out: kept until every data key is re-wrapped under the new one.
pub const PREVIOUS_MASTER_KEY_FILE: &str = "master.key.previous";
/// The key an online rotation is moving to, until it replaces `master.key`.
pub const NEXT_MASTER_KEY_FILE: &str = "master.key.next";

fn io_error(what: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Backend(format!("cannot {what} {}: {error}", path.display()))
}

fn read_key_file(path: &Path) -> StoreResult<Option<MasterKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            MasterKey::from_base64(&text).map(Some).map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error("read", path, error)),
    }
}

/// Writes a key file (mode 0600, fsync'd, created only if absent).
pub fn write_key_file(path: &Path, key: &MasterKey) -> StoreResult<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| io_error("create", path, e))?;
    file.write_all(format!("{}\n", &*key.to_base64()).as_bytes()).map_err(|e| io_error("write", path, e))?;
    file.sync_all().map_err(|e| io_error("sync", path, e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("sync", dir, e))?;
    }
    Ok(())
}

/// The master keys: `configured` if given, otherwise `master.key` in `dir` (generated on first
/// start), plus `master.key.previous` while a rotation is being completed.
pub(crate) fn resolve_master_keys(dir: &Path, configured: Option<MasterKeys>) -> StoreResult<MasterKeys> {
    if let Some(keys) = configured {
        return Ok(keys);
    }
    let path = dir.join(MASTER_KEY_FILE);
    let current = match read_key_file(&path)? {
        Some(key) => key,
        None => {
            let key = MasterKey::generate().map_err(|e| StoreError::Backend(e.to_string()))?;
            write_key_file(&path, &key)?;
            tracing::info!(path = %path.display(), key_id = %key.id(), "generated the master key");
            key
        }
    };
    // A rotation interrupted before its new key file replaced `master.key` left `master.key.next`:
    // data may already be wrapped under it.
    let previous = [PREVIOUS_MASTER_KEY_FILE, NEXT_MASTER_KEY_FILE]
        .into_iter()
        .map(|name| read_key_file(&dir.join(name)))
        .collect::<StoreResult<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(MasterKeys::with_previous(current, previous))
}

/// Gives every tenant a blind-index key (creating missing ones) and loads them all; fails when
/// a stored key is wrapped under a master key that is not configured.
pub(crate) fn load_tenant_keys(conn: &Connection, privacy: &Privacy) -> StoreResult<()> {
    let rows: Vec<(i64, String, Option<Vec<u8>>)> = conn
        .prepare("SELECT t.no, t.id, k.blind_wrapped FROM tenants t LEFT JOIN tenant_keys k ON k.tenant_no = t.no")
        .map_err(sql_error)?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    for (no, id, wrapped) in rows {
        let wrapped = match wrapped {
            Some(wrapped) => wrapped,
            None => create_tenant_key(conn, privacy, no, &id)?,
        };
        privacy.remember_blind_key(&id, &wrapped).map_err(|e| {
            StoreError::Corrupt(format!(
                "cannot unwrap the blind-index key of tenant {id} (is the right master key configured?): {e}"
            ))
        })?;
    }
    Ok(())
}

/// Creates and stores a tenant's blind-index key (inside the caller's transaction).
pub(crate) fn create_tenant_key(
    conn: &Connection,
    privacy: &Privacy,
    tenant_no: i64,
    tenant: &str,
) -> StoreResult<Vec<u8>> {
    let wrapped = privacy.new_blind_key(tenant)?;
    conn.execute("INSERT INTO tenant_keys (tenant_no, blind_wrapped) VALUES (?1, ?2)", params![tenant_no, wrapped])
        .map_err(sql_error)?;
    Ok(wrapped)
}

/// Inserts keys created for a batch.
pub(crate) fn insert_keys(
    conn: &Connection,
    tenant_no: i64,
    keys: &[SubjectKeyRow],
    now_micros: i64,
) -> StoreResult<()> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO subject_keys (key_id, tenant_no, subject, wrapped, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(sql_error)?;
    for key in keys {
        insert
            .execute(params![key.key_id as i64, tenant_no, key.subject, key.wrapped, now_micros])
            .map_err(sql_error)?;
    }
    Ok(())
}

fn key_rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    args: Vec<rusqlite::types::Value>,
) -> StoreResult<Vec<SubjectKeyRow>> {
    stmt.query_map(params_from_iter(args), |row| {
        Ok(SubjectKeyRow { key_id: row.get::<_, i64>(0)? as u64, subject: row.get(1)?, wrapped: row.get(2)? })
    })
    .map_err(sql_error)?
    .collect::<Result<_, _>>()
    .map_err(sql_error)
}

/// The stored keys with these ids in the tenant.
pub(crate) fn keys_by_id(conn: &Connection, tenant_no: i64, ids: &[u64]) -> StoreResult<Vec<SubjectKeyRow>> {
    let mut out = Vec::new();
    let mut stmt = conn
        .prepare_cached("SELECT key_id, subject, wrapped FROM subject_keys WHERE tenant_no = ?1 AND key_id = ?2")
        .map_err(sql_error)?;
    for id in ids {
        out.extend(key_rows(&mut stmt, vec![tenant_no.into(), (*id as i64).into()])?);
    }
    Ok(out)
}

/// The stored keys of these subjects in the tenant.
pub(crate) fn keys_by_subject(
    conn: &Connection,
    tenant_no: i64,
    subjects: &[String],
) -> StoreResult<Vec<SubjectKeyRow>> {
    let mut out = Vec::new();
    let mut stmt = conn
        .prepare_cached("SELECT key_id, subject, wrapped FROM subject_keys WHERE tenant_no = ?1 AND subject = ?2")
        .map_err(sql_error)?;
    for subject in subjects {
        out.extend(key_rows(&mut stmt, vec![tenant_no.into(), subject.clone().into()])?);
    }
    Ok(out)
}

/// Destroys a subject's keys and the blind-index tokens of the events it acted in (the writer
/// connection runs with `secure_delete`, so the deleted bytes are overwritten). Returns the
/// destroyed key ids and the number of events unlinked. `actor_keys` are the record keys of
/// the subject's events as actor, from the index.
pub(crate) fn erase(
    conn: &Connection,
    tenant_no: i64,
    subject: &str,
    actor_keys: &[i64],
) -> StoreResult<(Vec<u64>, u64)> {
    let ids: Vec<u64> = conn
        .prepare_cached("SELECT key_id FROM subject_keys WHERE tenant_no = ?1 AND subject = ?2")
        .map_err(sql_error)?
        .query_map(params![tenant_no, subject], |row| row.get::<_, i64>(0))
        .map_err(sql_error)?
        .map(|id| id.map(|id| id as u64))
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    conn.execute("DELETE FROM subject_keys WHERE tenant_no = ?1 AND subject = ?2", params![tenant_no, subject])
        .map_err(sql_error)?;
    let mut unlinked = 0;
    let mut clear = conn
        .prepare_cached(
            "UPDATE personal SET email_bidx = NULL, ip_bidx = NULL
             WHERE key = ?1 AND (email_bidx IS NOT NULL OR ip_bidx IS NOT NULL)",
        )
        .map_err(sql_error)?;
    for key in actor_keys {
        unlinked += clear.execute([key]).map_err(sql_error)? as u64;
    }
    Ok((ids, unlinked))
}

/// Re-wraps every key not under the current master key, in one transaction.
pub(crate) fn rewrap_all(conn: &mut Connection, privacy: &Privacy) -> StoreResult<u64> {
    let tx = conn.transaction().map_err(sql_error)?;
    let mut count = 0;
    {
        let rows: Vec<(i64, String, String, Vec<u8>)> = tx
            .prepare(
                "SELECT k.key_id, t.id, k.subject, k.wrapped FROM subject_keys k JOIN tenants t ON t.no = k.tenant_no",
            )
            .map_err(sql_error)?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .map_err(sql_error)?
            .collect::<Result<_, _>>()
            .map_err(sql_error)?;
        let mut update = tx.prepare("UPDATE subject_keys SET wrapped = ?2 WHERE key_id = ?1").map_err(sql_error)?;
        for (key_id, tenant, subject, wrapped) in rows {
            let row = SubjectKeyRow { key_id: key_id as u64, subject, wrapped };
            if let Some(new) = privacy.rewrap(&tenant, &row)? {
                update.execute(params![key_id, new]).map_err(sql_error)?;
                count += 1;
            }
        }
        let tenants: Vec<(i64, String, Vec<u8>)> = tx
            .prepare(
                "SELECT k.tenant_no, t.id, k.blind_wrapped FROM tenant_keys k JOIN tenants t ON t.no = k.tenant_no",
            )
            .map_err(sql_error)?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(sql_error)?
            .collect::<Result<_, _>>()
            .map_err(sql_error)?;
        for (no, tenant, wrapped) in tenants {
            if let Some(new) = privacy.rewrap_blind(&tenant, &wrapped)? {
                tx.execute("UPDATE tenant_keys SET blind_wrapped = ?2 WHERE tenant_no = ?1", params![no, new])
                    .map_err(sql_error)?;
                count += 1;
            }
        }
        // Installation secrets (signing-key seeds, the API-key pepper) in settings.
        let settings: Vec<(String, Vec<u8>)> = tx
            .prepare("SELECT name, value FROM settings")
            .map_err(sql_error)?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sql_error)?
            .collect::<Result<_, _>>()
            .map_err(sql_error)?;
        for (name, value) in settings {
            if let Some(new) = privacy.reseal_setting(&name, &value)? {
                tx.execute("UPDATE settings SET value = ?2 WHERE name = ?1", params![name, new]).map_err(sql_error)?;
                count += 1;
            }
        }
    }
    tx.commit().map_err(sql_error)?;
    Ok(count)
}

/// Record key, tenant number, tenant, event id, sealed record, clear sidecar.
type ClearSidecar = (i64, i64, String, String, Vec<u8>, Vec<u8>);

/// Setting present while clear sidecars may exist (set by the schema migration from v1 and by
/// opening without encryption), so that the scan for them runs only then, not at every start.
pub(crate) const CLEAR_SIDECARS_SETTING: &str = "ledger.clear_sidecars";

/// Marks the ledger as holding clear sidecars (opened without encryption, for the benchmark).
pub(crate) fn expect_clear_sidecars(conn: &Connection) -> StoreResult<u64> {
    conn.execute("INSERT OR IGNORE INTO settings (name, value) VALUES (?1, X'01')", [CLEAR_SIDECARS_SETTING])
        .map_err(sql_error)?;
    Ok(0)
}

/// Encrypts sidecars written before encryption existed (clear JSON, first byte `{`), in
/// batches, with their blind-index tokens, when [`CLEAR_SIDECARS_SETTING`] says there may be
/// some; clears the setting once none is left. Returns how many were encrypted.
pub(crate) fn encrypt_clear_sidecars(conn: &mut Connection, privacy: &Privacy, now_micros: i64) -> StoreResult<u64> {
    let pending: Option<i64> = conn
        .query_row("SELECT 1 FROM settings WHERE name = ?1", [CLEAR_SIDECARS_SETTING], |row| row.get(0))
        .optional()
        .map_err(sql_error)?;
    if pending.is_none() {
        return Ok(0);
    }
    let mut total = 0;
    loop {
        let tx = conn.transaction().map_err(sql_error)?;
        let rows: Vec<ClearSidecar> = tx
            .prepare(
                "SELECT p.key, t.no, t.id, r.event_id, r.sealed, p.data FROM personal p
                 JOIN records r ON r.key = p.key JOIN tenants t ON t.no = r.tenant_no
                 WHERE substr(p.data, 1, 1) = X'7B' LIMIT 5000",
            )
            .map_err(sql_error)?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?)))
            .map_err(sql_error)?
            .collect::<Result<_, _>>()
            .map_err(sql_error)?;
        if rows.is_empty() {
            tx.execute("DELETE FROM settings WHERE name = ?1", [CLEAR_SIDECARS_SETTING]).map_err(sql_error)?;
            tx.commit().map_err(sql_error)?;
            return Ok(total);
        }
        for (key, tenant_no, tenant, event_id, sealed, data) in rows {
            let personal = PersonalData::from_bytes(&data).unwrap_or_default();
            let fields = IndexRow::of(&sealed)?;
            let subjects: Vec<String> =
                std::iter::once(fields.actor_id.clone()).chain(fields.data_subject.clone()).collect();
            privacy.remember(&tenant, &keys_by_subject(&tx, tenant_no, &subjects)?)?;
            let (sidecar, new_keys) = privacy.seal_personal(
                &tenant,
                &event_id,
                &fields.actor_id,
                fields.data_subject.as_deref(),
                &personal,
            )?;
            insert_keys(&tx, tenant_no, &new_keys, now_micros)?;
            match sidecar {
                Some(sidecar) => tx
                    .execute(
                        "UPDATE personal SET data = ?2, email_bidx = ?3, ip_bidx = ?4 WHERE key = ?1",
                        params![key, sidecar.data, sidecar.email.map(Vec::from), sidecar.ip.map(Vec::from)],
                    )
                    .map_err(sql_error)?,
                None => tx.execute("DELETE FROM personal WHERE key = ?1", [key]).map_err(sql_error)?,
            };
            privacy.committed(&tenant, &new_keys)?;
            total += 1;
        }
        tx.commit().map_err(sql_error)?;
    }
}

/// Keys of a tenant's records whose actor is `subject`, from the index.
pub(crate) fn actor_record_keys(conn: &Connection, tenant_no: i64, subject: &str) -> StoreResult<Vec<i64>> {
    let lo = crate::schema::record_key(tenant_no, 0);
    let hi = crate::schema::record_key(tenant_no, MAX_SEQ);
    conn.prepare_cached("SELECT key FROM idx.events WHERE actor_id = ?1 AND key BETWEEN ?2 AND ?3")
        .map_err(sql_error)?
        .query_map(params![subject, lo, hi], |row| row.get(0))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)
}

/// The blind-index key row of a tenant, if stored.
pub(crate) fn tenant_key(conn: &Connection, tenant_no: i64) -> StoreResult<Option<Vec<u8>>> {
    conn.query_row("SELECT blind_wrapped FROM tenant_keys WHERE tenant_no = ?1", [tenant_no], |row| row.get(0))
        .optional()
        .map_err(sql_error)
}

/// Clears the blind-index tokens of these records in `index.sqlite` (after an erasure).
pub(crate) fn unlink_index(index_path: &Path, record_keys: &[i64]) -> StoreResult<()> {
    if record_keys.is_empty() {
        return Ok(());
    }
    let mut conn = Connection::open(index_path).map_err(sql_error)?;
    conn.pragma_update(None, "busy_timeout", 10_000).map_err(sql_error)?;
    conn.pragma_update(None, "secure_delete", "ON").map_err(sql_error)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql_error)?;
    {
        let mut clear =
            tx.prepare("UPDATE events SET actor_email = NULL, ip = NULL WHERE key = ?1").map_err(sql_error)?;
        for key in record_keys {
            clear.execute([key]).map_err(sql_error)?;
        }
    }
    tx.commit().map_err(sql_error)?;
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    Ok(())
}
