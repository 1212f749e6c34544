//! Small statistics (percentiles, medians) and CPU/IO accounting from `/proc`, so that every
//! figure can say who used the two cores while it was measured.

use std::collections::HashMap;
use std::time::Duration;

/// Clock ticks per second of `/proc` times (`_SC_CLK_TCK`, 100 on every Linux we run on).
const TICKS_PER_SECOND: f64 = 100.0;

/// The `p`-th percentile (0–100) of `samples` (nearest rank); 0 for no samples.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values`.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 }
}

/// Smallest and largest of `values`.
pub fn min_max(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() { (0.0, 0.0) } else { (min, max) }
}

/// Milliseconds of a duration.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The command name and the fields after it (`fields[0]` is field 3, the state) of the text of a
/// `/proc/.../stat` file.
fn stat_fields(text: &str) -> Option<(&str, Vec<&str>)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    Some((text.get(open + 1..close)?, text.get(close + 2..)?.split_whitespace().collect()))
}

/// `utime + stime` (seconds) from the text of a `/proc/.../stat` file, plus `cutime + cstime`
/// when `children` is set.
fn stat_cpu(text: &str, children: bool) -> Option<(String, f64, u32)> {
    let (comm, fields) = stat_fields(text)?;
    let comm = comm.to_string();
    // utime is field 14 → index 11.
    let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let ppid = fields.get(1).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    let mut ticks = num(11) + num(12);
    if children {
        ticks += num(13) + num(14);
    }
    Some((comm, ticks / TICKS_PER_SECOND, ppid))
}

/// CPU seconds used so far by the calling thread.
pub fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|t| stat_cpu(&t, false))
        .map(|(_, s, _)| s)
        .unwrap_or(0.0)
}

/// CPU seconds used so far by process `pid` (all its threads; 0 once it is gone).
pub fn process_cpu(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| stat_cpu(&t, false))
        .map(|(_, s, _)| s)
        .unwrap_or(0.0)
}

/// CPU seconds used so far by the live threads of process `pid` whose name is `name` (threads
/// that ended are not counted: use it for long-lived threads).
pub fn threads_cpu(pid: u32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|text| stat_cpu(&text, false))
        .filter(|(comm, _, _)| comm == name)
        .map(|(_, seconds, _)| seconds)
        .sum()
}

/// Bytes process `pid` caused to be written to storage so far (0 once it is gone).
pub fn process_write_bytes(pid: u32) -> f64 {
    write_bytes(&pid.to_string())
}

/// Minor page faults of process `pid` so far (0 once it is gone).
pub fn process_minor_faults(pid: u32) -> f64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // minflt is field 10 → index 7.
    stat_fields(&text).and_then(|(_, fields)| fields.get(7)?.parse().ok()).unwrap_or(0.0)
}

/// Peak resident memory of process `pid` in MB (`VmHWM`; 0 once it is gone).
pub fn process_peak_rss_mb(pid: u32) -> f64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0.0 };
    text.lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A snapshot of CPU time: this process (total and per live thread name), a PostgreSQL cluster
/// (postmaster with reaped children plus live children) and the whole machine.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    /// CPU seconds of this process, exited threads included.
    pub process: f64,
    /// CPU seconds of live threads of this process, by thread name.
    pub threads: HashMap<String, f64>,
    /// CPU seconds of the PostgreSQL server processes.
    pub postgres: f64,
    /// Busy (non-idle, non-iowait) CPU seconds of the whole machine.
    pub machine_busy: f64,
    /// Bytes this process caused to be written to storage.
    pub process_write_bytes: f64,
    /// Bytes the PostgreSQL processes caused to be written to storage (live processes).
    pub postgres_write_bytes: f64,
}

fn write_bytes(pid: &str) -> f64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/io")) else { return 0.0 };
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("write_bytes:") {
            return value.trim().parse().unwrap_or(0.0);
        }
    }
    0.0
}

impl CpuSnapshot {
    /// Takes a snapshot; `postmaster` is the PID of a PostgreSQL server to account for.
    pub fn take(postmaster: Option<u32>) -> CpuSnapshot {
        let mut snapshot = CpuSnapshot::default();
        if let Some((_, cpu, _)) = std::fs::read_to_string("/proc/self/stat").ok().and_then(|t| stat_cpu(&t, false)) {
            snapshot.process = cpu;
        }
        snapshot.process_write_bytes = write_bytes("self");
        if let Ok(entries) = std::fs::read_dir("/proc/self/task") {
            for entry in entries.flatten() {
                let path = entry.path().join("stat");
                if let Some((comm, cpu, _)) = std::fs::read_to_string(path).ok().and_then(|t| stat_cpu(&t, false)) {
                    *snapshot.threads.entry(comm).or_insert(0.0) += cpu;
                }
            }
        }
        if let Some(pid) = postmaster {
            if let Some((_, cpu, _)) =
                std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|t| stat_cpu(&t, true))
            {
                snapshot.postgres += cpu;
                snapshot.postgres_write_bytes += write_bytes(&pid.to_string());
            }
            if let Ok(entries) = std::fs::read_dir("/proc") {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().to_string();
                    if !name.bytes().all(|b| b.is_ascii_digit()) {
                        continue;
                    }
                    let stat =
                        std::fs::read_to_string(entry.path().join("stat")).ok().and_then(|t| stat_cpu(&t, false));
                    if let Some((_, cpu, ppid)) = stat
                        && ppid == pid
                    {
                        snapshot.postgres += cpu;
                        snapshot.postgres_write_bytes += write_bytes(&name);
                    }
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = text.lines().next()
        {
            let values: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
            let total: f64 = values.iter().take(8).sum();
            let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
            snapshot.machine_busy = (total - idle) / TICKS_PER_SECOND;
        }
        snapshot
    }

    /// CPU seconds of live threads whose name starts with `prefix`, between `self` and `later`.
    pub fn threads_delta(&self, later: &CpuSnapshot, prefix: &str) -> f64 {
        let sum =
            |s: &CpuSnapshot| s.threads.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum::<f64>();
        (sum(later) - sum(self)).max(0.0)
    }
}

/// Where CPU went during one measured phase (seconds), and what was written.
#[derive(Debug, Clone, Default)]
pub struct CpuUse {
    /// Wall-clock seconds of the phase.
    pub wall: f64,
    /// Veritrail's HTTP/async runtime, including its blocking pool (query readers).
    pub vt_runtime: f64,
    /// Veritrail's ledger writer thread.
    pub vt_writer: f64,
    /// Veritrail's indexer thread.
    pub vt_indexer: f64,
    /// The benchmark's own client threads (HTTP or PostgreSQL).
    pub client: f64,
    /// PostgreSQL server processes.
    pub postgres: f64,
    /// Everything else on the machine (other users of the shared box).
    pub other: f64,
    /// Bytes written to storage by Veritrail (this process).
    pub vt_write_bytes: f64,
    /// Bytes written to storage by PostgreSQL.
    pub pg_write_bytes: f64,
}

impl CpuUse {
    /// The use between two snapshots; `client` is the CPU the client threads reported themselves.
    pub fn between(before: &CpuSnapshot, after: &CpuSnapshot, wall: Duration, client: f64) -> CpuUse {
        let process = (after.process - before.process).max(0.0);
        let vt_writer = before.threads_delta(after, "veritrail-write");
        let vt_indexer = before.threads_delta(after, "veritrail-index");
        let pg_client = before.threads_delta(after, "pg-client");
        let main = before.threads_delta(after, "veritrail-bench");
        let client = client + pg_client + main;
        let vt_runtime = (process - vt_writer - vt_indexer - client).max(0.0);
        let postgres = (after.postgres - before.postgres).max(0.0);
        let machine = (after.machine_busy - before.machine_busy).max(0.0);
        CpuUse {
            wall: wall.as_secs_f64(),
            vt_runtime,
            vt_writer,
            vt_indexer,
            client,
            postgres,
            other: (machine - process - postgres).max(0.0),
            vt_write_bytes: (after.process_write_bytes - before.process_write_bytes).max(0.0),
            pg_write_bytes: (after.postgres_write_bytes - before.postgres_write_bytes).max(0.0),
        }
    }

    /// Adds another phase's use.
    pub fn add(&mut self, other: &CpuUse) {
        self.wall += other.wall;
        self.vt_runtime += other.vt_runtime;
        self.vt_writer += other.vt_writer;
        self.vt_indexer += other.vt_indexer;
        self.client += other.client;
        self.postgres += other.postgres;
        self.other += other.other;
        self.vt_write_bytes += other.vt_write_bytes;
        self.pg_write_bytes += other.pg_write_bytes;
    }

    /// One line: cores used on average per component.
    pub fn summary(&self) -> String {
        let w = self.wall.max(1e-9);
        format!(
            "cores used: vt-runtime {:.2}, vt-writer {:.2}, vt-indexer {:.2}, bench client {:.2}, postgres {:.2}, other processes {:.2}",
            self.vt_runtime / w,
            self.vt_writer / w,
            self.vt_indexer / w,
            self.client / w,
            self.postgres / w,
            self.other / w
        )
    }
}
