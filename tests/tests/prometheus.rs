//! The metrics example's Prometheus endpoint, scraped over 127.0.0.1: every metric family
//! the workload exercises is there, with its labels.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_endpoint_serves_the_metrics() {
    let running = eventsource_examples::metrics::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("start the metrics example");
    let body = reqwest::get(format!("http://{}/metrics", running.addr))
        .await
        .expect("scrape")
        .error_for_status()
        .expect("200")
        .text()
        .await
        .expect("body");
    for expected in [
        r#"eventsource_loads_total{aggregate_type="Wallet",outcome="ok"}"#,
        r#"eventsource_loads_total{aggregate_type="Wallet",outcome="not_found"}"#,
        r#"eventsource_saves_total{aggregate_type="Wallet",outcome="ok"} 61"#,
        r#"eventsource_snapshot_hits_total{aggregate_type="Wallet"}"#,
        r#"eventsource_snapshot_misses_total{aggregate_type="Wallet",reason="none_stored"}"#,
        r#"eventsource_snapshot_writes_total{aggregate_type="Wallet",mode="background"}"#,
        r#"eventsource_snapshot_queue_depth{aggregate_type="Wallet"} 0"#,
        r#"eventsource_subscription_events_total{subscription="wallet-totals"} 61"#,
        r#"eventsource_subscription_lag_events{subscription="wallet-totals"} 0"#,
        "# TYPE eventsource_load_duration_seconds summary",
        "# TYPE eventsource_snapshot_size_bytes summary",
        "# HELP eventsource_snapshot_misses_total Loads that replayed from the first event, by reason",
    ] {
        assert!(
            body.contains(expected),
            "`{expected}` is missing from the scrape:\n{body}"
        );
    }
    running.server.abort();
}
