//! `veritrail-bench`: the benchmarks of BENCHMARKS.md (`cargo xtask bench [all|ingest|latency|query|baseline]`).
//!
//! Every Veritrail figure is measured next to its baseline — a naive PostgreSQL `audit_events`
//! table — in the same run, in interleaved rounds (Veritrail round, PostgreSQL round, ...) so
//! that the noise of a shared 2-core machine hits both sides alike. Tables show the median of
//! the rounds with the range in brackets.

mod alerts;
mod backend;
mod events;
mod ledger;
mod pg;
mod report;
mod stats;
mod vt;

#[cfg(test)]
mod tests;

/// The allocator of the `veritrail` binary, so that the in-process server measures like it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::{Parser, ValueEnum};

use crate::events::{GeneratedEvent, Generator, PgRow, Rng};
use crate::pg::PgCluster;
use crate::report::{IngestRound, LatencyRound, QueryRound, Results};
use crate::stats::{CpuSnapshot, CpuUse};
use crate::vt::{Schedule, VtServer};

/// Which benchmarks to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    /// Ingest, query and latency, each with its PostgreSQL baseline.
    All,
    /// Durable HTTP ingest in batches vs PostgreSQL COPY.
    Ingest,
    /// Single-event ack latency at a paced rate vs PostgreSQL single-row INSERT.
    Latency,
    /// Filtered query latency on the loaded events vs the equivalent PostgreSQL query (loads first).
    Query,
    /// Only the PostgreSQL side of all three.
    Baseline,
    /// The ledger's own figures: checkpoint lag under load, inclusion proofs, verify speed.
    Ledger,
    /// `verify --data-dir` speed alone, on a store loaded straight through `SqliteStore` appends.
    Verify,
    /// Inclusion and consistency proofs over HTTP on a large tree loaded straight into the store.
    Proofs,
    /// The rule engine: ingest with the default pack on vs the engine off, and alert latency
    /// under full ingest load.
    Alerts,
    /// The PostgreSQL backend (issue 4): ingest over HTTP into one node and into two nodes
    /// sharing a database (one tenant, and --tenants tenants), next to the embedded store and
    /// the naive COPY baseline; then queries.
    Postgres,
}

/// Benchmarks of Veritrail against a naive PostgreSQL audit table, in the same run.
#[derive(Parser, Debug)]
#[command(name = "veritrail-bench", version, about)]
struct Cli {
    /// What to run.
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Events to load [default: 1,000,000; 100,000 with --quick].
    #[arg(long)]
    events: Option<u64>,
    /// Short run (about 2 minutes): 100k events, short latency and query phases.
    #[arg(long)]
    quick: bool,
    /// Concurrent keep-alive connections of the ingest clients (HTTP and COPY alike).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Events per HTTP batch and rows per COPY statement.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Interleaved rounds per benchmark [default: 5 ingest / 3 latency; 3 / 2 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// Paced rate of the latency benchmark, events per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Concurrent connections of the latency benchmark.
    #[arg(long, default_value_t = 8)]
    latency_connections: usize,
    /// Seconds per latency round and system [default: 10; 4 with --quick].
    #[arg(long)]
    latency_secs: Option<u64>,
    /// Queries per system [default: 1000; 300 with --quick].
    #[arg(long)]
    queries: Option<usize>,
    /// Where the temporary data directories go (must be on the disk you want to measure).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Skip the PostgreSQL baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Write raw latency samples (`index,scheduled_ms,latency_ms` CSV per system and round) here.
    #[arg(long)]
    dump_dir: Option<PathBuf>,
    /// Print a few generated events (wire JSON and the PostgreSQL row) and exit.
    #[arg(long)]
    show_events: bool,
    /// `verify` / `proofs`: the data directory to load (kept afterwards) or to reuse if an
    /// earlier run loaded it [default: a temporary directory under the work directory, deleted].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// `proofs`: inclusion proofs (and as many consistency proofs) per round.
    #[arg(long, default_value_t = 2000)]
    proofs: usize,
    /// `postgres`: tenants of the two extra deployments "PG 1 node, N tenants" and "PG 2 nodes,
    /// N tenants" (batch j goes to tenant j mod N; client i writes tenant i mod N; with two
    /// nodes, tenant t is served by node t mod 2). Must divide --clients. 1 leaves them out.
    #[arg(long, default_value_t = 2)]
    tenants: usize,
}

/// The resolved plan of a run.
#[derive(Debug, Clone)]
struct Plan {
    events: u64,
    clients: usize,
    batch: usize,
    ingest_rounds: usize,
    latency_rounds: usize,
    latency_secs: u64,
    rate: f64,
    latency_connections: usize,
    queries: usize,
    query_rounds: usize,
    /// Tenants of the multi-tenant deployments of `bench postgres` (1: none).
    tenants: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The in-process server's log, on stderr, only when asked for (`RUST_LOG=warn`): a failed
    // round then says what the store refused.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let plan = Plan {
        events: cli.events.unwrap_or(if cli.quick { 100_000 } else { 1_000_000 }).max(cli.batch as u64),
        clients: cli.clients.max(1),
        batch: cli.batch.max(1),
        ingest_rounds: cli.rounds.unwrap_or(if cli.quick { 3 } else { 5 }).max(1),
        latency_rounds: cli.rounds.map(|r| r.min(5)).unwrap_or(if cli.quick { 2 } else { 3 }).max(1),
        latency_secs: cli.latency_secs.unwrap_or(if cli.quick { 4 } else { 10 }).clamp(2, 600),
        rate: cli.rate.clamp(1.0, 100_000.0),
        latency_connections: cli.latency_connections.clamp(1, 256),
        queries: cli.queries.unwrap_or(if cli.quick { 300 } else { 1000 }).max(10),
        query_rounds: if cli.quick { 3 } else { 5 },
        tenants: cli.tenants.max(1),
    };
    if cli.show_events {
        let generator = Generator::new(1, plan.events, jiff::Timestamp::now());
        let mut total = 0usize;
        for i in 0..1000 {
            let event = generator.event(i);
            total += event.json.len();
            if i < 3 {
                println!("{}\n{:?}\n", event.json, event.row);
            }
        }
        println!("average over 1000 events: {} bytes of JSON", total / 1000);
        return Ok(());
    }
    let work_dir = cli.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_dir)?;
    if cli.which == Which::Ledger {
        println!("{}", report::machine(&work_dir));
        let figures = ledger::run(plan.events, plan.clients, plan.batch, &work_dir)?;
        println!("\n{}", ledger::table(&figures));
        return Ok(());
    }
    if cli.which == Which::Alerts {
        println!("{}", report::machine(&work_dir));
        let (bodies, _, _) = generate_load(&plan, jiff::Timestamp::now())?;
        return alerts::run(&bodies, plan.events, plan.clients, cli.rounds.unwrap_or(3).max(1), &work_dir);
    }
    if cli.which == Which::Postgres {
        println!("{}", report::machine(&work_dir));
        return backend::run(&plan, &work_dir);
    }
    if matches!(cli.which, Which::Verify | Which::Proofs) {
        println!("{}", report::machine(&work_dir));
        let data_dir = ledger::DataDir::new(cli.data_dir.as_deref(), &work_dir)?;
        let loaded = ledger::load_direct(data_dir.path(), plan.events, plan.batch, cli.which == Which::Proofs)?;
        if cli.which == Which::Verify {
            ledger::run_verify(data_dir.path(), cli.rounds.unwrap_or(5).max(1))?;
        } else {
            ledger::run_proofs(data_dir.path(), &loaded, cli.proofs.max(10), cli.rounds.unwrap_or(3).max(1))?;
        }
        return Ok(());
    }
    let run_vt = cli.which != Which::Baseline;
    let load = matches!(cli.which, Which::All | Which::Ingest | Which::Query | Which::Baseline);
    let run_query = matches!(cli.which, Which::All | Which::Query | Which::Baseline);
    let run_latency = matches!(cli.which, Which::All | Which::Latency | Which::Baseline);
    let started = Instant::now();

    let mut results = Results::new(
        format!("{:?}", cli.which).to_lowercase(),
        plan_text(&plan, cli.quick),
        report::machine(&work_dir),
    );
    println!("{}", results.machine);
    println!("plan: {}", results.plan);

    // PostgreSQL first: if it cannot run, say so loudly and go on without the baseline.
    let mut cluster = None;
    if !cli.no_baseline {
        match PgCluster::start(&work_dir) {
            Ok(c) => cluster = Some(c),
            Err(e) => {
                let note = format!("POSTGRESQL BASELINE SKIPPED: {e:#}");
                eprintln!("\n*** {note} ***\n");
                results.notes.push(note);
            }
        }
    } else {
        results.notes.push("PostgreSQL baseline skipped (--no-baseline)".into());
    }
    if cli.which == Which::Baseline && cluster.is_none() {
        return Err(anyhow!("baseline requested but PostgreSQL is not available"));
    }
    let pg_rt = pg::runtime(1)?;
    if let Some(c) = &cluster {
        let version = pg::probe(&pg_rt, c)?;
        println!("postgresql {version} on 127.0.0.1:{} (fsync=on, synchronous_commit=on)", c.port);
        results.pg_version = Some(version);
        pg_rt.block_on(async {
            let client = c.connect().await?;
            for table in ["audit_events", "audit_events_bulk"] {
                pg::create_table(&client, table).await?;
                // Autovacuum is off while loading (it would steal CPU from the next Veritrail
                // round); VACUUM ANALYZE runs explicitly after the load instead.
                client.batch_execute(&format!("ALTER TABLE {table} SET (autovacuum_enabled = off)")).await?;
            }
            Ok::<(), anyhow::Error>(())
        })?;
    }
    let postmaster = cluster.as_ref().and_then(PgCluster::postmaster_pid);

    let vt_dir = tempfile::Builder::new().prefix("veritrail-bench-vt-").tempdir_in(&work_dir)?;
    let mut server = if run_vt { Some(VtServer::start(vt_dir.path())?) } else { None };
    let key = match &server {
        Some(s) => Some(s.create_tenant("bench")?),
        None => None,
    };
    let end = jiff::Timestamp::now();

    if load {
        let t = Instant::now();
        let (bodies, rows, bytes) = generate_load(&plan, end)?;
        println!(
            "generated {} events in {:.1} s ({:.0} bytes of JSON per event on average)",
            plan.events,
            t.elapsed().as_secs_f64(),
            bytes as f64 / plan.events as f64
        );
        results.event_bytes = Some(bytes as f64 / plan.events as f64);
        let rows = Arc::new(rows);
        results.ingest =
            run_ingest(&plan, server.as_ref(), key.as_deref(), cluster.as_ref(), postmaster, &pg_rt, &bodies, &rows)?;
        drop(bodies);
        if let Some(c) = &cluster {
            let t = Instant::now();
            pg_rt.block_on(async {
                let client = c.connect().await?;
                pg::analyze(&client, "audit_events").await
            })?;
            let note = format!(
                "PostgreSQL: VACUUM ANALYZE audit_events after the load took {:.1} s (not counted in the COPY rate)",
                t.elapsed().as_secs_f64()
            );
            println!("{note}");
            results.notes.push(note);
        }
        if run_query {
            results.query = run_queries(
                &plan,
                server.as_ref(),
                key.as_deref(),
                cluster.as_ref(),
                &pg_rt,
                &mut results.notes,
                cli.dump_dir.as_deref(),
            )?;
        }
    }
    if run_latency {
        results.latency =
            run_latency_bench(&plan, server.as_ref(), cluster.as_ref(), postmaster, end, cli.dump_dir.as_deref())?;
    }

    if let Some(s) = server.as_mut() {
        s.stop();
    }
    if let Some(c) = cluster.as_mut() {
        c.stop();
    }
    results.total_secs = started.elapsed().as_secs_f64();
    println!("\n{}", results.markdown());
    Ok(())
}

fn plan_text(plan: &Plan, quick: bool) -> String {
    format!(
        "{}{} events; ingest: {} clients x {} events/batch, {} rounds; latency: {} ev/s over {} connections, {} rounds x {} s per system; queries: {} per system in {} rounds",
        if quick { "--quick: " } else { "" },
        plan.events,
        plan.clients,
        plan.batch,
        plan.ingest_rounds,
        plan.rate,
        plan.latency_connections,
        plan.latency_rounds,
        plan.latency_secs,
        plan.queries,
        plan.query_rounds
    )
}

/// Generates events `first..first + count` of stream `seed` on two threads.
fn generate(seed: u64, total: u64, first: u64, count: u64, end: jiff::Timestamp) -> Result<Vec<GeneratedEvent>> {
    let generator = Generator::new(seed, total, end);
    let half = count / 2;
    let (a, b) = std::thread::scope(|scope| {
        let g = &generator;
        let lower = scope.spawn(move || (first..first + half).map(|i| g.event(i)).collect::<Vec<_>>());
        let upper: Vec<GeneratedEvent> = (first + half..first + count).map(|i| g.event(i)).collect();
        (lower.join(), upper)
    });
    let mut events = a.map_err(|_| anyhow!("generator thread panicked"))?;
    events.extend(b);
    Ok(events)
}

/// The load: NDJSON bodies of `batch` events, the same events as table rows, total JSON bytes.
fn generate_load(plan: &Plan, end: jiff::Timestamp) -> Result<(Vec<Vec<u8>>, Vec<PgRow>, usize)> {
    let events = generate(1, plan.events, 0, plan.events, end)?;
    let mut bodies = Vec::with_capacity(events.len() / plan.batch + 1);
    let mut rows = Vec::with_capacity(events.len());
    let mut body = Vec::with_capacity(plan.batch * 600);
    let mut in_body = 0;
    let mut bytes = 0;
    for event in events {
        bytes += event.json.len();
        body.extend_from_slice(event.json.as_bytes());
        body.push(b'\n');
        in_body += 1;
        if in_body == plan.batch {
            bodies.push(std::mem::replace(&mut body, Vec::with_capacity(plan.batch * 600)));
            in_body = 0;
        }
        rows.push(event.row);
    }
    if in_body > 0 {
        bodies.push(body);
    }
    Ok((bodies, rows, bytes))
}

/// Splits `0..n` into `parts` nearly equal consecutive ranges, aligned to `align`.
fn split(n: usize, parts: usize, align: usize) -> Vec<std::ops::Range<usize>> {
    let units = n.div_ceil(align);
    let mut ranges = Vec::new();
    for p in 0..parts {
        let lo = (units * p / parts * align).min(n);
        let hi = (units * (p + 1) / parts * align).min(n);
        if hi > lo {
            ranges.push(lo..hi);
        }
    }
    ranges
}

#[allow(clippy::too_many_arguments)]
fn run_ingest(
    plan: &Plan,
    server: Option<&VtServer>,
    key: Option<&str>,
    cluster: Option<&PgCluster>,
    postmaster: Option<u32>,
    pg_rt: &tokio::runtime::Runtime,
    bodies: &[Vec<u8>],
    rows: &Arc<Vec<PgRow>>,
) -> Result<Option<report::IngestResults>> {
    println!("\n== ingest: {} events in {} interleaved rounds ==", rows.len(), plan.ingest_rounds);
    let ranges = split(rows.len(), plan.ingest_rounds, plan.batch);
    let pg_clients = match cluster {
        Some(c) => Some(pg_rt.block_on(async {
            let mut clients = Vec::new();
            for _ in 0..plan.clients {
                clients.push(Arc::new(c.connect().await?));
            }
            let bulk = Arc::new(c.connect().await?);
            Ok::<_, anyhow::Error>((clients, bulk))
        })?),
        None => None,
    };
    let mut out = report::IngestResults::default();
    for (round, range) in ranges.iter().enumerate() {
        let n = range.len() as f64;
        let mut line = format!("round {}: {} events", round + 1, range.len());
        let mut record = IngestRound { events: range.len(), ..IngestRound::default() };
        if let (Some(server), Some(key)) = (server, key) {
            let commits0 = server.metric("veritrail_commits_total")?;
            let commit_secs0 = server.metric("veritrail_commit_duration_seconds_sum")?;
            let before = CpuSnapshot::take(postmaster);
            let t = Instant::now();
            let batches = &bodies[range.start / plan.batch..range.end.div_ceil(plan.batch)];
            let run = vt::ingest(&server.base, key, batches, plan.clients)?;
            let acked = t.elapsed();
            let lag = server.wait_indexed(Duration::from_secs(900))?;
            let after = CpuSnapshot::take(postmaster);
            let commits = server.metric("veritrail_commits_total")? - commits0;
            let commit_secs = server.metric("veritrail_commit_duration_seconds_sum")? - commit_secs0;
            record.vt_ack_rate = Some(n / acked.as_secs_f64());
            record.vt_visible_rate = Some(n / (acked + lag).as_secs_f64());
            record.vt_index_tail = Some(lag.as_secs_f64());
            record.vt_cpu = Some(CpuUse::between(&before, &after, acked + lag, run.client_cpu));
            record.vt_commits = Some(commits);
            record.vt_commit_secs = Some(commit_secs);
            record.vt_retries = run.retries;
            line += &format!(
                " | veritrail acked {:.0}/s, query-visible {:.0}/s (index tail {:.2} s), {:.0} events/commit, retries {}",
                n / acked.as_secs_f64(),
                n / (acked + lag).as_secs_f64(),
                lag.as_secs_f64(),
                n / commits.max(1.0),
                run.retries
            );
        }
        if let Some((clients, bulk)) = &pg_clients {
            let before = CpuSnapshot::take(postmaster);
            let elapsed = pg_rt.block_on(pg::within(
                Duration::from_secs(900),
                "COPY",
                pg::copy_rows(clients, "audit_events", rows.clone(), range.clone(), plan.batch),
            ))?;
            let after = CpuSnapshot::take(postmaster);
            record.pg_copy_rate = Some(n / elapsed.as_secs_f64());
            record.pg_cpu = Some(CpuUse::between(&before, &after, elapsed, 0.0));
            let before = CpuSnapshot::take(postmaster);
            let bulk_elapsed = pg_rt.block_on(pg::within(
                Duration::from_secs(900),
                "bulk COPY",
                pg::copy_rows(
                    std::slice::from_ref(bulk),
                    "audit_events_bulk",
                    rows.clone(),
                    range.clone(),
                    range.len(),
                ),
            ))?;
            let after = CpuSnapshot::take(postmaster);
            record.pg_bulk_rate = Some(n / bulk_elapsed.as_secs_f64());
            record.pg_bulk_cpu = Some(CpuUse::between(&before, &after, bulk_elapsed, 0.0));
            line += &format!(
                " | postgres COPY x{} of {} rows {:.0}/s, one bulk COPY {:.0}/s",
                plan.clients,
                plan.batch,
                n / elapsed.as_secs_f64(),
                n / bulk_elapsed.as_secs_f64()
            );
        }
        println!("{line}");
        for cpu in [&record.vt_cpu, &record.pg_cpu, &record.pg_bulk_cpu].into_iter().flatten() {
            println!("    {}", cpu.summary());
        }
        out.rounds.push(record);
    }
    Ok(Some(out))
}

fn run_queries(
    plan: &Plan,
    server: Option<&VtServer>,
    key: Option<&str>,
    cluster: Option<&PgCluster>,
    pg_rt: &tokio::runtime::Runtime,
    notes: &mut Vec<String>,
    dump_dir: Option<&std::path::Path>,
) -> Result<Option<report::QueryResults>> {
    println!("\n== query: actor_id + action auth.* + limit 100, {} queries per system ==", plan.queries);
    let mut rng = Rng::new(3);
    let actors: Vec<String> = (0..plan.queries).map(|_| events::actor_id(events::actor_number(&mut rng))).collect();
    let warmup: Vec<String> = (0..20).map(|_| events::actor_id(events::actor_number(&mut rng))).collect();
    let agent = vt::agent(1);
    let auth = key.map(|k| format!("Bearer {k}"));
    let pg_client = match cluster {
        Some(c) => Some(pg_rt.block_on(async {
            let client = c.connect().await?;
            let statement = client.prepare(&pg::query_sql("audit_events")).await?;
            Ok::<_, anyhow::Error>((client, statement))
        })?),
        None => None,
    };
    if let Some((client, _)) = &pg_client
        && let Some(actor) = actors.first()
    {
        let plan_text = pg_rt.block_on(pg::explain(client, "audit_events", actor))?;
        println!("postgresql plan:\n{plan_text}");
        notes.push(format!(
            "PostgreSQL plan of the query: {}",
            plan_text.lines().map(str::trim).collect::<Vec<_>>().join(" / ")
        ));
    }
    // Warm both caches alike.
    for actor in &warmup {
        if let (Some(server), Some(auth)) = (server, &auth) {
            vt::query(&agent, &server.base, auth, actor)?;
        }
        if let Some((client, statement)) = &pg_client {
            pg_rt.block_on(pg::run_query(client, statement, actor))?;
        }
    }
    let mut out = report::QueryResults::default();
    let mut mismatches = 0usize;
    let mut csv = String::from("round,actor,veritrail_events,veritrail_ms,postgres_rows,postgres_ms\n");
    for (round, range) in split(actors.len(), plan.query_rounds, 1).into_iter().enumerate() {
        let mut record = QueryRound::default();
        let mut vt_counts = Vec::new();
        let mut pg_rows = Vec::new();
        if let (Some(server), Some(auth)) = (server, &auth) {
            let mut latencies = Vec::new();
            for actor in &actors[range.clone()] {
                let (latency, count) = vt::query(&agent, &server.base, auth, actor)?;
                latencies.push(latency);
                vt_counts.push(count);
            }
            record.vt = latencies;
        }
        if let Some((client, statement)) = &pg_client {
            let mut latencies = Vec::new();
            for (i, actor) in actors[range.clone()].iter().enumerate() {
                let t = Instant::now();
                let rows = pg_rt.block_on(pg::run_query(client, statement, actor))?;
                latencies.push(stats::ms(t.elapsed()));
                if let Some(vt_count) = vt_counts.get(i)
                    && *vt_count != rows
                {
                    mismatches += 1;
                }
                record.matched += rows;
                pg_rows.push(rows);
            }
            record.pg = latencies;
        } else {
            record.matched = vt_counts.iter().sum();
        }
        for (i, actor) in actors[range.clone()].iter().enumerate() {
            let cell = |v: Option<String>| v.unwrap_or_default();
            csv.push_str(&format!(
                "{},{actor},{},{},{},{}\n",
                round + 1,
                cell(vt_counts.get(i).map(|c| c.to_string())),
                cell(record.vt.get(i).map(|l| format!("{l:.3}"))),
                cell(pg_rows.get(i).map(|c| c.to_string())),
                cell(record.pg.get(i).map(|l| format!("{l:.3}")))
            ));
        }
        println!(
            "round {}: {} queries | veritrail p50 {:.2} ms p95 {:.2} ms | postgres p50 {:.2} ms p95 {:.2} ms",
            round + 1,
            range.len(),
            stats::percentile(&record.vt, 50.0),
            stats::percentile(&record.vt, 95.0),
            stats::percentile(&record.pg, 50.0),
            stats::percentile(&record.pg, 95.0)
        );
        out.rounds.push(record);
    }
    if let Some(dir) = dump_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("queries.csv"), csv)?;
    }
    out.queries = actors.len();
    out.mismatches = if server.is_some() && pg_client.is_some() { Some(mismatches) } else { None };
    if mismatches > 0 {
        notes.push(format!(
            "WARNING: {mismatches} queries returned a different number of events from Veritrail and PostgreSQL"
        ));
    }
    Ok(Some(out))
}

fn run_latency_bench(
    plan: &Plan,
    server: Option<&VtServer>,
    cluster: Option<&PgCluster>,
    postmaster: Option<u32>,
    end: jiff::Timestamp,
    dump_dir: Option<&std::path::Path>,
) -> Result<Option<report::LatencyResults>> {
    let per_round = (plan.rate * plan.latency_secs as f64) as usize;
    let warmup = (plan.rate as usize).min(per_round / 4);
    println!(
        "\n== latency: single events at {} ev/s (open loop, {} connections), {} rounds x {} s per system ==",
        plan.rate, plan.latency_connections, plan.latency_rounds, plan.latency_secs
    );
    let total = per_round * plan.latency_rounds * 2;
    let events = generate(2, total as u64, 0, total as u64, end)?;
    let key = match server {
        Some(s) => Some(s.create_tenant("bench-latency")?),
        None => None,
    };
    let schedule = Schedule { rate: plan.rate, connections: plan.latency_connections, warmup };
    let mut out = report::LatencyResults::default();
    for round in 0..plan.latency_rounds {
        let mut record = LatencyRound::default();
        let vt_events = &events[round * 2 * per_round..(round * 2 + 1) * per_round];
        let pg_events = &events[(round * 2 + 1) * per_round..(round * 2 + 2) * per_round];
        if let (Some(server), Some(key)) = (server, &key) {
            let url = format!("{}/v1/events", server.base);
            let auth = format!("Bearer {key}");
            let before = CpuSnapshot::take(postmaster);
            let (latencies, run) = vt::open_loop(
                schedule,
                per_round,
                |_| Ok(vt::agent(1)),
                |agent, i| vt::post_one(agent, &url, &auth, vt_events[i].json.as_bytes()),
            )?;
            let after = CpuSnapshot::take(postmaster);
            record.vt_cpu = Some(CpuUse::between(&before, &after, run.elapsed, run.client_cpu));
            dump(dump_dir, &format!("latency-veritrail-{}.csv", round + 1), &latencies, plan.rate)?;
            record.vt = latencies.into_iter().map(|(_, l)| l).collect();
        }
        if let Some(cluster) = cluster {
            let conninfo = cluster.conninfo();
            let before = CpuSnapshot::take(postmaster);
            let (latencies, run) = vt::open_loop(
                schedule,
                per_round,
                |_| {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    let (client, statement) = rt.block_on(async {
                        let client = pg::connect(&conninfo).await?;
                        let statement = client.prepare(&pg::insert_sql("audit_events")).await?;
                        Ok::<_, anyhow::Error>((client, statement))
                    })?;
                    Ok((rt, client, statement))
                },
                |(rt, client, statement), i| {
                    rt.block_on(pg::within(
                        Duration::from_secs(60),
                        "insert",
                        pg::insert_one(client, statement, "tenant-latency", &pg_events[i].row),
                    ))
                },
            )?;
            let after = CpuSnapshot::take(postmaster);
            record.pg_cpu = Some(CpuUse::between(&before, &after, run.elapsed, run.client_cpu));
            dump(dump_dir, &format!("latency-postgres-{}.csv", round + 1), &latencies, plan.rate)?;
            record.pg = latencies.into_iter().map(|(_, l)| l).collect();
        }
        println!(
            "round {}: veritrail p50 {:.2} ms p99 {:.2} ms max {:.2} ms | postgres p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            round + 1,
            stats::percentile(&record.vt, 50.0),
            stats::percentile(&record.vt, 99.0),
            stats::percentile(&record.vt, 100.0),
            stats::percentile(&record.pg, 50.0),
            stats::percentile(&record.pg, 99.0),
            stats::percentile(&record.pg, 100.0)
        );
        for cpu in [&record.vt_cpu, &record.pg_cpu].into_iter().flatten() {
            println!("    {}", cpu.summary());
        }
        out.rounds.push(record);
    }
    Ok(Some(out))
}

/// Writes latency samples as CSV when a dump directory was given.
fn dump(dir: Option<&std::path::Path>, name: &str, samples: &[(usize, f64)], rate: f64) -> Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    std::fs::create_dir_all(dir)?;
    let mut text = String::from("index,scheduled_ms,latency_ms\n");
    for (i, latency) in samples {
        text.push_str(&format!("{i},{:.3},{latency:.3}\n", *i as f64 * 1000.0 / rate));
    }
    std::fs::write(dir.join(name), text)?;
    Ok(())
}
