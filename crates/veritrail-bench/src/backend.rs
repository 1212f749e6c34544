//! `cargo xtask bench postgres`: the PostgreSQL backend (issue 4) next to the embedded store and
//! the naive COPY baseline, in interleaved rounds on one throw-away cluster and the same events.
//!
//! Every Veritrail node is the real release binary run as an operator runs it, `veritrail serve`,
//! as a child process: the embedded store over a fresh data directory; one node with
//! `--database-url` of a fresh database on the bench cluster; two nodes sharing another fresh
//! database, the ingest clients split between them, all into one tenant. Each round loads the
//! round's slice of the events into every system (which goes first rotates), then checks that
//! each Veritrail ledger holds every event of the round exactly once at dense seqs (read back
//! with `GET /v1/ledger/records`; on PostgreSQL also `ledger_heads.size = count(records)` in
//! SQL), so a fast but lossy round fails the run. After the rounds, the query mix of
//! `bench query` runs against the embedded store, the one-node database and the naive table.
//!
//! With `--tenants N` (default 2; 1: none) two more deployments, each on its own database, take
//! the same events split over N tenants (batch `j` to tenant `j mod N`, client `i` writing tenant
//! `i mod N`): one node, and two nodes with tenant `t` on node `t mod 2`. One tenant's nodes
//! serialise on its head row by design; these two show whether a second node adds throughput
//! across tenants (2 nodes against 1 node on the same tenants). Every check runs per tenant.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::Plan;
use crate::events::{self, PgRow, Rng};
use crate::pg::{self, PgCluster};
use crate::stats::{CpuSnapshot, median, min_max, percentile, process_cpu};
use crate::vt;

/// The master key of the benchmark's databases (base64 of the bytes 0..32: throw-away data).
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Records per `GET /v1/ledger/records` page of the completeness check (the server's maximum).
const RECORDS_PAGE: usize = 10_000;

/// One `veritrail serve` child process.
pub(crate) struct Node {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
}

impl Node {
    /// Starts `binary serve` on a free loopback port, on the embedded store in `data_dir` or on
    /// the database at `database_url`, and waits until it answers `/healthz`.
    fn start(binary: &Path, data_dir: &Path, database_url: Option<&str>) -> Result<Node> {
        Node::start_with(binary, data_dir, database_url, None)
    }

    /// [`Node::start`] with a configuration file (`--config`).
    pub(crate) fn start_with(
        binary: &Path,
        data_dir: &Path,
        database_url: Option<&str>,
        config: Option<&Path>,
    ) -> Result<Node> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("VERITRAIL_BOOTSTRAP_TOKEN", vt::BOOTSTRAP_TOKEN)
            .env("VERITRAIL_LOG", "warn")
            .env_remove("VERITRAIL_DATABASE_URL")
            .env_remove("VERITRAIL_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            command.args(["--database-url", url]).env("VERITRAIL_MASTER_KEY", MASTER_KEY);
        }
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let child = command.spawn().with_context(|| format!("cannot run {}", binary.display()))?;
        let mut node = Node { child, base: format!("http://127.0.0.1:{port}") };
        let agent = vt::agent(1);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = node.child.try_wait()? {
                bail!("veritrail serve exited at start: {status}");
            }
            if let Ok(response) = agent.get(format!("{}/healthz", node.base)).call()
                && response.status().as_u16() == 200
            {
                return Ok(node);
            }
            if Instant::now() > deadline {
                bail!("veritrail serve did not answer /healthz within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (the server commits and closes), then waits; SIGKILL after 60 s.
    pub(crate) fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("bench: veritrail node {} did not stop within 60 s; killing it", self.base);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What one round of one system measured.
#[derive(Debug, Default, Clone)]
struct Round {
    /// Events per second until the last acknowledgement (rows per second for COPY).
    rate: f64,
    /// Seconds until the last acknowledgement.
    wall: f64,
    /// CPU seconds of the Veritrail processes, of PostgreSQL, of the benchmark's clients and of
    /// everything else on the machine, during those seconds.
    vt_cpu: f64,
    pg_cpu: f64,
    client_cpu: f64,
    other_cpu: f64,
    /// Group commits and the seconds they took (summed over nodes).
    commits: f64,
    commit_secs: f64,
    /// Seconds after the last ack until every node's rule engine (and index) had caught up.
    tail: f64,
    /// Records in the round's stretch of the ledger that the server wrote itself (alerts, reads).
    server_events: usize,
    /// 503/429 answers retried.
    retries: u64,
    /// What the deployment's PostgreSQL backends were doing, sampled during the round.
    activity: Activity,
    /// Several tenants: per tenant, its acknowledged events and the seconds until its last ack.
    per_tenant: Vec<(usize, f64)>,
}

/// One tenant's ledger in a deployment.
struct Ledger {
    tenant: String,
    key: String,
    /// The seq the next completeness check of this ledger starts reading at.
    checked: u64,
}

/// A Veritrail deployment under test: one tenant on one or two nodes (every client into that
/// tenant, client `i` on node `i mod nodes`), or several tenants (batch `j` of a round into tenant
/// `j mod tenants`, client `i` writing tenant `i mod tenants` on node `tenant mod nodes`).
struct System {
    name: String,
    nodes: Vec<Node>,
    tenants: Vec<Ledger>,
    /// The database of a PostgreSQL deployment (for the SQL check of the ledger).
    database: Option<String>,
    rounds: Vec<Round>,
    _dirs: Vec<tempfile::TempDir>,
}

impl System {
    fn bases(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base.clone()).collect()
    }

    /// A metric summed over the nodes.
    fn metric(&self, name: &str) -> Result<f64> {
        let mut sum = 0.0;
        for node in &self.nodes {
            sum += vt::metric_at(&node.base, name)?;
        }
        Ok(sum)
    }

    fn cpu(&self) -> f64 {
        self.nodes.iter().map(|n| process_cpu(n.pid())).sum()
    }
}

/// Runs the benchmark and prints its tables.
pub fn run(plan: &Plan, work_dir: &Path) -> Result<()> {
    let binary = veritrail_binary()?;
    println!("veritrail binary: {}", binary.display());
    println!("load average before: {}", load_average());
    let mut cluster = PgCluster::start(work_dir).context("the PostgreSQL backend needs the bench cluster")?;
    let postmaster = cluster.postmaster_pid();
    let pg_rt = pg::runtime(1)?;
    let version = pg::probe(&pg_rt, &cluster)?;
    println!("postgresql {version} on 127.0.0.1:{} (fsync=on, synchronous_commit=on)", cluster.port);
    pg_rt.block_on(async {
        let client = cluster.connect().await?;
        pg::create_table(&client, "audit_events").await?;
        client.batch_execute("ALTER TABLE audit_events SET (autovacuum_enabled = off)").await?;
        Ok::<(), anyhow::Error>(())
    })?;
    let tenants = plan.tenants;
    if tenants > 1 && !plan.clients.is_multiple_of(tenants) {
        bail!("--tenants {tenants} must divide --clients {} (the same clients per tenant)", plan.clients);
    }
    let mut databases = vec!["veritrail_one", "veritrail_two"];
    if tenants > 1 {
        databases.extend(["veritrail_one_tenants", "veritrail_two_tenants"]);
    }
    for db in &databases {
        cluster.create_database(db)?;
    }

    let (bodies, rows, bytes) = crate::generate_load(plan, jiff::Timestamp::now())?;
    let ids = body_ids(&bodies)?;
    println!(
        "generated {} events ({:.0} bytes of JSON per event on average)",
        rows.len(),
        bytes as f64 / rows.len().max(1) as f64
    );
    let rows = Arc::new(rows);

    let mut systems = vec![
        start_system(&binary, work_dir, "embedded".into(), None, 1, 1)?,
        start_system(&binary, work_dir, "PG 1 node".into(), Some((&cluster, "veritrail_one")), 1, 1)?,
        start_system(&binary, work_dir, "PG 2 nodes".into(), Some((&cluster, "veritrail_two")), 2, 1)?,
    ];
    if tenants > 1 {
        for (nodes, db) in [(1, "veritrail_one_tenants"), (2, "veritrail_two_tenants")] {
            let name = format!("PG {nodes} node{}, {tenants} tenants", if nodes > 1 { "s" } else { "" });
            systems.push(start_system(&binary, work_dir, name, Some((&cluster, db)), nodes, tenants)?);
        }
    }
    // The turns of a round: every Veritrail deployment, then the naive COPY.
    let turns = systems.len() + 1;
    let copy_clients = pg_rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..plan.clients {
            clients.push(Arc::new(cluster.connect().await?));
        }
        Ok::<_, anyhow::Error>(clients)
    })?;
    let mut copy_rounds: Vec<Round> = Vec::new();

    println!(
        "\n== ingest: {} events in {} interleaved rounds; {} clients x {} events per batch (per COPY) ==",
        rows.len(),
        plan.ingest_rounds,
        plan.clients,
        plan.batch
    );
    let started = Instant::now();
    for (round, range) in crate::split(rows.len(), plan.ingest_rounds, plan.batch).into_iter().enumerate() {
        let batches = &bodies[range.start / plan.batch..range.end.div_ceil(plan.batch)];
        let round_ids = &ids[range.clone()];
        // Which system goes first rotates, so that warm caches and disk state favour none.
        for turn in 0..turns {
            let which = (turn + round) % turns;
            if which == systems.len() {
                let measured = copy_round(&pg_rt, &copy_clients, &rows, range.clone(), plan.batch, postmaster)?;
                println!("round {} naive COPY: {}", round + 1, summary(&measured, range.len()));
                copy_rounds.push(measured);
                continue;
            }
            let system = &mut systems[which];
            let sampler = system.database.clone().map(|db| (&cluster, db));
            let sampler = sampler.as_ref().map(|(cluster, db)| (*cluster, db.as_str()));
            let measured = ingest_round(system, batches, round_ids, plan.batch, plan.clients, postmaster, sampler)?;
            if let Some(db) = &system.database {
                for ledger in &system.tenants {
                    check_sql(&pg_rt, &cluster, db, &ledger.tenant, ledger.checked)?;
                }
            }
            let mut tenants_text = String::new();
            if system.tenants.len() > 1 {
                let parts: Vec<String> = measured
                    .per_tenant
                    .iter()
                    .enumerate()
                    .map(|(t, (events, secs))| {
                        format!("tenant {} {events} in {secs:.2} s ({:.0}/s)", t + 1, *events as f64 / secs.max(1e-9))
                    })
                    .collect();
                tenants_text = format!(" in {} tenants ({})", system.tenants.len(), parts.join(", "));
            }
            println!(
                "round {} {}: {} | ledger complete: {} events at dense seqs{tenants_text}, {} records written by the server",
                round + 1,
                system.name,
                summary(&measured, range.len()),
                round_ids.len(),
                measured.server_events
            );
            system.rounds.push(measured);
        }
    }
    println!("ingest rounds took {:.0} s", started.elapsed().as_secs_f64());

    // What autovacuum would do (the naive table had it off while loading): statistics for the
    // planner before the queries.
    let t = Instant::now();
    pg_rt.block_on(async {
        let client = cluster.connect().await?;
        pg::analyze(&client, "audit_events").await?;
        for db in ["veritrail_one", "veritrail_two"] {
            let client = pg::connect(&cluster.conninfo_of(db)).await?;
            client.batch_execute("ANALYZE").await?;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    println!(
        "VACUUM ANALYZE audit_events and ANALYZE of both Veritrail databases took {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let queries = run_queries(plan, &systems[..2], &pg_rt, &cluster)?;
    drop(copy_clients);
    for system in &mut systems {
        for node in &mut system.nodes {
            node.stop();
        }
    }
    cluster.stop();
    println!("load average after: {}", load_average());
    print_table(plan, &systems[..3], &copy_rounds, &queries);
    if systems.len() > 3 {
        print_tenants_table(plan, &systems);
    }
    for system in &systems[1..] {
        let mut total = Activity::default();
        for round in &system.rounds {
            total.add(&round.activity);
        }
        println!("\n{}", total.table(&system.name));
    }
    Ok(())
}

/// Samples of `pg_stat_activity` for one database: how often a backend was seen in each
/// (state, wait event, statement) combination, and how many samples were taken.
#[derive(Debug, Default, Clone)]
struct Activity {
    samples: u64,
    seen: HashMap<String, u64>,
}

impl Activity {
    fn add(&mut self, other: &Activity) {
        self.samples += other.samples;
        for (key, count) in &other.seen {
            *self.seen.entry(key.clone()).or_insert(0) += count;
        }
    }

    /// The most frequent combinations, as shares of the samples (a share is the average number
    /// of backends in that state: with two nodes, two backends can be busy at once).
    fn table(&self, name: &str) -> String {
        let mut rows: Vec<(&String, &u64)> = self.seen.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut text = format!(
            "{name}: pg_stat_activity of its database every 10 ms during ingest ({} samples; share = backends in that state on average)\n| share | state | wait event | statement |\n|---|---|---|---|\n",
            self.samples
        );
        for (key, count) in rows.into_iter().take(14) {
            let share = *count as f64 / self.samples.max(1) as f64;
            text += &format!("| {share:.2} | {key} |\n");
        }
        text
    }
}

/// A thread sampling `pg_stat_activity` of one database until stopped.
struct ActivitySampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<Activity>>,
}

impl ActivitySampler {
    fn start(cluster: &PgCluster, db: &str) -> ActivitySampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (conninfo, db, flag) = (cluster.conninfo(), db.to_string(), stop.clone());
        let thread = std::thread::spawn(move || -> Result<Activity> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let client = pg::connect(&conninfo).await?;
                let statement = client
                    .prepare(
                        "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'on CPU'),
                                regexp_replace(left(query, 48), '\\s+', ' ', 'g')
                         FROM pg_stat_activity
                         WHERE datname = $1 AND backend_type = 'client backend' AND state <> 'idle'
                           AND pid <> pg_backend_pid()",
                    )
                    .await?;
                let mut activity = Activity::default();
                while !flag.load(Ordering::Relaxed) {
                    for row in client.query(&statement, &[&db]).await? {
                        let (state, wait, query): (String, String, String) = (row.get(0), row.get(1), row.get(2));
                        *activity.seen.entry(format!("{state} | {wait} | `{}`", query.trim())).or_insert(0) += 1;
                    }
                    activity.samples += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(activity)
            })
        });
        ActivitySampler { stop, thread }
    }

    fn stop(self) -> Result<Activity> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| anyhow!("pg_stat_activity sampler panicked"))?
    }
}

/// The `veritrail` release binary next to this one, built first (`cargo build --release
/// --package veritrail`, a no-op when it is up to date) so that it is the code of this tree.
/// `VERITRAIL_BENCH_BINARY` names another binary instead.
pub(crate) fn veritrail_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("VERITRAIL_BENCH_BINARY") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| anyhow!("no directory of {}", exe.display()))?;
    if dir.file_name().and_then(|n| n.to_str()) != Some("release") {
        bail!("run the release build (`cargo xtask bench postgres`), or set VERITRAIL_BENCH_BINARY");
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let target_dir = dir.parent().ok_or_else(|| anyhow!("no target directory above {}", dir.display()))?;
    println!("building the veritrail release binary (cargo build --release --package veritrail)");
    let status = Command::new(cargo)
        .args(["build", "--release", "--package", "veritrail", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build --release --package veritrail failed: {status}");
    }
    let binary = dir.join("veritrail");
    if !binary.is_file() {
        bail!("{} is missing after the build", binary.display());
    }
    Ok(binary)
}

/// Starts a deployment: `nodes` nodes on the database `db` of `cluster`, or one on the embedded
/// store; creates the tenant `bench` (several: `bench-1`, `bench-2`, ...) through the first,
/// before the others start.
fn start_system(
    binary: &Path,
    work_dir: &Path,
    name: String,
    database: Option<(&PgCluster, &str)>,
    nodes: usize,
    tenants: usize,
) -> Result<System> {
    let mut dirs = Vec::new();
    let mut started = Vec::new();
    let mut ledgers = Vec::new();
    for _ in 0..nodes {
        let dir = tempfile::Builder::new().prefix("veritrail-bench-node-").tempdir_in(work_dir)?;
        let url = database.map(|(cluster, db)| cluster.url(db));
        started.push(Node::start(binary, dir.path(), url.as_deref())?);
        dirs.push(dir);
        if ledgers.is_empty() {
            for t in 0..tenants {
                let tenant_name = if tenants == 1 { "bench".to_string() } else { format!("bench-{}", t + 1) };
                let (tenant, key) = vt::create_tenant_at(&started[0].base, &tenant_name)?;
                ledgers.push(Ledger { tenant, key, checked: 0 });
            }
        }
    }
    if ledgers.is_empty() {
        bail!("{name}: no node or no tenant");
    }
    Ok(System {
        name,
        nodes: started,
        tenants: ledgers,
        database: database.map(|(_, db)| db.to_string()),
        rounds: Vec::new(),
        _dirs: dirs,
    })
}

/// The `id` of every event in the NDJSON bodies, in order.
fn body_ids(bodies: &[Vec<u8>]) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    let mut ids = Vec::new();
    for body in bodies {
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            ids.push(serde_json::from_slice::<Id>(line)?.id);
        }
    }
    Ok(ids)
}

/// CPU seconds so far: this process, PostgreSQL and the machine (from the snapshot), and the
/// Veritrail processes of `system`.
fn cpu_now(postmaster: Option<u32>, system: Option<&System>) -> (CpuSnapshot, f64) {
    (CpuSnapshot::take(postmaster), system.map(System::cpu).unwrap_or(0.0))
}

/// Fills the CPU fields of `round` from two readings.
fn account(round: &mut Round, before: &(CpuSnapshot, f64), after: &(CpuSnapshot, f64)) {
    let bench = (after.0.process - before.0.process).max(0.0);
    round.vt_cpu = (after.1 - before.1).max(0.0);
    round.pg_cpu = (after.0.postgres - before.0.postgres).max(0.0);
    let machine = (after.0.machine_busy - before.0.machine_busy).max(0.0);
    round.other_cpu = (machine - bench - round.vt_cpu - round.pg_cpu).max(0.0);
    round.client_cpu += before.0.threads_delta(&after.0, "pg-client");
}

/// One ingest round into `system`, then the checks that its ledger (every tenant's) is complete.
/// `round_ids` are the ids of the events of `batches`, in order, `batch` per body.
#[allow(clippy::too_many_arguments)]
fn ingest_round(
    system: &mut System,
    batches: &[Vec<u8>],
    round_ids: &[String],
    batch: usize,
    clients: usize,
    postmaster: Option<u32>,
    sampler: Option<(&PgCluster, &str)>,
) -> Result<Round> {
    let engines0 = engine_counts(system)?;
    let commits0 = system.metric("veritrail_commits_total")?;
    let commit_secs0 = system.metric("veritrail_commit_duration_seconds_sum")?;
    let before = cpu_now(postmaster, Some(&*system));
    let sampler = sampler.map(|(cluster, db)| ActivitySampler::start(cluster, db));
    // Several tenants: batch j into tenant j mod n, over the clients i with i mod n = j mod n, on
    // node (j mod n) mod nodes. One tenant: every client takes the next batch of one queue.
    let n = system.tenants.len();
    let tenant_ids: Vec<Vec<String>> =
        deal(round_ids.chunks(batch), n).into_iter().map(|chunks| chunks.concat()).collect();
    let run = if n == 1 {
        vt::ingest_to(&system.bases(), &system.tenants[0].key, batches, clients)
    } else {
        let routes: Vec<vt::Route> = (0..n)
            .map(|t| vt::Route {
                base: system.nodes[t % system.nodes.len()].base.clone(),
                key: system.tenants[t].key.clone(),
                queue: t,
            })
            .collect();
        let queues: Vec<Vec<&[u8]>> = deal(batches.iter().map(Vec::as_slice), n);
        vt::ingest_routes(&routes, &queues, clients)
    };
    let after = cpu_now(postmaster, Some(&*system));
    let activity = match sampler {
        Some(sampler) => sampler.stop()?,
        None => Activity::default(),
    };
    let run = run?;
    let mut round = Round {
        rate: round_ids.len() as f64 / run.elapsed.as_secs_f64(),
        wall: run.elapsed.as_secs_f64(),
        client_cpu: run.client_cpu,
        retries: run.retries,
        ..Round::default()
    };
    account(&mut round, &before, &after);
    round.activity = activity;
    round.tail = wait_caught_up(system, &engines0)?;
    round.commits = system.metric("veritrail_commits_total")? - commits0;
    round.commit_secs = system.metric("veritrail_commit_duration_seconds_sum")? - commit_secs0;
    for (t, ids) in tenant_ids.iter().enumerate() {
        round.server_events += check_ledger(system, t, ids)?;
    }
    if n > 1 {
        round.per_tenant =
            tenant_ids.iter().zip(&run.route_elapsed).map(|(ids, secs)| (ids.len(), secs.as_secs_f64())).collect();
    }
    Ok(round)
}

/// Deals `items` out to `n` hands, as the batches of a round go to the tenants: item `j` to hand
/// `j mod n`, in order.
pub(crate) fn deal<T>(items: impl IntoIterator<Item = T>, n: usize) -> Vec<Vec<T>> {
    let mut hands: Vec<Vec<T>> = (0..n.max(1)).map(|_| Vec::new()).collect();
    let count = hands.len();
    for (j, item) in items.into_iter().enumerate() {
        hands[j % count].push(item);
    }
    hands
}

/// Each node's rule-engine counter (`veritrail_rule_events_evaluated_total`) and the events
/// appended by all nodes together, before a round.
fn engine_counts(system: &System) -> Result<(Vec<f64>, f64)> {
    let mut evaluated = Vec::new();
    for node in &system.nodes {
        evaluated.push(vt::metric_at(&node.base, "veritrail_rule_events_evaluated_total")?);
    }
    Ok((evaluated, system.metric("veritrail_events_ingested_total")?))
}

/// Waits until every node's index has caught up and the rule engines have evaluated as many
/// events since `before` as all nodes appended since then, and returns the seconds. Nodes that
/// share the tenants' engines (`veritrail_rule_engine_nodes` above 1) evaluate each event once
/// between them; a binary from before that runs every tenant on every node must have each
/// node's engine evaluate them all.
fn wait_caught_up(system: &System, before: &(Vec<f64>, f64)) -> Result<f64> {
    let started = Instant::now();
    loop {
        let appended = system.metric("veritrail_events_ingested_total")? - before.1;
        let mut indexed = true;
        let (mut each, mut sum) = (true, 0.0);
        let mut shared = false;
        let mut behind = Vec::new();
        for (node, evaluated0) in system.nodes.iter().zip(&before.0) {
            let lag = vt::metric_at(&node.base, "veritrail_index_lag_events").unwrap_or(0.0);
            let evaluated = vt::metric_at(&node.base, "veritrail_rule_events_evaluated_total")? - evaluated0;
            shared |= vt::metric_at(&node.base, "veritrail_rule_engine_nodes").unwrap_or(1.0) > 1.0;
            indexed &= lag <= 0.0;
            each &= evaluated >= appended;
            sum += evaluated;
            behind.push(format!("index lag {lag}, engine {evaluated} of {appended}"));
        }
        let done = indexed && if shared { sum >= appended } else { each };
        if done {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("{}: not caught up 5 minutes after the last ack: {}", system.name, behind.join("; "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the ledger from where the previous check stopped until every event of the round has
/// been seen: each exactly once, at dense seqs. Returns how many records the server wrote
/// itself in that stretch (alerts, `audit.read` of these very reads).
fn check_ledger(system: &mut System, tenant: usize, round_ids: &[String]) -> Result<usize> {
    #[derive(serde::Deserialize)]
    struct Record {
        seq: u64,
        id: String,
    }
    let wanted: HashSet<&str> = round_ids.iter().map(String::as_str).collect();
    if wanted.len() != round_ids.len() {
        bail!("the round's event ids are not distinct");
    }
    let mut missing = wanted.clone();
    let agent = vt::agent(1);
    let auth = format!("Bearer {}", system.tenants[tenant].key);
    let name =
        if system.tenants.len() > 1 { format!("{} (tenant {})", system.name, tenant + 1) } else { system.name.clone() };
    let mut seq = system.tenants[tenant].checked;
    let mut server_events = 0;
    while !missing.is_empty() {
        let url = format!("{}/v1/ledger/records?from={seq}&limit={RECORDS_PAGE}", system.nodes[0].base);
        let mut response = agent.get(&url).header("authorization", auth.as_str()).call()?;
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(1 << 30).read_to_vec()?;
        if status != 200 {
            bail!("{name}: GET /v1/ledger/records: status {status}: {}", String::from_utf8_lossy(&body));
        }
        let mut lines = 0;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let record: Record = serde_json::from_slice(line).context("a ledger record without seq or id")?;
            if record.seq != seq {
                bail!("{name}: ledger record at seq {} where seq {seq} was expected", record.seq);
            }
            seq += 1;
            lines += 1;
            if !missing.remove(record.id.as_str()) {
                if wanted.contains(record.id.as_str()) {
                    bail!("{name}: event {} is in the ledger twice (second at seq {})", record.id, record.seq);
                }
                server_events += 1;
            }
        }
        // A short page is the end of the ledger as it was after the round's last ack.
        if lines < RECORDS_PAGE && !missing.is_empty() {
            bail!(
                "{name}: LEDGER INCOMPLETE: {} of the round's {} acknowledged events are not in the ledger (it ends at seq {seq})",
                missing.len(),
                wanted.len()
            );
        }
    }
    system.tenants[tenant].checked = seq;
    Ok(server_events)
}

/// On PostgreSQL, in SQL: the head's size equals the number of records and one past the largest
/// seq, and covers everything the API check read.
fn check_sql(rt: &tokio::runtime::Runtime, cluster: &PgCluster, db: &str, tenant: &str, checked: u64) -> Result<()> {
    let (size, count, next) = rt.block_on(async {
        let client = pg::connect(&cluster.conninfo_of(db)).await?;
        let row = client
            .query_one(
                "SELECT h.size,
                        (SELECT count(*) FROM records r WHERE r.tenant_no = h.tenant_no),
                        (SELECT coalesce(max(seq) + 1, 0) FROM records r WHERE r.tenant_no = h.tenant_no)
                 FROM ledger_heads h JOIN tenants t ON t.no = h.tenant_no WHERE t.id = $1",
                &[&tenant],
            )
            .await?;
        Ok::<_, anyhow::Error>((row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2)))
    })?;
    if size != count || size != next || (size as u64) < checked {
        bail!("database {db}: ledger head size {size}, {count} records, next seq {next}, {checked} read via the API");
    }
    Ok(())
}

/// One round of the naive baseline: binary COPY of `rows_per_copy` rows per statement over the
/// clients' connections (each statement its own durable commit).
fn copy_round(
    rt: &tokio::runtime::Runtime,
    clients: &[Arc<tokio_postgres::Client>],
    rows: &Arc<Vec<PgRow>>,
    range: std::ops::Range<usize>,
    rows_per_copy: usize,
    postmaster: Option<u32>,
) -> Result<Round> {
    let n = range.len() as f64;
    let before = cpu_now(postmaster, None);
    let elapsed = rt.block_on(pg::within(
        Duration::from_secs(900),
        "COPY",
        pg::copy_rows(clients, "audit_events", rows.clone(), range, rows_per_copy),
    ))?;
    let after = cpu_now(postmaster, None);
    let mut round = Round { rate: n / elapsed.as_secs_f64(), wall: elapsed.as_secs_f64(), ..Round::default() };
    account(&mut round, &before, &after);
    Ok(round)
}

fn summary(round: &Round, events: usize) -> String {
    let w = round.wall.max(1e-9);
    let mut text = format!(
        "{:.0}/s ({events} in {:.2} s); cores: veritrail {:.2}, postgres {:.2}, bench clients {:.2}, other {:.2}",
        round.rate,
        round.wall,
        round.vt_cpu / w,
        round.pg_cpu / w,
        round.client_cpu / w,
        round.other_cpu / w
    );
    if round.commits > 0.0 {
        text += &format!(
            "; {:.0} events per group commit, {:.1} ms per commit; engines caught up {:.2} s after the last ack; retries {}",
            events as f64 / round.commits,
            round.commit_secs / round.commits * 1000.0,
            round.tail,
            round.retries
        );
    }
    text
}

/// Query latencies (ms) per round of one system.
struct QueryFigures {
    name: String,
    rounds: Vec<Vec<f64>>,
}

/// The query mix of `bench query` (the same actors): the embedded store and the PostgreSQL
/// backend over HTTP, the naive table with its prepared SQL, interleaved by round. Every query
/// must return as many events from each system.
fn run_queries(
    plan: &Plan,
    systems: &[System],
    rt: &tokio::runtime::Runtime,
    cluster: &PgCluster,
) -> Result<(Vec<QueryFigures>, usize, usize)> {
    println!("\n== query: actor_id + action auth.* + limit 100, {} queries per system ==", plan.queries);
    let mut rng = Rng::new(3);
    let actors: Vec<String> = (0..plan.queries).map(|_| events::actor_id(events::actor_number(&mut rng))).collect();
    let warmup: Vec<String> = (0..20).map(|_| events::actor_id(events::actor_number(&mut rng))).collect();
    let (client, statement) = rt.block_on(async {
        let client = cluster.connect().await?;
        let statement = client.prepare(&pg::query_sql("audit_events")).await?;
        Ok::<_, anyhow::Error>((client, statement))
    })?;
    let agents: Vec<(ureq::Agent, String)> =
        systems.iter().map(|s| (vt::agent(1), format!("Bearer {}", s.tenants[0].key))).collect();
    for actor in &warmup {
        for (system, (agent, auth)) in systems.iter().zip(&agents) {
            vt::query(agent, &system.nodes[0].base, auth, actor)?;
        }
        rt.block_on(pg::run_query(&client, &statement, actor))?;
    }
    let mut figures: Vec<QueryFigures> =
        systems.iter().map(|s| QueryFigures { name: s.name.clone(), rounds: Vec::new() }).collect();
    figures.push(QueryFigures { name: "naive".into(), rounds: Vec::new() });
    let mut mismatches = 0;
    let mut matched = 0;
    for (round, range) in crate::split(actors.len(), plan.query_rounds, 1).into_iter().enumerate() {
        let mut counts: Vec<Vec<usize>> = Vec::new();
        for (i, (system, (agent, auth))) in systems.iter().zip(&agents).enumerate() {
            let mut latencies = Vec::new();
            let mut found = Vec::new();
            for actor in &actors[range.clone()] {
                let (latency, count) = vt::query(agent, &system.nodes[0].base, auth, actor)?;
                latencies.push(latency);
                found.push(count);
            }
            figures[i].rounds.push(latencies);
            counts.push(found);
        }
        let mut latencies = Vec::new();
        let mut found = Vec::new();
        for actor in &actors[range.clone()] {
            let t = Instant::now();
            let rows = rt.block_on(pg::run_query(&client, &statement, actor))?;
            latencies.push(crate::stats::ms(t.elapsed()));
            found.push(rows);
        }
        matched += found.iter().sum::<usize>();
        for (q, rows) in found.iter().enumerate() {
            if counts.iter().any(|c| c[q] != *rows) {
                mismatches += 1;
            }
        }
        if let Some(naive) = figures.last_mut() {
            naive.rounds.push(latencies);
        }
        let line: Vec<String> = figures
            .iter()
            .map(|f| {
                let last = f.rounds.last().map(Vec::as_slice).unwrap_or(&[]);
                format!("{} p50 {:.2} ms p95 {:.2} ms", f.name, percentile(last, 50.0), percentile(last, 95.0))
            })
            .collect();
        println!("round {}: {} queries | {}", round + 1, range.len(), line.join(" | "));
    }
    Ok((figures, mismatches, matched))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `median [min–max]` of a figure over rounds.
fn cell(values: &[f64], digits: usize) -> String {
    if values.is_empty() {
        return "—".into();
    }
    let (lo, hi) = min_max(values);
    format!("{:.*} [{:.*}–{:.*}]", digits, median(values), digits, lo, digits, hi)
}

fn print_table(plan: &Plan, systems: &[System], copy: &[Round], queries: &(Vec<QueryFigures>, usize, usize)) {
    let rates = |rounds: &[Round]| rounds.iter().map(|r| r.rate).collect::<Vec<_>>();
    let per_k = |rounds: &[Round], f: fn(&Round) -> f64| {
        rounds.iter().map(|r| f(r) / (r.rate * r.wall).max(1.0) * 1000.0).collect::<Vec<_>>()
    };
    let [embedded, one, two] = [&systems[0].rounds, &systems[1].rounds, &systems[2].rounds];
    let copy_median = median(&rates(copy));
    let (one_median, two_median) = (median(&rates(one)), median(&rates(two)));
    println!(
        "\nplan: {} events, {} interleaved rounds, {} clients x {} events per batch",
        plan.events, plan.ingest_rounds, plan.clients, plan.batch
    );
    println!("\n| figure | embedded | PG 1 node | PG 2 nodes | naive COPY | target | verdict |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| durable ingest over HTTP, acked events/s (COPY: rows/s), median [range] | {} | {} | {} | {} | PG 1 node ≥ naive COPY; PG 2 nodes > PG 1 node | 1 node: {:.2}× COPY — {}; 2 nodes: {:.2}× 1 node — {} |",
        cell(&rates(embedded), 0),
        cell(&rates(one), 0),
        cell(&rates(two), 0),
        cell(&rates(copy), 0),
        one_median / copy_median.max(1e-9),
        if one_median >= copy_median { "**met**" } else { "**not met**" },
        two_median / one_median.max(1e-9),
        if two_median > one_median { "**met**" } else { "**not met**" },
    );
    println!(
        "| Veritrail processes, CPU-s per 1,000 events | {} | {} | {} | — | | |",
        cell(&per_k(embedded, |r| r.vt_cpu), 3),
        cell(&per_k(one, |r| r.vt_cpu), 3),
        cell(&per_k(two, |r| r.vt_cpu), 3)
    );
    println!(
        "| PostgreSQL processes, CPU-s per 1,000 events | — | {} | {} | {} | | |",
        cell(&per_k(one, |r| r.pg_cpu), 3),
        cell(&per_k(two, |r| r.pg_cpu), 3),
        cell(&per_k(copy, |r| r.pg_cpu), 3)
    );
    println!(
        "| other processes on the machine, cores | {} | {} | {} | {} | | |",
        cell(&embedded.iter().map(|r| r.other_cpu / r.wall.max(1e-9)).collect::<Vec<_>>(), 2),
        cell(&one.iter().map(|r| r.other_cpu / r.wall.max(1e-9)).collect::<Vec<_>>(), 2),
        cell(&two.iter().map(|r| r.other_cpu / r.wall.max(1e-9)).collect::<Vec<_>>(), 2),
        cell(&copy.iter().map(|r| r.other_cpu / r.wall.max(1e-9)).collect::<Vec<_>>(), 2)
    );
    let per_commit = |rounds: &[Round]| rounds.iter().map(|r| r.rate * r.wall / r.commits.max(1.0)).collect::<Vec<_>>();
    let commit_ms =
        |rounds: &[Round]| rounds.iter().map(|r| r.commit_secs / r.commits.max(1.0) * 1000.0).collect::<Vec<_>>();
    println!(
        "| events per group commit (all nodes) | {} | {} | {} | {} | | |",
        cell(&per_commit(embedded), 0),
        cell(&per_commit(one), 0),
        cell(&per_commit(two), 0),
        plan.batch
    );
    println!(
        "| time per group commit, ms | {} | {} | {} | — | | |",
        cell(&commit_ms(embedded), 1),
        cell(&commit_ms(one), 1),
        cell(&commit_ms(two), 1)
    );
    let tails = |rounds: &[Round]| rounds.iter().map(|r| r.tail).collect::<Vec<_>>();
    println!(
        "| index and rule engines caught up, s after the last ack | {} | {} | {} | — | | |",
        cell(&tails(embedded), 2),
        cell(&tails(one), 2),
        cell(&tails(two), 2)
    );
    let (figures, mismatches, matched) = queries;
    let p = |f: &QueryFigures, q: f64| f.rounds.iter().map(|r| percentile(r, q)).collect::<Vec<_>>();
    if let [emb, pg1, naive] = figures.as_slice() {
        println!(
            "| query actor_id + action=auth.* + limit=100, p50 ms ({} queries, {:.1} events per answer) | {} | {} | — | {} (indexed SQL) | | |",
            plan.queries,
            *matched as f64 / plan.queries.max(1) as f64,
            cell(&p(emb, 50.0), 2),
            cell(&p(pg1, 50.0), 2),
            cell(&p(naive, 50.0), 2)
        );
        println!(
            "| same, p95 ms | {} | {} | — | {} | ≤ 10 ms (1M events) | embedded {}, PG {} |",
            cell(&p(emb, 95.0), 2),
            cell(&p(pg1, 95.0), 2),
            cell(&p(naive, 95.0), 2),
            if median(&p(emb, 95.0)) <= 10.0 { "met" } else { "not met" },
            if median(&p(pg1, 95.0)) <= 10.0 { "met" } else { "not met" }
        );
    }
    let complete: usize = systems.iter().map(|s| s.rounds.len()).sum();
    println!(
        "| ledger complete after every round (every acked event once, dense seqs; PG: head size = count(records)) | {} rounds of {} checked | | | | | |",
        complete,
        systems.len() * plan.ingest_rounds
    );
    println!(
        "| query answers of equal size in all three | {} of {} | | | | | |",
        plan.queries - mismatches,
        plan.queries
    );
}

/// The second table: whether a second node adds throughput, on one tenant (where the nodes
/// serialise on the tenant's head row by design) and across tenants (the multi-tenant
/// deployments: the same events and clients, each node serving its own tenants).
fn print_tenants_table(plan: &Plan, systems: &[System]) {
    let [one, two, one_t, two_t] = [&systems[1], &systems[2], &systems[3], &systems[4]];
    let tenants = one_t.tenants.len();
    let rates = |s: &System| s.rounds.iter().map(|r| r.rate).collect::<Vec<_>>();
    // The ratio within each round (the two deployments ran minutes apart at most, under the
    // same background load), then the median over rounds.
    let paired = |a: &System, b: &System| {
        a.rounds.iter().zip(&b.rounds).map(|(x, y)| x.rate / y.rate.max(1e-9)).collect::<Vec<_>>()
    };
    let per_k = |s: &System, f: fn(&Round) -> f64| {
        s.rounds.iter().map(|r| f(r) / (r.rate * r.wall).max(1.0) * 1000.0).collect::<Vec<_>>()
    };
    let all = [one, two, one_t, two_t];
    let row = |label: &str, values: [Vec<f64>; 4], digits: usize| {
        let cells: Vec<String> = values.iter().map(|v| cell(v, digits)).collect();
        println!("| {label} | {} | | |", cells.join(" | "));
    };
    println!(
        "\nsecond node, one tenant and {tenants} tenants: {} events, {} interleaved rounds, {} clients x {} events per batch; with {tenants} tenants batch j goes to tenant j mod {tenants}, client i writes tenant i mod {tenants}, on 2 nodes tenant t is served by node t mod 2",
        plan.events, plan.ingest_rounds, plan.clients, plan.batch
    );
    println!("\n| figure | {} | {} | {} | {} | target | verdict |", one.name, two.name, one_t.name, two_t.name);
    println!("|---|---|---|---|---|---|---|");
    let (m1, m2, m1t, m2t) = (median(&rates(one)), median(&rates(two)), median(&rates(one_t)), median(&rates(two_t)));
    let verdict = |ratio: f64| if ratio > 1.0 { "**met**" } else { "**not met**" };
    println!(
        "| durable ingest over HTTP, acked events/s, median [range] | {} | {} | {} | {} | 2 nodes > 1 node | 1 tenant: {:.2}× — {}; {tenants} tenants: {:.2}× — {} |",
        cell(&rates(one), 0),
        cell(&rates(two), 0),
        cell(&rates(one_t), 0),
        cell(&rates(two_t), 0),
        m2 / m1.max(1e-9),
        verdict(m2 / m1.max(1e-9)),
        m2t / m1t.max(1e-9),
        verdict(m2t / m1t.max(1e-9)),
    );
    println!(
        "| 2 nodes / 1 node on the same tenants, ratio within each round, median [range] | — | {} | — | {} | > 1 | |",
        cell(&paired(two, one), 2),
        cell(&paired(two_t, one_t), 2)
    );
    println!(
        "| {tenants} tenants / 1 tenant on the same nodes, ratio within each round | — | — | {} | {} | | |",
        cell(&paired(one_t, one), 2),
        cell(&paired(two_t, two), 2)
    );
    row("Veritrail processes, CPU-s per 1,000 events", all.map(|s| per_k(s, |r| r.vt_cpu)), 3);
    row("PostgreSQL processes, CPU-s per 1,000 events", all.map(|s| per_k(s, |r| r.pg_cpu)), 3);
    row(
        "Veritrail + PostgreSQL processes, cores",
        all.map(|s| s.rounds.iter().map(|r| (r.vt_cpu + r.pg_cpu) / r.wall.max(1e-9)).collect()),
        2,
    );
    row(
        "other processes on the machine, cores",
        all.map(|s| s.rounds.iter().map(|r| r.other_cpu / r.wall.max(1e-9)).collect()),
        2,
    );
    row(
        "events per group commit (all nodes)",
        all.map(|s| s.rounds.iter().map(|r| r.rate * r.wall / r.commits.max(1.0)).collect()),
        0,
    );
    row(
        "time per group commit, ms",
        all.map(|s| s.rounds.iter().map(|r| r.commit_secs / r.commits.max(1.0) * 1000.0).collect()),
        1,
    );
    row(
        "index and rule engines caught up, s after the last ack",
        all.map(|s| s.rounds.iter().map(|r| r.tail).collect()),
        2,
    );
    let checked = |s: &System| s.rounds.len() * s.tenants.len();
    println!(
        "| ledger complete after every round, per tenant (every acked event once, dense seqs; head size = count(records)) | {} of {} | {} of {} | {} of {} | {} of {} | | |",
        checked(one),
        plan.ingest_rounds,
        checked(two),
        plan.ingest_rounds,
        checked(one_t),
        plan.ingest_rounds * tenants,
        checked(two_t),
        plan.ingest_rounds * tenants
    );
}
