//! Scratch: time the phases of verify separately.
#![allow(clippy::unwrap_used)]
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};

fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let what = std::env::args().nth(2).unwrap_or_default();
    let path = std::path::Path::new(&dir).join("ledger.sqlite");
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.pragma_update(None, "cache_size", -65536).unwrap();
    conn.pragma_update(None, "mmap_size", 1i64 << 31).unwrap();
    if what.contains("qc") {
        let t = Instant::now();
        let r: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
        println!("quick_check {r}: {:.3} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let r: String = conn.query_row("PRAGMA quick_check(personal)", [], |r| r.get(0)).unwrap();
        println!("quick_check(personal) {r}: {:.3} s", t.elapsed().as_secs_f64());
    }
    for sql in [
        "SELECT key, tenant_no, event_id, leaf_hash, sealed FROM records ORDER BY key",
        "SELECT sealed FROM records ORDER BY key",
        "SELECT key FROM records ORDER BY key",
    ] {
        let t = Instant::now();
        let mut stmt = conn.prepare(sql).unwrap();
        let cols = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        let (mut n, mut bytes) = (0u64, 0usize);
        while let Some(row) = rows.next().unwrap() {
            for c in 0..cols {
                match row.get_ref(c).unwrap() {
                    rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => bytes += b.len(),
                    _ => {}
                }
            }
            n += 1;
        }
        let s = t.elapsed().as_secs_f64();
        println!("{sql}: {n} rows, {bytes} bytes, {s:.3} s, {:.3} us/row", s * 1e6 / n as f64);
    }
    let mut stmt = conn.prepare("SELECT sealed FROM records ORDER BY key").unwrap();
    let sealed: Vec<Vec<u8>> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    let n = sealed.len() as f64;
    let t = Instant::now();
    let mut ok = 0;
    for s in &sealed {
        if veritrail_store_sqlite::verify::read_sealed_head(s).is_ok() {
            ok += 1;
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!("read_sealed_head: {ok} ok, {:.3} us/record", s * 1e6 / n);
    let t = Instant::now();
    let mut x = 0u8;
    for s in &sealed {
        x ^= veritrail_ledger::hash::leaf_hash(s).as_bytes()[0];
    }
    let s = t.elapsed().as_secs_f64();
    println!("leaf_hash: {:.3} us/record ({x})", s * 1e6 / n);
    let avg = sealed.iter().map(Vec::len).sum::<usize>() as f64 / n;
    println!("average sealed {avg:.0} bytes");
}
