//! `cargo run --example metrics [-- 127.0.0.1:9464]`: runs a small workload and serves
//! its metrics for Prometheus at `http://<addr>/metrics` until Ctrl-C.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), eventsource::BoxError> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9464".to_owned())
        .parse()?;
    let running = eventsource_examples::metrics::start(addr).await?;
    println!(
        "metrics at http://{}/metrics (Ctrl-C to stop)",
        running.addr
    );
    tokio::signal::ctrl_c().await?;
    running.server.abort();
    Ok(())
}
