//! `veritrail`: the single binary. `serve` runs the server; the other subcommands operate on a
//! data directory or a running server.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use veritrail_server::{Server, ServerConfig, TsaConfig};
use veritrail_store::Store;
use veritrail_store_sqlite::SqliteStore;

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
    /// Run the HTTP server on the embedded store (no database to install).
    Serve(ServeArgs),
    /// Drop and rebuild the query index of a data directory from its ledger (server stopped).
    Reindex(DataDirArgs),
    /// Verify a ledger: an exported bundle offline, a data directory, or a running server.
    Verify(verify::VerifyArgs),
}

#[derive(clap::Args, Debug)]
struct DataDirArgs {
    /// Directory holding the ledger and index files.
    #[arg(long, env = "VERITRAIL_DATA_DIR", default_value = "./veritrail-data")]
    data_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Directory holding the ledger and index files [default: ./veritrail-data]
    #[arg(long, env = "VERITRAIL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "VERITRAIL_LISTEN")]
    listen: Option<SocketAddr>,
    /// This server's origin: checkpoint origins are `<origin>/<tenant>` [default: veritrail.local]
    #[arg(long, env = "VERITRAIL_ORIGIN")]
    origin: Option<String>,
    /// RFC 3161 Time-Stamp Authority that witnesses every checkpoint, `http://host[:port]/path`
    /// [default: none, checkpoints are not time-stamped]
    #[arg(long, env = "VERITRAIL_TSA_URL")]
    tsa_url: Option<String>,
    /// PEM file of the CA certificates the TSA certificate must chain to [default: any TSA
    /// certificate fit for time stamping]
    #[arg(long, env = "VERITRAIL_TSA_CA_FILE")]
    tsa_ca_file: Option<PathBuf>,
    /// TOML file with `data_dir`, `listen`, `origin`, `max_body_bytes`, `checkpoint_interval_ms`,
    /// `tsa_url`, `tsa_ca_file`, `tsa_timeout_ms`, `tsa_interval_ms`; flags and environment win
    /// over it.
    #[arg(long, env = "VERITRAIL_CONFIG")]
    config: Option<PathBuf>,
}

/// The optional configuration file.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    origin: Option<String>,
    max_body_bytes: Option<usize>,
    checkpoint_interval_ms: Option<u64>,
    tsa_url: Option<String>,
    tsa_ca_file: Option<PathBuf>,
    tsa_timeout_ms: Option<u64>,
    tsa_interval_ms: Option<u64>,
}

fn main() -> Result<std::process::ExitCode> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve(args) => runtime()?.block_on(serve(args))?,
        Command::Reindex(args) => runtime()?.block_on(reindex(&args.data_dir))?,
        Command::Verify(args) => return verify::run(args),
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
    let tsa = tsa_config(&args.tsa_url, &args.tsa_ca_file, &file)?;
    let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./veritrail-data"));
    let listen = args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let mut config = ServerConfig {
        bootstrap_token: std::env::var("VERITRAIL_BOOTSTRAP_TOKEN").ok().filter(|t| !t.is_empty()),
        origin: args.origin.or(file.origin),
        checkpoint_interval: file.checkpoint_interval_ms.map(|ms| std::time::Duration::from_millis(ms.max(10))),
        tsa,
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

    let store =
        SqliteStore::open(&data_dir).with_context(|| format!("cannot open data directory {}", data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    let server = Server::start(store, config).await.map_err(|e| anyhow::anyhow!("cannot start: {}", e.message))?;
    if let Some(token) = &server.new_bootstrap_token {
        let path = data_dir.join("bootstrap-token");
        write_secret_file(&path, token)?;
        println!("bootstrap token (shown once, also saved to {}):\n{token}", path.display());
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    // Before announcing the server: a stop sent right after the announcement must not be lost.
    let shutdown = shutdown_on_signal()?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, data_dir = %data_dir.display(), "veritrail listening");
    println!("veritrail listening on http://{local}");
    let _ = std::io::stdout().flush();

    veritrail_server::serve(server, listener, shutdown).await.context("server failed")?;
    tracing::info!("veritrail stopped; everything acknowledged is committed");
    Ok(())
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

fn write_secret_file(path: &Path, secret: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    Ok(())
}

async fn reindex(data_dir: &Path) -> Result<()> {
    if !data_dir.join(veritrail_store_sqlite::LEDGER_FILE).exists() {
        bail!("{} holds no veritrail ledger", data_dir.display());
    }
    let store =
        SqliteStore::open(data_dir).with_context(|| format!("cannot open data directory {}", data_dir.display()))?;
    println!("rebuilding the query index of {} from its ledger...", data_dir.display());
    store.rebuild_indexes().await.context("reindex failed")?;
    store.wait_indexed().await.context("reindex failed")?;
    store.shutdown().await.context("shutdown failed")?;
    println!("index rebuilt");
    Ok(())
}
