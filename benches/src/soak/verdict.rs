//! What each soak phase must show, checked on its figures: the soak fails (exit code 1) when
//! one check fails, naming the phase, the check and the figures it read. Timing is never
//! checked (the figures print it); losses, caps, answers and memory growth are.
//!
//! | phase  | checks |
//! |--------|--------|
//! | outage | no login lost, every login drained after the outage, counters balance (`received = sent + dropped`, nothing dropped), clean exit |
//! | idle   | every service answers a fresh client while 10,000 connections are held and after they go, no connection refused below the cap, descriptors bounded by the cap plus the reserve, clean exit |
//! | load   | no session failed, no event dropped, every event delivered, resident memory grows less than 10 % (and at most 16 MiB) over the second half, clean exit |
//! | chaos  | no login lost across every SIGTERM and `kill -9`, every duplicate counted (received − distinct), no unclean SIGTERM exit, clean final exit |

use serde_json::Value;

/// Descriptors the sensor keeps beyond its connection cap (`sensor::net::fds::RESERVE`).
const FD_RESERVE: u64 = 256;

/// One check: its name and whether it held.
pub type Check = (&'static str, bool);

/// A figure; `None` when missing (its checks then fail).
fn u(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn i(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// `a + b`, when both are there.
fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a.zip(b).map(|(a, b)| a.saturating_add(b))
}

fn yes(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Every service answered and logged a fresh session (`fresh_sessions_*` figures).
fn all_answered(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|f| {
        let services = u(f, "services");
        services.is_some_and(|n| n > 0)
            && u(f, "answered") == services
            && u(f, "logged") == services
    })
}

/// The checks of `phase` on its `figures`.
#[must_use]
pub fn checks(phase: &str, figures: &Value) -> Vec<Check> {
    let f = figures;
    match phase {
        "outage" => {
            let out = f.get("output_counters").cloned().unwrap_or(Value::Null);
            vec![
                ("no login lost", u(f, "logins_lost") == Some(0)),
                ("every login drained", yes(f, "drained_all_logins")),
                (
                    "nothing dropped by the output",
                    u(&out, "dropped") == Some(0),
                ),
                (
                    "output counters balance",
                    u(&out, "received").is_some()
                        && u(&out, "received") == sum(u(&out, "sent"), u(&out, "dropped")),
                ),
                ("clean exit", yes(f, "clean_exit")),
            ]
        }
        "idle" => {
            let cap = u(f, "max_connections");
            vec![
                (
                    "every service answers while connections are held",
                    all_answered(f, "fresh_sessions_while_held"),
                ),
                (
                    "every service answers after they go",
                    all_answered(f, "fresh_sessions_after"),
                ),
                (
                    "no connect failed below the cap",
                    u(f, "connect_failed") == Some(0),
                ),
                (
                    "descriptors bounded by the cap and its reserve",
                    u(f, "sensor_fds_max")
                        .zip(cap)
                        .is_some_and(|(fds, cap)| fds <= cap.saturating_add(FD_RESERVE)),
                ),
                ("clean exit", yes(f, "clean_exit")),
            ]
        }
        "load" => {
            let first = i(f, "rss_first_kib");
            let growth = i(f, "rss_growth_second_half_kib");
            vec![
                ("no session failed", u(f, "sessions_failed") == Some(0)),
                ("no event dropped", u(f, "events_dropped") == Some(0)),
                (
                    "every event delivered",
                    u(f, "events_delivered").is_some()
                        && u(f, "events_delivered") == u(f, "events_produced"),
                ),
                (
                    "memory stops growing (second half < 10 % and 16 MiB)",
                    first
                        .zip(growth)
                        .is_some_and(|(first, growth)| growth < (first / 10).min(16 * 1024)),
                ),
                ("clean exit", yes(f, "clean_exit")),
            ]
        }
        "chaos" => vec![
            ("no login lost", u(f, "logins_lost") == Some(0)),
            ("every login delivered", yes(f, "delivered_all_logins")),
            (
                "duplicates counted",
                u(f, "duplicates").is_some()
                    && u(f, "duplicates")
                        == u(f, "events_received")
                            .zip(u(f, "events_distinct"))
                            .map(|(r, d)| r.saturating_sub(d)),
            ),
            (
                "no unclean SIGTERM exit",
                u(f, "unclean_sigterm_exits") == Some(0),
            ),
            ("clean final exit", yes(f, "clean_final_exit")),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::checks;

    fn failed(phase: &str, figures: &serde_json::Value) -> Vec<&'static str> {
        checks(phase, figures)
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| name)
            .collect()
    }

    #[test]
    fn the_committed_quick_figures_pass_and_a_loss_fails() {
        let text = include_str!("../../results/soak.json");
        let report: serde_json::Value = serde_json::from_str(text).unwrap();
        for phase in ["outage", "idle", "load", "chaos"] {
            assert_eq!(failed(phase, &report[phase]), Vec::<&str>::new(), "{phase}");
        }
        let mut lossy = report["chaos"].clone();
        lossy["logins_lost"] = json!(1);
        assert_eq!(failed("chaos", &lossy), ["no login lost"]);
        let mut growing = report["load"].clone();
        growing["rss_growth_second_half_kib"] = json!(20_000);
        assert_eq!(
            failed("load", &growing),
            ["memory stops growing (second half < 10 % and 16 MiB)"]
        );
        // A figure that is missing fails its check rather than passing unseen.
        assert_eq!(
            failed("outage", &json!({})).len(),
            checks("outage", &json!({})).len()
        );
    }
}
