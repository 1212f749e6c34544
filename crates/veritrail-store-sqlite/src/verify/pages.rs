//! Tables of `ledger.sqlite` read straight from the file's pages (the documented SQLite file
//! format, <https://sqlite.org/fileformat2.html>), for a full verification of a store whose WAL
//! holds no frames — the server stopped (it truncates the WAL on shutdown) or idle: `records`,
//! the bulk of the file, and `personal`, its sidecars.
//!
//! Why: reading a row through SQLite (a B-tree step, the VDBE, each column copied out of the
//! page) cost about as much as hashing it, and `PRAGMA quick_check` of `personal` (which also
//! reads every row, to check its column types) a sixth of a verification. Here a thread finds
//! the leaf pages of a range of keys through the interior pages, reads runs of adjacent leaves
//! with one `pread` each and hands out every row's columns where they lie in the page.
//!
//! When it may: only when the WAL has no frame whose salts match its header (see
//! [`wal_may_hold_frames`]), checked after the main snapshot was taken. SQLite then reads that
//! snapshot from the database file alone, and nothing changes the file while it is held: frames
//! the server writes meanwhile stay in the WAL, since a checkpoint copies none while a reader
//! reads the file alone. Otherwise the checkers read through SQLite as before.
//!
//! It is as strict as SQLite with `cell_size_check` on, and stricter about order: every page
//! number in the file (never page 1, the schema), every page of the kind its parent expects,
//! every cell inside its page, keys strictly increasing and inside the bounds the interior
//! pages give them — so the rows found are exactly those SQLite finds by key. What breaks a rule
//! is reported as a corrupt database, naming the table and page.

use std::fs::File;
use std::ops::RangeInclusive;
use std::path::Path;

use rusqlite::types::ValueRef;

/// Deepest B-tree walked: far above what a 2^63-row table needs at the smallest page size; a
/// deeper one is a loop.
const MAX_DEPTH: usize = 24;
/// Most adjacent leaf pages read with one `pread`.
const MAX_RUN_PAGES: usize = 32;

const LEAF_TABLE: u8 = 0x0d;
const INTERIOR_TABLE: u8 = 0x05;

/// A problem with the file's structure, naming where.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Corrupt(pub(super) String);

impl From<String> for Corrupt {
    fn from(problem: String) -> Self {
        Self(problem)
    }
}

/// A database file whose tables are read with `pread`.
pub(super) struct DatabaseFile {
    file: File,
    page_size: usize,
    /// Bytes of each page the B-trees use (page size minus reserved bytes).
    usable: usize,
    /// Pages in the file.
    pages: u64,
}

/// A table B-tree of the file: its name (for messages) and root page.
#[derive(Clone, Copy)]
pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) root: u32,
}

/// One row as SQLite would return it: the rowid and the record's `N` columns (an `INTEGER
/// PRIMARY KEY` column is the rowid, stored as NULL).
pub(super) struct Row<'a, const N: usize> {
    pub(super) key: i64,
    pub(super) columns: [ValueRef<'a>; N],
}

/// Buffers a checker thread reuses from block to block.
#[derive(Default)]
pub(super) struct Buffers {
    leaves: Vec<Leaf>,
    run: Vec<u8>,
    page: Vec<u8>,
    overflow: Vec<u8>,
}

/// A leaf page to read, with the keys its place in the tree allows: `(low, high]`.
#[derive(Clone, Copy)]
struct Leaf {
    page: u32,
    low: Option<i64>,
    high: Option<i64>,
}

impl Table {
    /// The table `name` whose root page SQLite's schema gives as `root`.
    pub(super) fn new(name: &'static str, root: i64) -> Result<Self, Corrupt> {
        let root = u32::try_from(root).ok().filter(|root| *root >= 2);
        root.map(|root| Self { name, root }).ok_or_else(|| Corrupt(format!("{name} has no valid root page")))
    }
}

impl DatabaseFile {
    /// The database at `path`; `None` where its pages cannot be read directly (the WAL may hold
    /// frames, text is not UTF-8, or this platform has no `pread`).
    pub(super) fn open(path: &Path) -> Result<Option<Self>, String> {
        if !cfg!(unix) || wal_may_hold_frames(path)? {
            return Ok(None);
        }
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut header = [0u8; 100];
        read_at(&file, &mut header, 0).map_err(|e| format!("cannot read the database header: {e}"))?;
        if &header[..16] != b"SQLite format 3\0" {
            return Err("not an SQLite database".into());
        }
        // Text as stored is handed out as is: UTF-8 only (what Veritrail creates); SQLite itself
        // converts any other encoding.
        if be_u32(&header, 56) != Some(1) {
            return Ok(None);
        }
        let page_size = match u16::from_be_bytes([header[16], header[17]]) {
            1 => 65536,
            size if size >= 512 && size.is_power_of_two() => usize::from(size),
            size => return Err(format!("page size {size} in the database header")),
        };
        let usable = page_size - usize::from(header[20]);
        if usable < 480 {
            return Err(format!("{} reserved bytes per page in the database header", header[20]));
        }
        let len = file.metadata().map_err(|e| format!("cannot read the database's size: {e}"))?.len();
        Ok(Some(Self { file, page_size, usable, pages: len / page_size as u64 }))
    }

    /// Calls `row` for every row of `table` whose key is in `keys`, in key order; stops at the
    /// first structural problem (or the first error `row` returns). Rows must have `N` columns.
    pub(super) fn scan<E: From<Corrupt>, const N: usize>(
        &self,
        table: Table,
        keys: RangeInclusive<i64>,
        buffers: &mut Buffers,
        mut row: impl FnMut(Row<'_, N>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Buffers { leaves, run, page, overflow } = buffers;
        leaves.clear();
        self.find_leaves(table, table.root, &keys, (None, None), 0, page, leaves)?;
        let mut rest = &leaves[..];
        while let Some(first) = rest.first() {
            let adjacent = rest
                .iter()
                .zip(first.page..)
                .take(MAX_RUN_PAGES)
                .take_while(|(leaf, expected)| leaf.page == *expected)
                .count();
            run.resize(adjacent * self.page_size, 0);
            self.read_pages(table, first.page, run)?;
            for (leaf, bytes) in rest[..adjacent].iter().zip(run.chunks_exact(self.page_size)) {
                self.leaf_rows(table, leaf, &bytes[..self.usable], &keys, overflow, &mut row)?;
            }
            rest = &rest[adjacent..];
        }
        Ok(())
    }

    /// The leaf pages of a whole table, in key order (tests damage them).
    #[cfg(test)]
    pub(super) fn leaf_pages(&self, table: Table) -> Vec<u32> {
        let (mut leaves, mut page) = (Vec::new(), Vec::new());
        self.find_leaves(table, table.root, &(i64::MIN..=i64::MAX), (None, None), 0, &mut page, &mut leaves).unwrap();
        leaves.iter().map(|leaf| leaf.page).collect()
    }

    /// The page size of the file.
    #[cfg(test)]
    pub(super) fn page_size(&self) -> usize {
        self.page_size
    }

    /// Appends to `leaves`, in key order, the leaf pages below `page` that may hold keys in
    /// `keys`, given the bounds `(low, high]` of the keys below it.
    #[allow(clippy::too_many_arguments)]
    fn find_leaves(
        &self,
        table: Table,
        page: u32,
        keys: &RangeInclusive<i64>,
        (low, high): (Option<i64>, Option<i64>),
        depth: usize,
        buffer: &mut Vec<u8>,
        leaves: &mut Vec<Leaf>,
    ) -> Result<(), Corrupt> {
        if depth > MAX_DEPTH {
            return Err(format!("{} page {page}: the B-tree is deeper than {MAX_DEPTH} levels", table.name).into());
        }
        buffer.resize(self.page_size, 0);
        self.read_pages(table, page, buffer)?;
        let bytes = &buffer[..self.usable];
        match bytes[0] {
            LEAF_TABLE => {
                leaves.push(Leaf { page, low, high });
                return Ok(());
            }
            INTERIOR_TABLE => {}
            kind => {
                return Err(
                    format!("{} page {page}: page type {kind:#04x} is not a table B-tree page", table.name).into()
                );
            }
        }
        let cells = self.cells(table, page, bytes, INTERIOR_TABLE)?;
        let right_most = be_u32(bytes, 8).unwrap_or_default();
        // Children and the keys bounding them from above, read before the buffer is reused.
        let mut children = Vec::with_capacity(cells.len() + 1);
        let mut previous = low;
        for &at in &cells {
            let past = || Corrupt(format!("{} page {page}: cell at offset {at} runs past the page", table.name));
            let child = be_u32(bytes, at).ok_or_else(past)?;
            let (key, _) = varint(bytes, at + 4).ok_or_else(past)?;
            let key = key as i64;
            if previous.is_some_and(|previous| key <= previous) || high.is_some_and(|high| key > high) {
                return Err(format!("{} page {page}: key {key} out of order", table.name).into());
            }
            children.push((child, previous, Some(key)));
            previous = Some(key);
        }
        children.push((right_most, previous, high));
        for (child, low, high) in children {
            // Only children whose keys can meet `keys`.
            if high.is_some_and(|high| high < *keys.start()) || low.is_some_and(|low| low >= *keys.end()) {
                continue;
            }
            self.find_leaves(table, child, keys, (low, high), depth + 1, buffer, leaves)?;
        }
        Ok(())
    }

    /// The rows of a leaf page with keys in `keys`, checked against the page's bounds.
    fn leaf_rows<E: From<Corrupt>, const N: usize>(
        &self,
        table: Table,
        leaf: &Leaf,
        bytes: &[u8],
        keys: &RangeInclusive<i64>,
        overflow: &mut Vec<u8>,
        row: &mut impl FnMut(Row<'_, N>) -> Result<(), E>,
    ) -> Result<(), E> {
        let (name, page) = (table.name, leaf.page);
        let corrupt = |at: usize| Corrupt(format!("{name} page {page}: cell at offset {at} runs past the page"));
        let mut previous = leaf.low;
        for at in self.cells(table, page, bytes, LEAF_TABLE)? {
            let (size, next) = varint(bytes, at).ok_or_else(|| corrupt(at))?;
            let (key, start) = varint(bytes, next).ok_or_else(|| corrupt(at))?;
            let key = key as i64;
            if previous.is_some_and(|previous| key <= previous) || leaf.high.is_some_and(|high| key > high) {
                return Err(Corrupt(format!("{name} page {page}: key {key} out of order")).into());
            }
            previous = Some(key);
            if !keys.contains(&key) {
                continue;
            }
            let size = usize::try_from(size).ok().filter(|size| *size <= 1 << 30).ok_or_else(|| corrupt(at))?;
            let local = self.local_payload(size);
            let payload = bytes.get(start..start + local).ok_or_else(|| corrupt(at))?;
            let payload = if local == size {
                payload
            } else {
                let first = be_u32(bytes, start + local).ok_or_else(|| corrupt(at))?;
                self.read_overflow(table, page, payload, first, size, overflow)?;
                &overflow[..]
            };
            let columns = record_columns(payload)
                .map_err(|problem| Corrupt(format!("{name} page {page}: key {key}: {problem}")))?;
            row(Row { key, columns })?;
        }
        Ok(())
    }

    /// The offsets of the cells of a B-tree page of `kind`, each checked to lie after the cell
    /// pointer array and inside the page.
    fn cells(&self, table: Table, page: u32, bytes: &[u8], kind: u8) -> Result<Vec<usize>, Corrupt> {
        let name = table.name;
        if bytes[0] != kind {
            return Err(format!("{name} page {page}: page type {:#04x}, expected {kind:#04x}", bytes[0]).into());
        }
        let header = if kind == LEAF_TABLE { 8 } else { 12 };
        let count = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        let pointers = bytes
            .get(header..header + 2 * count)
            .ok_or_else(|| Corrupt(format!("{name} page {page}: {count} cells do not fit in the page")))?;
        let content = header + 2 * count;
        pointers
            .chunks_exact(2)
            .map(|pointer| {
                let at = usize::from(u16::from_be_bytes([pointer[0], pointer[1]]));
                if at < content || at >= bytes.len() {
                    return Err(Corrupt(format!(
                        "{name} page {page}: cell pointer {at} outside the cell content area"
                    )));
                }
                Ok(at)
            })
            .collect()
    }

    /// Bytes of a payload of `size` bytes kept on a table leaf page (the rest spills to
    /// overflow pages), as SQLite computes them.
    fn local_payload(&self, size: usize) -> usize {
        let usable = self.usable;
        let max_local = usable - 35;
        if size <= max_local {
            return size;
        }
        let min_local = (usable - 12) * 32 / 255 - 23;
        let local = min_local + (size - min_local) % (usable - 4);
        if local <= max_local { local } else { min_local }
    }

    /// Puts in `out` the whole payload of `size` bytes: `local` then the overflow chain from
    /// page `next`.
    fn read_overflow(
        &self,
        table: Table,
        page: u32,
        local: &[u8],
        mut next: u32,
        size: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Corrupt> {
        out.clear();
        out.extend_from_slice(local);
        let mut buffer = vec![0; self.page_size];
        while out.len() < size {
            if next == 0 {
                return Err(format!(
                    "{} page {page}: overflow chain ends {} bytes short",
                    table.name,
                    size - out.len()
                )
                .into());
            }
            self.read_pages(table, next, &mut buffer)?;
            let take = (size - out.len()).min(self.usable - 4);
            out.extend_from_slice(&buffer[4..4 + take]);
            next = be_u32(&buffer, 0).unwrap_or_default();
        }
        Ok(())
    }

    /// Reads `buffer.len() / page_size` pages from page `first` on.
    fn read_pages(&self, table: Table, first: u32, buffer: &mut [u8]) -> Result<(), Corrupt> {
        let count = (buffer.len() / self.page_size) as u64;
        if first < 2 || u64::from(first) + count - 1 > self.pages {
            let (name, pages) = (table.name, self.pages);
            return Err(format!("{name} B-tree refers to page {first}, outside the file's pages 2..={pages}").into());
        }
        read_at(&self.file, buffer, (u64::from(first) - 1) * self.page_size as u64)
            .map_err(|e| Corrupt(format!("cannot read page {first} of the database: {e}")))
    }
}

/// Whether the WAL next to the database at `path` may hold frames SQLite would read: it exists
/// and its first frame carries the salts of its header. (Frames are written from the start of
/// the file after each restart, each with the header's salts; a WAL whose first frame does not
/// match holds none, whatever else the file contains.)
pub(super) fn wal_may_hold_frames(path: &Path) -> Result<bool, String> {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    let wal = match File::open(&name) {
        Ok(wal) => wal,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(format!("cannot open the WAL: {error}")),
    };
    // The 32-byte WAL header, then the first frame's 24-byte header.
    let mut headers = [0u8; 56];
    match read_at(&wal, &mut headers, 0) {
        Ok(()) => Ok(headers[16..24] == headers[32 + 8..32 + 16]),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(format!("cannot read the WAL: {error}")),
    }
}

/// The `N` columns of a record (SQLite's record format): a header of serial types, then the
/// values.
fn record_columns<const N: usize>(payload: &[u8]) -> Result<[ValueRef<'_>; N], String> {
    let malformed = || "malformed record".to_string();
    let (header_size, mut at) = varint(payload, 0).ok_or_else(malformed)?;
    let header_end = usize::try_from(header_size).ok().filter(|end| *end <= payload.len()).ok_or_else(malformed)?;
    let mut body = header_end;
    let mut columns = [ValueRef::Null; N];
    let mut count = 0;
    while at < header_end {
        let (serial, next) = varint(&payload[..header_end], at).ok_or_else(malformed)?;
        at = next;
        let column = columns.get_mut(count).ok_or_else(|| format!("record has more than {N} columns"))?;
        count += 1;
        let size = match serial {
            0 | 8 | 9 => 0,
            1..=4 => serial as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return Err(format!("reserved serial type {serial}")),
            _ => usize::try_from((serial - 12) / 2).map_err(|_| malformed())?,
        };
        let value = payload.get(body..body.checked_add(size).ok_or_else(malformed)?).ok_or_else(malformed)?;
        body += size;
        *column = match serial {
            0 => ValueRef::Null,
            1..=6 => ValueRef::Integer(be_signed(value)),
            7 => ValueRef::Real(f64::from_bits(u64::from_be_bytes(value.try_into().map_err(|_| malformed())?))),
            8 => ValueRef::Integer(0),
            9 => ValueRef::Integer(1),
            _ if serial % 2 == 0 => ValueRef::Blob(value),
            _ => ValueRef::Text(value),
        };
    }
    if count != N {
        return Err(format!("record has {count} columns, not {N}"));
    }
    Ok(columns)
}

/// A big-endian two's-complement integer of 1 to 8 bytes.
fn be_signed(bytes: &[u8]) -> i64 {
    let mut value = if bytes[0] & 0x80 != 0 { -1i64 } else { 0 };
    for byte in bytes {
        value = (value << 8) | i64::from(*byte);
    }
    value
}

/// The big-endian `u32` at `at`, if `bytes` hold it.
fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// An SQLite varint at `at`: the value and where the next field starts.
pub(super) fn varint(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..8 {
        let byte = *bytes.get(at + i)?;
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte < 0x80 {
            return Some((value, at + i + 1));
        }
    }
    Some(((value << 8) | u64::from(*bytes.get(at + 8)?), at + 9))
}

#[cfg(unix)]
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(not(unix))]
fn read_at(_: &File, _: &mut [u8], _: u64) -> std::io::Result<()> {
    Err(std::io::Error::other("no pread on this platform"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use proptest::prelude::*;
    use rusqlite::types::Value;

    /// A column value of the table below for `key` and `size`: every integer serial type (NULL,
    /// 0, 1, 8 to 64 bits, negative), texts and blobs long enough to spill to overflow pages.
    fn columns(key: i64, size: usize) -> [Value; 4] {
        let integer = match key.rem_euclid(6) {
            0 => Value::Null,
            1 => Value::Integer(0),
            2 => Value::Integer(1),
            3 => Value::Integer(-key * 977),
            4 => Value::Integer(key << 40),
            _ => Value::Integer(i64::MIN + key.rem_euclid(1000)),
        };
        let text = "t".repeat(size % 700);
        let bytes = |len: usize| (0..len).map(|i| (i as u8) ^ (key as u8)).collect::<Vec<u8>>();
        [integer, Value::Text(text), Value::Blob(bytes(32)), Value::Blob(bytes(size))]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the page size and whatever inserts, updates and deletes shaped the B-tree
        /// (negative keys, rows on overflow chains, pages split and merged), the rows read
        /// from pages are those SQLite reads, for any key range.
        #[test]
        fn rows_read_from_pages_are_the_rows_sqlite_reads_for_any_tree(
            page_size in prop::sample::select(vec![512u32, 1024, 4096]),
            ops in prop::collection::vec((-60i64..400, 0u8..4, 0usize..9000), 1..250),
            ranges in prop::collection::vec((-70i64..420, 0i64..300), 1..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.sqlite");
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "PRAGMA page_size = {page_size}; PRAGMA journal_mode = DELETE;
                 CREATE TABLE t (key INTEGER PRIMARY KEY, a INTEGER, b TEXT, c BLOB, d BLOB);"
            ))
            .unwrap();
            for (key, op, size) in ops {
                let [a, b, c, d] = columns(key, size);
                let values = rusqlite::params![key, a, b, c, d];
                match op {
                    0 | 1 => conn.execute("INSERT OR REPLACE INTO t (key, a, b, c, d) VALUES (?1, ?2, ?3, ?4, ?5)", values),
                    2 => conn.execute("UPDATE t SET a = ?2, b = ?3, c = ?4, d = ?5 WHERE key = ?1", values),
                    _ => conn.execute("DELETE FROM t WHERE key = ?1", [key]),
                }
                .unwrap();
            }
            let root: i64 = conn.query_row("SELECT rootpage FROM sqlite_schema WHERE name = 't'", [], |r| r.get(0)).unwrap();
            let file = DatabaseFile::open(&path).unwrap().expect("no WAL");
            let table = Table::new("t", root).unwrap();
            let mut buffers = Buffers::default();
            let mut stmt = conn.prepare("SELECT key, a, b, c, d FROM t WHERE key BETWEEN ?1 AND ?2 ORDER BY key").unwrap();
            for (start, len) in ranges {
                let keys = start..=start + len;
                let mut from_pages: Vec<(i64, Vec<Value>)> = Vec::new();
                file.scan(table, keys.clone(), &mut buffers, |row: Row<'_, 5>| {
                    let owned = row.columns[1..].iter().map(|value| Value::try_from(*value).unwrap()).collect();
                    prop_assert_eq!(row.columns[0], ValueRef::Null, "the rowid alias is stored as NULL");
                    from_pages.push((row.key, owned));
                    Ok(())
                }).map_err(|error: TestCaseError| error)?;
                let through_sqlite: Vec<(i64, Vec<Value>)> = stmt
                    .query_map([keys.start(), keys.end()], |r| Ok((r.get(0)?, (1..5).map(|i| r.get(i).unwrap()).collect())))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                prop_assert_eq!(from_pages, through_sqlite, "keys {:?}", keys);
            }
        }
    }

    #[test]
    fn varints_decode_as_sqlite_writes_them() {
        assert_eq!(varint(&[0x05], 0), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00], 0), Some((128, 2)));
        assert_eq!(varint(&[0xff; 9], 0), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81], 0), None);
    }

    #[test]
    fn integers_are_signed_big_endian() {
        assert_eq!(be_signed(&[0x7f]), 127);
        assert_eq!(be_signed(&[0xff]), -1);
        assert_eq!(be_signed(&[0x01, 0x00, 0x00]), 65536);
        assert_eq!(be_signed(&[0x80, 0, 0, 0, 0, 0, 0, 0]), i64::MIN);
    }

    #[test]
    fn malformed_records_are_refused() {
        // Header of 6 bytes: NULL, int8, text of 1, blob of 1, blob of 2 — then the values.
        let good = [6, 0, 1, 15, 14, 16, 7, b'e', 0xaa, 0xbb, 0xcc];
        let columns = record_columns::<5>(&good).unwrap();
        assert!(matches!(
            columns,
            [ValueRef::Null, ValueRef::Integer(7), ValueRef::Text(b"e"), ValueRef::Blob(_), ValueRef::Blob(_)]
        ));
        assert!(record_columns::<5>(&good[..10]).is_err(), "values run past the payload");
        assert!(record_columns::<5>(&[5, 0, 1, 15, 14, 7, b'e', 0xaa]).unwrap_err().contains("4 columns"));
        assert!(record_columns::<4>(&good).unwrap_err().contains("more than 4 columns"));
        assert!(record_columns::<5>(&[6, 0, 10, 15, 14, 16]).unwrap_err().contains("reserved"));
        assert!(record_columns::<5>(&[60, 0]).is_err(), "header longer than the payload");
    }
}
