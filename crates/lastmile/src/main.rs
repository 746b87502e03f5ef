//! `lastmile`: the one binary.
//!
//! - `lastmile serve` runs the dispatch service (embedded Luqiao default, or
//!   `--config`).
//! - `lastmile watch` follows the dispatchers' live feed.
//! - `lastmile terminal --unit ID` is a simulated responder terminal.
//! - `lastmile webhooks dead-letters` prints the webhook dead-letter log.
//! - `lastmile compliance` is the 13510 compliance report (offline from a
//!   data directory, or from a server); `lastmile eta fit | score | generate
//!   | status` work with the self-calibrating ETA.
//! - `lastmile report | preview | get | close | units | status | assign |
//!   release` are a small gRPC client for people at a terminal (the same calls
//!   any gRPC tool can make through server reflection).

#![forbid(unsafe_code)]

mod bench;
mod client;
mod compliance;
mod connect;
mod eta_cli;
mod http_get;
mod node;
mod sim_terminal;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lastmile_server::LastmileConfig;
use tracing::{info, warn};

#[derive(Parser)]
#[command(name = "lastmile", version, about = "Real-time incident dispatch for the 13510 tiered response")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the dispatch service.
    Serve(ServeArgs),
    /// Follow the dispatchers' live feed, one line per event.
    Watch {
        #[command(flatten)]
        target: connect::Target,
        /// Resume after this sequence number (0: only new events).
        #[arg(long, default_value_t = 0)]
        after_seq: u64,
        /// Only this incident's events.
        #[arg(long, default_value = "")]
        incident: String,
        /// Only this unit's events.
        #[arg(long, default_value = "")]
        unit: String,
    },
    /// A simulated responder terminal for one unit.
    Terminal {
        #[command(flatten)]
        target: connect::Target,
        /// The unit, e.g. T3-331004001231.
        #[arg(long)]
        unit: String,
        /// Accept every page (otherwise pages are shown and left to time out).
        #[arg(long)]
        auto_ack: bool,
        /// Decline every page.
        #[arg(long, conflicts_with = "auto_ack")]
        decline: bool,
        /// Seconds before answering a page.
        #[arg(long, default_value_t = 2.0)]
        ack_delay_s: f64,
        /// After accepting: drive to the scene (sending positions), report
        /// ON_SCENE on arrival and AVAILABLE after --on-scene-s.
        #[arg(long, requires = "auto_ack")]
        drive: bool,
        #[arg(long, default_value_t = 60.0)]
        on_scene_s: f64,
        /// Run simulated time this many times faster than life.
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        #[command(flatten)]
        crew: sim_terminal::CrewArgs,
    },
    /// Make a bearer token for [[auth.tokens]]: prints a new random token and
    /// the `token_sha256` line for the config (`--hash`: the digest of a token
    /// read from stdin).
    Token {
        #[arg(long)]
        hash: bool,
    },
    /// Load benchmark of simultaneous incidents, measured against Ping in the same run.
    Bench(Box<bench::BenchArgs>),
    /// Webhook operator commands.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// The self-calibrating ETA: fit it to past responses, score a model,
    /// generate synthetic responses, or ask a server for its models.
    #[command(subcommand)]
    Eta(eta_cli::EtaCommand),
    /// The 13510 compliance report (weekly report, monthly bulletin), from a
    /// data directory's journal or a server.
    Compliance(compliance::ComplianceArgs),
    /// A cluster of nodes on one PostgreSQL journal.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    #[command(flatten)]
    Client(client::ClientCommand),
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The leader, its epoch and lease, and each node's role, last
    /// heartbeat and lag behind the journal's log.
    Status {
        /// The nodes' configuration file (its [journal] names the database).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The database, overriding the file's [journal] (as `serve --postgres`).
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        #[arg(long, value_name = "NAME", requires = "postgres")]
        postgres_schema: Option<String>,
        /// One JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (default: the embedded config/lastmile.toml and Luqiao dataset).
    #[arg(long)]
    config: Option<PathBuf>,
    /// gRPC listen address, overriding `server.listen` (`127.0.0.1:0` picks a free port).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// JSON/HTTP gateway listen address, overriding `http.listen`.
    #[arg(long, value_name = "ADDR", conflicts_with = "no_http")]
    http_listen: Option<String>,
    /// No JSON/HTTP gateway, whatever `http.listen` says.
    #[arg(long)]
    no_http: bool,
    /// Log as JSON lines instead of human-readable text. Level: RUST_LOG (default info).
    #[arg(long)]
    log_json: bool,
    /// SQLite journal in this folder, overriding `[journal]` (default: ./data).
    #[arg(long, conflicts_with = "in_memory")]
    data_dir: Option<PathBuf>,
    /// Journal backend "memory": nothing survives a restart (demos, benchmarks).
    #[arg(long)]
    in_memory: bool,
    /// PostgreSQL journal at this URL, overriding `[journal]` (a URL with a
    /// password shows in the process list: prefer `journal.url_env`).
    #[arg(long, value_name = "URL", conflicts_with_all = ["in_memory", "data_dir"])]
    postgres: Option<String>,
    /// The PostgreSQL schema of lastmile's tables, with --postgres (default: lastmile).
    #[arg(long, value_name = "NAME", requires = "postgres")]
    postgres_schema: Option<String>,
    /// Run as this node of a cluster on the PostgreSQL journal, overriding
    /// `cluster.node_id` (the rest of `[cluster]` at its defaults if the
    /// file has none).
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
}

impl ServeArgs {
    /// The configuration file (or the embedded one) with the flags applied,
    /// validated again when a flag changed it.
    fn config(&self) -> anyhow::Result<LastmileConfig> {
        use lastmile_server::config::JournalBackend;
        let mut config = match &self.config {
            Some(path) => LastmileConfig::load(path)?,
            None => LastmileConfig::embedded()?,
        };
        if let Some(addr) = self.listen {
            config.server.listen = addr;
        }
        if self.in_memory {
            config.journal.backend = JournalBackend::Memory;
        } else if let Some(dir) = &self.data_dir {
            config.journal.backend = JournalBackend::Sqlite { data_dir: dir.clone() };
        } else if let Some(url) = &self.postgres {
            config.journal.backend = postgres_backend(url.clone(), self.postgres_schema.clone())?;
        }
        if let Some(id) = &self.node_id {
            let mut cluster =
                config.cluster.take().unwrap_or_else(|| lastmile_server::config::ClusterConfig::node(id.clone()));
            cluster.node_id = id.clone();
            config.cluster = Some(cluster);
        }
        if self.no_http {
            config.http.listen = None;
        } else if let Some(addr) = &self.http_listen {
            anyhow::ensure!(!addr.is_empty(), "--http-listen: empty; use --no-http for no gateway");
            config.http.listen = Some(addr.clone());
        }
        // Flags are checked like the file's values (e.g. naming `http.listen`).
        config.validate()?;
        Ok(config)
    }
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Print the dead-letter log, one JSON object per line, oldest first
    /// (offline: reads the file, needs no server).
    DeadLetters {
        /// Configuration whose `webhooks.dead_letter_path` / `journal.data_dir`
        /// locate the log (default: the embedded one). It is validated, so
        /// `secret_env` variables must be set; else use --file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Journal folder, overriding `journal.data_dir` (as `serve --data-dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The dead-letter file itself.
        #[arg(long, conflicts_with_all = ["config", "data_dir"])]
        file: Option<PathBuf>,
    },
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole cause chain on one line, without a backtrace.
            eprintln!("lastmile: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_json);
            runtime.block_on(serve(args.config()?))
        }
        Command::Watch { target, after_seq, incident, unit } => {
            runtime.block_on(watch::run(target, after_seq, incident, unit))
        }
        Command::Terminal { target, unit, auto_ack, decline, ack_delay_s, drive, on_scene_s, time_scale, crew } => {
            let behaviour = sim_terminal::Behaviour {
                crew: crew.travel()?,
                auto_ack,
                decline,
                ack_delay: Duration::from_secs_f64(ack_delay_s.max(0.0)),
                drive,
                time_scale,
                on_scene_s,
                verbose: true,
            };
            runtime.block_on(async move {
                loop {
                    let result = match target.connect().await {
                        Ok(conn) => sim_terminal::run(conn, unit.clone(), behaviour.clone()).await,
                        Err(e) => Err(tonic::Status::unavailable(format!("{e:#}"))),
                    };
                    match result {
                        Err(status) if status.code() == tonic::Code::NotFound => anyhow::bail!("{}", status.message()),
                        Err(status) => eprintln!("{unit}: {}; reconnecting", status.message()),
                        Ok(()) => eprintln!("{unit}: page feed ended; reconnecting"),
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        }
        Command::Token { hash } => token(hash),
        Command::Bench(args) => runtime.block_on(bench::run(*args)),
        Command::Webhooks(WebhooksCommand::DeadLetters { config, data_dir, file }) => {
            print_dead_letters(config, data_dir, file)
        }
        Command::Client(command) => runtime.block_on(client::run(command)),
        Command::Eta(command) => runtime.block_on(eta_cli::run(command)),
        Command::Compliance(args) => compliance::run(args, &runtime),
        Command::Cluster(ClusterCommand::Status { config, postgres, postgres_schema, json }) => {
            let mut config = match &config {
                Some(path) => LastmileConfig::load(path)?,
                None => LastmileConfig::embedded()?,
            };
            if let Some(url) = postgres {
                config.journal.backend = postgres_backend(url, postgres_schema)?;
            }
            node::status(&config, json)
        }
    }
}

fn print_dead_letters(config: Option<PathBuf>, data_dir: Option<PathBuf>, file: Option<PathBuf>) -> anyhow::Result<()> {
    let (path, keep) = match file {
        Some(file) => (file, usize::MAX),
        None => {
            let config = match &config {
                Some(path) => LastmileConfig::load(path)?,
                None => LastmileConfig::embedded()?,
            };
            let data_dir = data_dir.or_else(|| config.journal.backend.data_dir().map(PathBuf::from));
            let path = config
                .webhooks
                .dead_letter_file(data_dir.as_deref())
                .context("no dead-letter file: webhooks.dead_letter_path is not set and the journal is in memory")?;
            (path, config.webhooks.max_dead_letters_kept)
        }
    };
    let (letters, _older) = lastmile_server::webhook::read_dead_letter_file(&path, keep)?;
    let mut out = std::io::stdout().lock();
    for letter in &letters {
        use std::io::Write;
        writeln!(out, "{}", serde_json::to_string(letter)?)?;
    }
    eprintln!("{} dead letter(s) in {}", letters.len(), path.display());
    Ok(())
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: stdout carries only the "listening on" line scripts read.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Binds, recovers (the port answering health NOT_SERVING meanwhile),
/// serves, and on SIGTERM/SIGINT drains for `server.shutdown_grace_ms`.
async fn serve(config: LastmileConfig) -> anyhow::Result<()> {
    if !config.journal.backend.is_durable() {
        warn!("running in memory: nothing survives a restart");
    }
    if let Some(cluster) = config.cluster.clone() {
        return node::serve(config, cluster).await;
    }
    let listener = Arc::new(bind_grpc(&config).await?);
    let opened = recover_answering_health(&config, listener.clone()).await?;
    // The gateway's port is bound once recovered, so a journal that cannot be
    // opened is reported as such, not as a busy port.
    let http_listener = bind_http(&config).await?;
    let ready = ready_lines(&listener, http_listener.as_ref())?;
    let listeners = lastmile_server::Listeners { grpc: listener, http: http_listener.map(Arc::new) };
    run_until_signal(Arc::new(config), listeners, opened, ready).await
}

/// The gRPC listener, bound once the configured addresses have passed the
/// exposure check (no open service on a reachable address).
async fn bind_grpc(config: &LastmileConfig) -> anyhow::Result<tokio::net::TcpListener> {
    let mut listening = vec![("server.listen", config.server.listen)];
    if let Some(addr) = config.http.listen_addr() {
        listening.push(("http.listen", addr));
    }
    config.check_exposure(&listening)?;
    tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))
}

/// The gateway's listener, if `http.listen` asks for one.
async fn bind_http(config: &LastmileConfig) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    match config.http.listen_addr() {
        Some(addr) => Ok(Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("http.listen: cannot listen on {addr}"))?,
        )),
        None => Ok(None),
    }
}

/// `--postgres URL [--postgres-schema NAME]` as a journal backend.
fn postgres_backend(url: String, schema: Option<String>) -> anyhow::Result<lastmile_server::config::JournalBackend> {
    let pg =
        lastmile_server::config::PostgresJournal::new(url, schema).map_err(|e| anyhow::anyhow!("--postgres: {e}"))?;
    Ok(lastmile_server::config::JournalBackend::Postgres(pg))
}

/// Reads the journal and rebuilds the state while the port answers health
/// checks with NOT_SERVING.
async fn recover_answering_health(
    config: &LastmileConfig,
    listener: Arc<tokio::net::TcpListener>,
) -> anyhow::Result<lastmile_server::Opened> {
    let (recovered_tx, recovered_rx) = tokio::sync::oneshot::channel::<()>();
    let health_config = config.clone();
    let health_phase = tokio::spawn(async move {
        lastmile_server::serve_health_while_recovering(listener, &health_config, async {
            let _ = recovered_rx.await;
        })
        .await
    });
    let recovery_config = config.clone();
    let opened = tokio::task::spawn_blocking(move || lastmile_server::open(&recovery_config)).await?;
    let _ = recovered_tx.send(());
    health_phase.await??;
    Ok(opened?)
}

/// The lines printed once ready (recovered, and the timers that came due
/// while down fired and committed): scripts and tests that pass port 0 read
/// the real addresses from them (gRPC first, so scripts reading the first
/// line are unaffected). A closed stdout is ignored: the server must not
/// die because its reader did.
fn ready_lines(
    grpc: &tokio::net::TcpListener,
    http: Option<&tokio::net::TcpListener>,
) -> anyhow::Result<impl FnOnce() + Send + 'static> {
    let mut lines = format!("lastmile listening on {}\n", grpc.local_addr()?);
    if let Some(http) = http {
        lines += &format!("lastmile http listening on {}\n", http.local_addr()?);
    }
    Ok(move || {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = out.write_all(lines.as_bytes());
        let _ = out.flush();
    })
}

/// Serves until SIGTERM/SIGINT, then drains for at most
/// `server.shutdown_grace_ms`; a second signal exits at once.
async fn run_until_signal(
    config: Arc<LastmileConfig>,
    listeners: lastmile_server::Listeners,
    opened: lastmile_server::Opened,
    ready: impl FnOnce() + Send + 'static,
) -> anyhow::Result<()> {
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        let _ = stop_rx.await;
    };
    let server = tokio::spawn(lastmile_server::run_opened_then(listeners, config, opened, stopped, ready));
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result?.map_err(Into::into),
        () = shutdown_signal() => {}
    }
    info!(grace_ms = grace.as_millis() as u64, "shutdown: no longer accepting; draining in-flight requests");
    let _ = stop_tx.send(());
    tokio::select! {
        result = &mut server => result??,
        () = tokio::time::sleep(grace) => warn!("shutdown: grace period over; exiting with requests in flight"),
        () = shutdown_signal() => warn!("shutdown: second signal; exiting now"),
    }
    Ok(())
}

fn token(hash: bool) -> anyhow::Result<()> {
    use std::io::Read;
    let token = if hash {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text.trim().to_string()
    } else {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("cannot read /dev/urandom")?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        println!("token = {token}");
        token
    };
    anyhow::ensure!(!token.is_empty(), "empty token");
    println!("token_sha256 = \"{}\"", lastmile_server::auth::token_sha256_hex(&token));
    Ok(())
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
