//! Phase (d), chaos: FTP logins from four clients run all along while the sensor is stopped in
//! turn with SIGTERM and with `kill -9` and started again at once (same spool, same ports); its
//! `api` output has a spool and a receiver that stays up. Figures: restarts, shutdown and
//! start times, logins produced (acknowledged by the sensor) and delivered, lost, duplicates.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{
    Producer, delivery,
    outage::{round1, spooled_config},
    process::SensorProcess,
    receiver::Receiver,
    unused_ports,
};

/// Runs `cycles` stop-and-start cycles, one every `every`, then lets the spool drain (at most
/// `drain_limit`).
pub async fn run(bin: &Path, cycles: u32, every: Duration, drain_limit: Duration) -> Value {
    let dir = std::env::temp_dir().join(format!("soak-chaos-{}", std::process::id()));
    let [ftp, api] = unused_ports();
    let mut receiver = Receiver::new(api, true);
    receiver.start().await.expect("bind the receiver");
    let mut sensor = SensorProcess::new(bin, &dir, &spooled_config(&dir, ftp, api));
    sensor.start().await;
    println!("chaos: {cycles} cycles of SIGTERM or kill -9 and restart, one every {every:?}");
    let addr = SocketAddr::from(([127, 0, 0, 1], ftp));
    let producer = Producer::start(addr, 4, Duration::from_millis(20), "chaos");
    let (mut terms, mut kills, mut unclean) = (0u32, 0u32, 0u32);
    let (mut shutdown_max, mut start_max) = (Duration::ZERO, Duration::ZERO);
    let mut rss_max = 0u64;
    for cycle in 0..cycles {
        tokio::time::sleep(every).await;
        rss_max = rss_max.max(sensor.rss_kib());
        if cycle % 2 == 0 {
            let (status, took) = sensor.terminate(Duration::from_secs(30)).await;
            terms += 1;
            shutdown_max = shutdown_max.max(took);
            if !status.is_some_and(|s| s.success()) {
                unclean += 1;
            }
        } else {
            sensor.kill9();
            kills += 1;
        }
        start_max = start_max.max(sensor.start().await);
    }
    tokio::time::sleep(every).await;
    let (produced, failed) = producer.finish().await;
    let back = Instant::now();
    let all = super::wait_until(drain_limit, || {
        receiver.with(|t| produced.iter().all(|u| t.logins.contains(u)))
    })
    .await;
    let drained_in = back.elapsed();
    let _ = super::wait_until(Duration::from_secs(30), || {
        let out = sensor.output_stats();
        out["sent"].as_u64() >= out["received"].as_u64()
    })
    .await;
    let (status, _) = sensor.terminate(Duration::from_secs(30)).await;
    let mut figures = receiver.with(|t| delivery(&produced, t));
    figures["cycles"] = json!(cycles);
    figures["sigterm"] = json!(terms);
    figures["kill_9"] = json!(kills);
    figures["unclean_sigterm_exits"] = json!(unclean);
    figures["shutdown_max_secs"] = json!(round1(shutdown_max.as_secs_f64()));
    figures["start_max_secs"] = json!(round1(start_max.as_secs_f64()));
    figures["logins_failed_while_down"] = json!(failed);
    figures["delivered_all_logins"] = json!(all);
    figures["drain_secs"] = json!(round1(drained_in.as_secs_f64()));
    figures["rss_max_kib"] = json!(rss_max);
    figures["clean_final_exit"] = json!(status.is_some_and(|s| s.success()));
    println!(
        "chaos: {terms} SIGTERM + {kills} kill -9; {} logins produced, {} delivered, {} lost, \
         {} duplicate events of {} received; slowest shutdown {:.1} s, slowest start {:.1} s",
        figures["logins_produced"],
        figures["logins_delivered"],
        figures["logins_lost"],
        figures["duplicates"],
        figures["events_received"],
        shutdown_max.as_secs_f64(),
        start_max.as_secs_f64()
    );
    figures
}
