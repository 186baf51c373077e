//! The command line: `run`, `check` and `demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sessiongate::{Config, Listeners, RunOptions, config::ConfigError};

/// jemalloc: fewer instructions per request than glibc's malloc (most on
/// HTTP/2, where glibc's free lists showed in profiles), no per-block
/// header (a stored session is smaller), and large blocks such as the
/// pre-sized session tables stay untouched until used. mimalloc was tried:
/// its eagerly committed arenas kept ~70 MiB of those tables resident at
/// start. Measured in docs/BENCHMARKS.md.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "sessiongate",
    version,
    about = "A session-hardening TLS reverse proxy for legacy web apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Serve the public development key (certs/dev.key) on a non-loopback address.
        #[arg(long)]
        allow_dev_certificate: bool,
    },
    /// Validate a config file and print the effective settings.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the gateway in front of a bundled, deliberately vulnerable demo app.
    Demo {
        /// Where the gateway listens for TLS.
        #[arg(long, default_value = "127.0.0.1:8443")]
        https: std::net::SocketAddr,
        /// Where the redirect-only plain-HTTP listener listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: std::net::SocketAddr,
    },
}

/// Exit codes: 0 clean, 1 runtime failure, 2 bad config.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::from_file(&config) {
            Ok(c) => {
                println!("{config}: valid\n", config = config.display());
                print!("{c}");
                ExitCode::SUCCESS
            }
            Err(e) => config_error(e),
        },
        Command::Run {
            config,
            allow_dev_certificate,
        } => {
            let config = match Config::from_file(&config) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            sessiongate::observability::init(&config.log);
            let workers = config.listen.workers;
            runtime(
                workers,
                run(
                    config,
                    RunOptions {
                        allow_dev_certificate,
                    },
                ),
            )
        }
        Command::Demo { https, http } => runtime(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            sessiongate::demo::run(https, http),
        ),
    }
}

fn config_error(e: ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// The runtime: with one worker, tokio's single-threaded scheduler, which
/// runs everything on the main thread without the work-stealing machinery
/// (cheaper per request, and a shorter latency tail: woken tasks queue in
/// order instead of jumping ahead through the LIFO slot); with more, the
/// multi-threaded one with that many workers.
fn runtime(workers: usize, fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(fut);
    // Connections still open past the shutdown grace end here, with their
    // last log lines; then what is gathered is written.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    sessiongate::observability::flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, opts: RunOptions) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let prepared = sessiongate::prepare(config.clone(), opts)?;
    let signal = sessiongate::server::shutdown_signal()?;
    let listeners = Listeners::bind(&config.listen).await?;
    prepared.serve(listeners, signal).await;
    Ok(())
}
