//! Measure 9, the cost of metrics: the drain of phase 1 (no subscriber) with `--metrics-addr`
//! and a scrape of `/metrics` every second (what a demanding Prometheus does), against the
//! same drain without, alternated in one run so background load falls on both alike.

use crate::drain;
use crate::report::{MetricsCost, UnwatchedDrain};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Off, on, on, off: a drift in the machine's load during the phase falls on both sides.
const ORDER: [bool; 4] = [false, true, true, false];
/// How often the scraper asks, as a Prometheus with `scrape_interval: 1s` would.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

pub fn run(redis: &crate::support::private::RedisServer, db_url: &str) -> MetricsCost {
    let mut cost = MetricsCost::default();
    for (n, &on) in ORDER.iter().enumerate() {
        let prefix = format!("metrics-{n}:");
        let mut env = crate::env(db_url, &redis.url(), &prefix, "bench-metrics");
        if !on {
            cost.off.push(drain::unwatched(&env));
            continue;
        }
        let port = crate::support::private::free_port();
        env.push(("INVENTORY_METRICS_ADDR".into(), format!("127.0.0.1:{port}")));
        let scraping = Arc::new(AtomicBool::new(true));
        let scrapes = Arc::new(AtomicU64::new(0));
        let scraper = {
            let (scraping, scrapes) = (Arc::clone(&scraping), Arc::clone(&scrapes));
            std::thread::spawn(move || {
                while scraping.load(Ordering::SeqCst) {
                    if scrape(port) {
                        scrapes.fetch_add(1, Ordering::SeqCst);
                    }
                    // A load generator's pace, not a synchronisation.
                    std::thread::sleep(SCRAPE_EVERY);
                }
            })
        };
        cost.on.push(drain::unwatched(&env));
        scraping.store(false, Ordering::SeqCst);
        let _ = scraper.join();
        cost.scrapes += scrapes.load(Ordering::SeqCst);
    }
    let rate = |runs: &[UnwatchedDrain]| {
        let done: u64 = runs.iter().map(|d| d.jobs - d.left).sum();
        done as f64 / runs.iter().map(|d| d.wall_s).sum::<f64>()
    };
    cost.on_to_off = rate(&cost.on) / rate(&cost.off);
    cost
}

/// One `GET /metrics`; true when it answered 200.
fn scrape(port: u16) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).is_ok() && answer.starts_with("HTTP/1.1 200")
}
