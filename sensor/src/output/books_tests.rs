//! Tests: every output's counters balance at every moment, not only at the end:
//! `received + recovered = sent + dropped + queued + in_spool`, in every snapshot taken while
//! events pour in, a receiver flaps between accepting (200), failing (503) and refusing (400),
//! queues overflow, and the spool fills and drains; and across a restart, the records the spool
//! kept come back as `recovered` and are delivered.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{
    format::{FormatContext, golden},
    output::{OutputConfig, fanout::Fanout},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

/// How the receiver answers: 200, 503 (retried) or 400 (refused, dropped).
const UP: u8 = 0;
const FAILING: u8 = 1;
const REFUSING: u8 = 2;

/// A minimal HTTP/1.1 receiver answering each request as `mode` says; counts the requests it
/// accepted. Ends with the runtime.
async fn receiver(mode: Arc<AtomicU8>, accepted: Arc<AtomicU64>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (mode, accepted) = (mode.clone(), accepted.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let (head, body_len) = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, len);
                        }
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buf.len() < head + body_len {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head + body_len);
                    let status = match mode.load(Ordering::Relaxed) {
                        UP => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            "200 OK"
                        }
                        FAILING => "503 Service Unavailable",
                        _ => "400 Bad Request",
                    };
                    let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    if conn.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn api_output(name: &str, port: u16, extra: serde_json::Value) -> OutputConfig {
    let mut cfg = serde_json::json!({
        "name": name,
        "format": "trapster",
        "transport": {"type": "api", "url": format!("http://127.0.0.1:{port}/events"),
                      "timeout_secs": 2},
    });
    if let (Some(cfg), Some(extra)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            cfg.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(cfg).unwrap()
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sensor-books-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_balance_in_every_snapshot_while_events_move() {
    let dir = temp_dir("moving");
    let mode = Arc::new(AtomicU8::new(UP));
    let accepted = Arc::new(AtomicU64::new(0));
    let port = receiver(mode.clone(), accepted.clone()).await;
    let outputs = [
        // Small queue that overflows and drops the oldest.
        api_output(
            "memory",
            port,
            serde_json::json!({"queue_size": 32, "when_full": "drop_oldest"}),
        ),
        // Overflow waits up to 50 ms, then is dropped.
        api_output(
            "blocking",
            port,
            serde_json::json!({"queue_size": 16, "when_full": "block", "block_ms": 50,
                               "transport": {"type": "api", "batch": "array", "max_batch": 10,
                                             "url": format!("http://127.0.0.1:{port}/events")}}),
        ),
        // A spool of 128 KiB: fills while the receiver fails, drains when it is back.
        api_output(
            "spooled",
            port,
            serde_json::json!({"spool": {"dir": dir.join("spool"), "max_bytes": 131_072}}),
        ),
    ];
    let fanout = Arc::new(Fanout::start(&outputs, &FormatContext::for_device("s1")));
    let done = Arc::new(AtomicBool::new(false));
    // The sampler: reads the counters as fast as it can while everything moves.
    let sampler = {
        let (fanout, done) = (fanout.clone(), done.clone());
        tokio::spawn(async move {
            let mut samples = 0u64;
            let mut unbalanced = Vec::new();
            while !done.load(Ordering::Relaxed) && samples < 2_000_000 {
                for s in fanout.stats() {
                    if !s.counts.balances() && unbalanced.len() < 5 {
                        unbalanced.push(s);
                    }
                }
                samples += 1;
                if samples.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            (samples, unbalanced)
        })
    };
    // The producer: 3,000 events in bursts of 10 (at most 2,000 a second), while the receiver
    // flaps every 500 events.
    let events = golden::catalogue_events();
    let phases = [UP, FAILING, UP, REFUSING, UP, FAILING, UP];
    for (i, event) in events.iter().cycle().take(3_000).enumerate() {
        if i.is_multiple_of(500) {
            mode.store(phases[i / 500 % phases.len()], Ordering::Relaxed);
        }
        fanout.send(event.clone());
        if i.is_multiple_of(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    mode.store(UP, Ordering::Relaxed);
    // Let the outputs deliver what they still can, sampling all the while.
    let settled = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let stats = fanout.stats();
            if stats
                .iter()
                .all(|s| s.counts.queued == 0 && s.counts.in_spool == 0)
            {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the outputs deliver or drop everything once the receiver is back");
    done.store(true, Ordering::Relaxed);
    let (samples, unbalanced) = sampler.await.unwrap();
    assert!(
        unbalanced.is_empty(),
        "unbalanced snapshots: {unbalanced:?}"
    );
    assert!(samples > 1_000, "only {samples} snapshots taken");
    for s in &settled {
        assert_eq!(s.counts.received, s.counts.sent + s.counts.dropped, "{s:?}");
        assert!(s.counts.received >= 3_000, "{s:?}");
    }
    // Losses happened where they should: queue overflow, refusals.
    let by_name = |n: &str| settled.iter().find(|s| s.name == n).unwrap().clone();
    assert!(
        by_name("memory").counts.dropped_queue_full > 0,
        "{settled:?}"
    );
    assert!(by_name("spooled").counts.spooled > 0, "{settled:?}");
    assert!(
        settled.iter().all(|s| s.counts.dropped < s.counts.received),
        "{settled:?}"
    );
    let fanout = Arc::into_inner(fanout).expect("the sampler is done");
    let last = fanout.finish(Duration::from_secs(5)).await;
    assert!(last.iter().all(|s| s.counts.balances()), "{last:?}");
    let requests = accepted.load(Ordering::Relaxed);
    assert!(requests > 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_spool_kept_comes_back_as_recovered_and_is_delivered() {
    let dir = temp_dir("recovered");
    let mode = Arc::new(AtomicU8::new(FAILING));
    let accepted = Arc::new(AtomicU64::new(0));
    let port = receiver(mode.clone(), accepted.clone()).await;
    let spool = serde_json::json!({"spool": {"dir": dir.join("spool")}});
    let ctx = FormatContext::for_device("s1");
    // First run: the receiver fails throughout; everything stays in the spool.
    let fanout = Fanout::start(&[api_output("siem", port, spool.clone())], &ctx);
    for event in golden::catalogue_events().into_iter().cycle().take(200) {
        fanout.send(event);
    }
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let s = fanout.stats().remove(0);
            assert!(s.counts.balances(), "{s:?}");
            if s.counts.in_spool == 200 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("all 200 events reach the spool");
    assert_eq!(
        (first.counts.sent, first.counts.dropped, first.counts.queued),
        (0, 0, 0)
    );
    let stopped = fanout.finish(Duration::from_millis(200)).await.remove(0);
    assert!(stopped.counts.balances(), "{stopped:?}");
    assert_eq!(stopped.counts.in_spool, 200, "{stopped:?}");
    // Second run: the receiver is up; the 200 come back as recovered and are delivered.
    mode.store(UP, Ordering::Relaxed);
    let fanout = Fanout::start(&[api_output("siem", port, spool)], &ctx);
    let second = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let s = fanout.stats().remove(0);
            assert!(s.counts.balances(), "{s:?}");
            if s.counts.recovered == 200 && s.counts.in_spool == 0 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the recovered records are delivered");
    assert_eq!(
        (
            second.counts.received,
            second.counts.sent,
            second.counts.dropped
        ),
        (0, 200, 0)
    );
    assert_eq!(accepted.load(Ordering::Relaxed), 200);
    let _ = fanout.finish(Duration::from_secs(1)).await;
    std::fs::remove_dir_all(&dir).ok();
}
