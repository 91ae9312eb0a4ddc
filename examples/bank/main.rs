//! The bank service as a program: `cargo run --example bank [-- OPTIONS]`. The service
//! and its documentation are in `mod.rs` beside this file (`eventsource_examples::bank`).
//!
//! ```text
//! --database URL|PATH   postgres://... for PostgreSQL; a file path, or :memory: (the
//!                       default), for SQLite. Default: $DATABASE_URL, else :memory:.
//! --addr HOST:PORT      where to listen; port 0 picks a free one. Default: $BANK_ADDR,
//!                       else 127.0.0.1:3000.
//! ```
//!
//! Prints `listening on http://ADDR` once it accepts connections, then serves until
//! Ctrl-C or SIGTERM, and stops gracefully.

use std::io::Write;

use eventsource_examples::bank::{self, Backend, Config};

fn usage() -> ! {
    eprintln!("usage: bank [--database postgres://...|PATH|:memory:] [--addr HOST:PORT]");
    std::process::exit(2)
}

fn config() -> Config {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut database = env("DATABASE_URL");
    let mut addr = env("BANK_ADDR");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--database" => database = Some(args.next().unwrap_or_else(|| usage())),
            "--addr" => addr = Some(args.next().unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("bank: unknown argument `{arg}`");
                usage()
            }
        }
    }
    let mut config = Config::default();
    if let Some(database) = database {
        config.backend = Backend::parse(&database);
    }
    if let Some(addr) = addr {
        config.addr = addr.parse().unwrap_or_else(|e| {
            eprintln!("bank: `{addr}` is not a HOST:PORT address: {e}");
            usage()
        });
    }
    config
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
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

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("bank: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), eventsource::BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = config();
    let backend = config.backend.describe();
    let running = bank::start(config).await?;
    println!("listening on http://{} ({backend})", running.addr());
    std::io::stdout().flush()?;

    stop_signal().await;
    eprintln!("bank: stopping: finishing the requests in flight and the projection's batch");
    running.shutdown().await?;
    eprintln!("bank: stopped");
    Ok(())
}
