//! `veritrail`: the single binary. `serve` runs the server (on the embedded store, or on
//! PostgreSQL with `--database-url`); the other subcommands operate on a data directory, a
//! database or a running server.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use veritrail_server::{AlertingConfig, Server, ServerConfig, SmtpConfig, TlsIdentity, TlsListener, TsaConfig};
use veritrail_store::{AccessStore, AlertStore, Store};
use veritrail_store_postgres::{PgAccessStore, PgAlertStore, PgOptions, PgStore};

mod keys;
mod migrate_store;
mod verify;

/// mimalloc: ingest allocates and frees many small strings per event, where glibc malloc took a
/// fifth of the request path (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Veritrail — a tamper-evident audit-trail server.
///
/// Quick start: `veritrail serve` starts on http://127.0.0.1:8080 with its data in
/// ./veritrail-data; the first start prints a bootstrap token (also saved to
/// <data-dir>/bootstrap-token) that creates tenants with `POST /v1/tenants`.
#[derive(Parser, Debug)]
#[command(name = "veritrail", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP server: on the embedded store (no database to install), or on PostgreSQL
    /// with --database-url, where several nodes can share one database.
    Serve(ServeArgs),
    /// Apply pending schema migrations to a PostgreSQL database and exit (`serve` applies them
    /// too on start).
    Migrate(MigrateArgs),
    /// Drop and rebuild the query index of a data directory from its ledger (server stopped).
    Reindex(DataDirArgs),
    /// Verify a ledger: an exported bundle offline, a data directory, or a running server.
    Verify(verify::VerifyArgs),
    /// Replace the data directory's master key (server stopped): every data key is re-wrapped
    /// under a new one; sealed records are untouched.
    RotateMasterKey(keys::RotateArgs),
    /// Copy a whole store between a data directory and PostgreSQL (either way; every server of
    /// both stopped): tenants with their ledgers, keys, settings, users and monitoring. The
    /// target must hold no store; ledgers are verified against their checkpoints before and
    /// after. Both sides use the same master key (VERITRAIL_MASTER_KEY, or the data
    /// directory's master.key).
    MigrateStore(migrate_store::MigrateStoreArgs),
}

#[derive(clap::Args, Debug)]
struct DataDirArgs {
    /// Directory holding the ledger and index files.
    #[arg(long, env = "VERITRAIL_DATA_DIR", default_value = "./veritrail-data")]
    data_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
struct MigrateArgs {
    /// PostgreSQL database, `postgres://user:password@host:port/dbname`
    #[arg(long, env = "VERITRAIL_DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Directory holding the ledger and index files [default: ./veritrail-data]; with
    /// --database-url only this node's own files (a generated bootstrap token)
    #[arg(long, env = "VERITRAIL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store everything in this PostgreSQL database instead of the data directory,
    /// `postgres://user:password@host:port/dbname` (`?sslmode=require&sslrootcert=ca.pem`:
    /// TLS with the certificate verified; plain TCP otherwise). Nodes given the same
    /// database share tenants, keys, ledgers and checkpoints [default: the embedded store]
    #[arg(long, env = "VERITRAIL_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// A read replica (hot standby) of that database: event queries and exports read from it
    /// (they may trail the primary by the replication lag); everything else stays on the
    /// primary [default: none]
    #[arg(long, env = "VERITRAIL_DATABASE_READ_URL", hide_env_values = true, requires = "database_url")]
    database_read_url: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "VERITRAIL_LISTEN")]
    listen: Option<SocketAddr>,
    /// This server's origin: checkpoint origins are `<origin>/<tenant>` [default: veritrail.local]
    #[arg(long, env = "VERITRAIL_ORIGIN")]
    origin: Option<String>,
    /// RFC 3161 Time-Stamp Authority that witnesses every checkpoint, `http(s)://host[:port]/path`
    /// [default: none, checkpoints are not time-stamped]
    #[arg(long, env = "VERITRAIL_TSA_URL")]
    tsa_url: Option<String>,
    /// PEM file of the CA certificates the TSA certificate must chain to [default: any TSA
    /// certificate fit for time stamping]
    #[arg(long, env = "VERITRAIL_TSA_CA_FILE")]
    tsa_ca_file: Option<PathBuf>,
    /// Let webhooks reach loopback, private, link-local and cloud-metadata addresses [default:
    /// refused]
    #[arg(long, env = "VERITRAIL_WEBHOOK_ALLOW_PRIVATE")]
    webhook_allow_private: bool,
    /// PEM file of CA certificates trusted for outbound HTTPS (webhooks, identity providers'
    /// key sets) besides the system's [default: the system's only]
    #[arg(long, env = "VERITRAIL_OUTBOUND_CA_FILE")]
    outbound_ca_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate first, then any
    /// intermediates); needs --tls-key [default: plain HTTP]
    #[arg(long, env = "VERITRAIL_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, RSA or SEC1 EC); needs --tls-cert
    #[arg(long, env = "VERITRAIL_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// SMTP relay of e-mail alert notifications (`mailto:` endpoints): `smtps://host[:465]`
    /// (TLS), `smtp://host[:587]` (STARTTLS required) or `smtp+plain://host[:25]` (no TLS, no
    /// credentials) [default: none, e-mail off]
    #[arg(long, env = "VERITRAIL_SMTP_URL")]
    smtp_url: Option<String>,
    /// Sender address of e-mail notifications (required with --smtp-url)
    #[arg(long, env = "VERITRAIL_SMTP_FROM")]
    smtp_from: Option<String>,
    /// TOML file with `data_dir`, `database_url`, `database_read_url`, `listen`, `origin`, `max_body_bytes`,
    /// `checkpoint_interval_ms`, `tsa_url`, `tsa_ca_file`, `tsa_timeout_ms`, `tsa_interval_ms`,
    /// `alerting`, `webhook_allow_private`, `webhook_timeout_ms`, `webhook_retry_first_ms`,
    /// `webhook_retry_max_ms`, `webhook_retry_for_ms`, `session_ttl_ms`, `outbound_ca_file`,
    /// `tls_cert`, `tls_key`, `smtp_url`, `smtp_from`, `smtp_username` (the password only from
    /// VERITRAIL_SMTP_PASSWORD); flags and environment win over it.
    #[arg(long, env = "VERITRAIL_CONFIG")]
    config: Option<PathBuf>,
}

/// The optional configuration file.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_read_url: Option<String>,
    listen: Option<SocketAddr>,
    origin: Option<String>,
    max_body_bytes: Option<usize>,
    checkpoint_interval_ms: Option<u64>,
    tsa_url: Option<String>,
    tsa_ca_file: Option<PathBuf>,
    tsa_timeout_ms: Option<u64>,
    tsa_interval_ms: Option<u64>,
    alerting: Option<bool>,
    webhook_allow_private: Option<bool>,
    webhook_timeout_ms: Option<u64>,
    webhook_retry_first_ms: Option<u64>,
    webhook_retry_max_ms: Option<u64>,
    webhook_retry_for_ms: Option<u64>,
    session_ttl_ms: Option<u64>,
    outbound_ca_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    smtp_url: Option<String>,
    smtp_from: Option<String>,
    smtp_username: Option<String>,
}

fn main() -> Result<std::process::ExitCode> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve(args) => runtime()?.block_on(serve(args))?,
        Command::Migrate(args) => runtime()?.block_on(migrate(&args.database_url))?,
        Command::Reindex(args) => runtime()?.block_on(reindex(&args.data_dir))?,
        Command::Verify(args) => return verify::run(args),
        Command::RotateMasterKey(args) => runtime()?.block_on(keys::rotate(&args))?,
        Command::MigrateStore(args) => return runtime()?.block_on(migrate_store::run(args)),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(64)
        .build()
        .context("cannot start the async runtime")
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VERITRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn serve(args: ServeArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str::<FileConfig>(&text).with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    // Before the store opens: a bad certificate or key stops the start at once.
    let tls = tls_identity(args.tls_cert.or(file.tls_cert.clone()), args.tls_key.or(file.tls_key.clone()))?;
    let tsa = tsa_config(&args.tsa_url, &args.tsa_ca_file, &file)?;
    let mut alerting = alerting_config(args.webhook_allow_private, &file);
    let smtp = smtp_config(args.smtp_url, args.smtp_from, &file)?;
    let outbound_ca_pem = match args.outbound_ca_file.or(file.outbound_ca_file) {
        Some(path) => {
            Some(std::fs::read(&path).with_context(|| format!("cannot read outbound_ca_file {}", path.display()))?)
        }
        None => None,
    };
    let database_url = args.database_url.or(file.database_url).filter(|url| !url.is_empty());
    let database_read_url = args.database_read_url.or(file.database_read_url).filter(|url| !url.is_empty());
    let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./veritrail-data"));
    let listen = args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    if database_url.is_some() {
        // The node's rule engine id, kept so that a restart takes its tenants back at once.
        create_private_dir(&data_dir)?;
        alerting.node_id_file = Some(data_dir.join("engine-node"));
    }
    let mut config = ServerConfig {
        bootstrap_token: std::env::var("VERITRAIL_BOOTSTRAP_TOKEN").ok().filter(|t| !t.is_empty()),
        origin: args.origin.or(file.origin),
        checkpoint_interval: file.checkpoint_interval_ms.map(|ms| std::time::Duration::from_millis(ms.max(10))),
        tsa,
        alerting,
        session_ttl: file.session_ttl_ms.map(|ms| std::time::Duration::from_millis(ms.max(1000))),
        outbound_ca_pem,
        smtp,
        ..ServerConfig::default()
    };
    if let Some(max) = file.max_body_bytes {
        config.limits.max_body_bytes = max;
    }
    if let Some(token) = &config.bootstrap_token
        && token.len() < 16
    {
        bail!("VERITRAIL_BOOTSTRAP_TOKEN must be at least 16 characters");
    }

    // The backend is chosen here and nowhere else: the server only sees `dyn Store`.
    // Monitoring (rules, alerts, webhooks) lives beside the ledger: `alerts.sqlite` of the data
    // directory, or the PostgreSQL database that every node shares.
    let (store, alerts, access): (Arc<dyn Store>, Arc<dyn AlertStore>, Arc<dyn AccessStore>) = match &database_url {
        Some(url) => (
            Arc::new(
                PgStore::connect_with(
                    url,
                    PgOptions {
                        read_url: database_read_url,
                        ..PgOptions::new(keys::from_env()?.context(
                            "PostgreSQL needs VERITRAIL_MASTER_KEY (base64 of 32 random bytes, the same on every \
                             node; e.g. `openssl rand -base64 32`)",
                        )?)
                    },
                )
                .await
                .context("cannot open the postgresql database")?,
            ),
            Arc::new(PgAlertStore::connect(url).await.context("cannot open alerts in the postgresql database")?),
            Arc::new(PgAccessStore::connect(url).await.context("cannot open users in the postgresql database")?),
        ),
        None => {
            let sqlite = keys::open_store(&data_dir)?;
            (Arc::new(sqlite.clone()), Arc::new(sqlite.alert_store()), Arc::new(sqlite.access_store()))
        }
    };
    let server = Server::start(store, alerts, access, config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start: {}", e.message))?;
    if let Some(token) = &server.new_bootstrap_token {
        // With --database-url nothing else creates the data directory: private, like the
        // embedded store's.
        create_private_dir(&data_dir)?;
        let path = data_dir.join("bootstrap-token");
        write_secret_file(&path, token)?;
        println!("bootstrap token (shown once, also saved to {}):\n{token}", path.display());
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    // Before announcing the server: a stop sent right after the announcement must not be lost.
    let shutdown = shutdown_on_signal()?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    match database_url {
        Some(_) => tracing::info!(address = %local, scheme, store = "postgresql", "veritrail listening"),
        None => tracing::info!(address = %local, scheme, data_dir = %data_dir.display(), "veritrail listening"),
    }
    let listener: veritrail_server::Listener = match &tls {
        Some(identity) => TlsListener::new(listener, identity).context("cannot listen for https")?.into(),
        None => listener.into(),
    };
    println!("veritrail listening on {scheme}://{local}");
    let _ = std::io::stdout().flush();

    veritrail_server::serve(server, listener, shutdown).await.context("server failed")?;
    tracing::info!("veritrail stopped; everything acknowledged is committed");
    Ok(())
}

/// The SMTP relay (the flag or environment over the file); the password only from the
/// environment, so that it is in no file and no process list.
fn smtp_config(url: Option<String>, from: Option<String>, file: &FileConfig) -> Result<Option<SmtpConfig>> {
    let Some(url) = url.or(file.smtp_url.clone()).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let from =
        from.or(file.smtp_from.clone()).context("--smtp-url needs --smtp-from (VERITRAIL_SMTP_FROM, smtp_from)")?;
    let username =
        std::env::var("VERITRAIL_SMTP_USERNAME").ok().or(file.smtp_username.clone()).filter(|u| !u.is_empty());
    let credentials = match (username, std::env::var("VERITRAIL_SMTP_PASSWORD").ok().filter(|p| !p.is_empty())) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        _ => bail!("smtp_username and VERITRAIL_SMTP_PASSWORD go together: give both or neither"),
    };
    SmtpConfig::parse(&url, &from, credentials).map(Some).map_err(|e| anyhow::anyhow!(e))
}

/// The HTTPS certificate chain and key (`tls_cert`, `tls_key`), loaded once; `None` for plain
/// HTTP.
fn tls_identity(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<TlsIdentity>> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => bail!("--tls-cert needs --tls-key (VERITRAIL_TLS_KEY, tls_key): give both or neither"),
        (None, Some(_)) => bail!("--tls-key needs --tls-cert (VERITRAIL_TLS_CERT, tls_cert): give both or neither"),
    };
    let cert_pem = std::fs::read(&cert).with_context(|| format!("cannot read tls_cert {}", cert.display()))?;
    let key_pem = std::fs::read(&key).with_context(|| format!("cannot read tls_key {}", key.display()))?;
    let identity = TlsIdentity::from_pem(&cert_pem, &key_pem)
        .with_context(|| format!("cannot serve https with {} and {}", cert.display(), key.display()))?;
    Ok(Some(identity))
}

/// The rule engine and webhook settings (the flag or environment over the file).
fn alerting_config(allow_private: bool, file: &FileConfig) -> AlertingConfig {
    let ms = std::time::Duration::from_millis;
    let mut config = AlertingConfig {
        enabled: file.alerting.unwrap_or(true),
        webhook_allow_private: allow_private || file.webhook_allow_private.unwrap_or(false),
        ..AlertingConfig::default()
    };
    if let Some(timeout) = file.webhook_timeout_ms {
        config.webhook_timeout = ms(timeout.max(100));
    }
    if let Some(first) = file.webhook_retry_first_ms {
        config.retry.first = ms(first.max(10));
    }
    if let Some(max) = file.webhook_retry_max_ms {
        config.retry.max = ms(max.max(10));
    }
    if let Some(period) = file.webhook_retry_for_ms {
        config.retry.give_up_after = ms(period);
    }
    config
}

/// The witness configuration, when a TSA URL is given (flag or environment over the file).
fn tsa_config(url: &Option<String>, ca_file: &Option<PathBuf>, file: &FileConfig) -> Result<Option<TsaConfig>> {
    let Some(url) = url.clone().or_else(|| file.tsa_url.clone()).filter(|url| !url.is_empty()) else {
        if ca_file.is_some() || file.tsa_ca_file.is_some() {
            bail!("tsa_ca_file is set but tsa_url is not");
        }
        return Ok(None);
    };
    let mut config = TsaConfig::new(url);
    if let Some(path) = ca_file.as_ref().or(file.tsa_ca_file.as_ref()) {
        let pem = std::fs::read(path).with_context(|| format!("cannot read tsa_ca_file {}", path.display()))?;
        config.ca_pem = Some(pem);
    }
    if let Some(ms) = file.tsa_timeout_ms {
        config.timeout = std::time::Duration::from_millis(ms.max(100));
    }
    if let Some(ms) = file.tsa_interval_ms {
        config.interval = std::time::Duration::from_millis(ms.max(10));
    }
    Ok(Some(config))
}

/// A token cancelled by SIGTERM or Ctrl-C, the handlers installed before this returns.
fn shutdown_on_signal() -> Result<CancellationToken> {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("shutting down: finishing requests and committing");
            token.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing requests and committing");
        token.cancel();
    });
    Ok(shutdown)
}

/// Creates `dir` (and its parents) if missing, private to the owner when it is new.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn write_secret_file(path: &Path, secret: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    Ok(())
}

async fn migrate(database_url: &str) -> Result<()> {
    let applied = veritrail_store_postgres::migrate(database_url).await.context("migration failed")?;
    if applied.is_empty() {
        println!("database schema is up to date (version {})", veritrail_store_postgres::latest_version());
    }
    for migration in applied {
        println!("applied migration {}: {}", migration.version, migration.name);
    }
    Ok(())
}

async fn reindex(data_dir: &Path) -> Result<()> {
    if !data_dir.join(veritrail_store_sqlite::LEDGER_FILE).exists() {
        bail!("{} holds no veritrail ledger", data_dir.display());
    }
    let store = keys::open_store(data_dir)?;
    println!("rebuilding the query index of {} from its ledger...", data_dir.display());
    store.rebuild_indexes().await.context("reindex failed")?;
    store.wait_indexed().await.context("reindex failed")?;
    store.shutdown().await.context("shutdown failed")?;
    println!("index rebuilt");
    Ok(())
}
