//! A new plan for running services (configuration reload), applied instance by instance:
//! unchanged instances keep running untouched (listeners, open sessions), removed and changed
//! ones stop, added and changed ones start, taking over the sockets of the ones that stop on
//! the same address, port and transport (see [`instances`](super::instances)). Instances that
//! were down are tried again. Counters carry on.

use std::{sync::Arc, time::Duration};

use super::{
    ServiceError, Services, ServicesPlan,
    framework::{Shared, gate::Gate},
    instances::{self, InstanceKey, Phase},
};

/// What a reload did, by instance (`ftp:21`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Left running untouched.
    pub kept: Vec<InstanceKey>,
    /// Stopped: removed, or changed (then also in `started`, unless it could not start).
    pub stopped: Vec<InstanceKey>,
    /// Started: added, changed, or down before.
    pub started: Vec<InstanceKey>,
}

impl Reloaded {
    /// Whether any instance stopped or started.
    #[must_use]
    pub fn changed(&self) -> bool {
        !self.stopped.is_empty() || !self.started.is_empty()
    }
}

impl Services {
    /// Applies `plan` (see the module documentation); the instances that cannot start are
    /// listed by [`Services::down`] afterwards. Sessions of stopped instances get `grace` to
    /// end.
    ///
    /// # Errors
    /// A `services` block that does not check, an interface that cannot be used, or (with
    /// `sensor.services.strict`) an instance that cannot start: nothing changed then.
    pub async fn reload(
        &mut self,
        plan: &ServicesPlan,
        grace: Duration,
    ) -> Result<Reloaded, ServiceError> {
        let wanted = instances::wanted(plan)?;
        let plan_wide = instances::plan_wide(plan);
        let everything = plan_wide != self.plan_wide;
        let diff = instances::diff(
            self.instances.iter().map(|i| (i.key(), i.recipe())),
            &wanted,
            everything,
        );
        self.set_whitelist(plan.whitelist.clone());
        if diff.stop.is_empty() && diff.start.is_empty() {
            self.follow_decoys(plan).await;
            return Ok(Reloaded {
                kept: diff.keep,
                ..Reloaded::default()
            });
        }
        let limits = if everything {
            Arc::new(plan.limits.clone())
        } else {
            Arc::clone(&self.shared.limits)
        };
        let starting: Vec<&instances::Wanted> = wanted
            .iter()
            .filter(|w| diff.start.contains(&w.key))
            .collect();
        let (prepared, down) = {
            let donors: Vec<&instances::Running> = self
                .instances
                .iter()
                .filter(|i| diff.stop.contains(i.key()))
                .collect();
            instances::prepare(&starting, &limits, &plan.interface, &donors, Phase::Reload).await?
        };
        // Everything that starts is built and bound: from here on the change happens.
        if everything {
            self.shared = Shared {
                gate: Gate::new(
                    limits.max_connections,
                    limits.max_connections_per_source,
                    plan.source_prefix,
                ),
                limits,
                ..self.shared.clone()
            };
            self.plan_wide = plan_wide;
        }
        let (stopping, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.instances)
            .into_iter()
            .partition(|i| diff.stop.contains(i.key()));
        self.instances = kept;
        for instance in &stopping {
            instance.cancel();
        }
        let mut trackers = Vec::new();
        for instance in stopping {
            trackers.push(instance.finish().await);
        }
        let started: Vec<InstanceKey> = prepared.iter().map(|p| p.key().clone()).collect();
        for prepared in prepared {
            let running = instances::launch(prepared, &self.shared, &self.stop);
            self.instances.push(running);
        }
        self.down = down;
        self.refresh_bound();
        self.follow_decoys(plan).await;
        self.log_down();
        instances::wait_sessions(trackers, grace).await;
        Ok(Reloaded {
            kept: diff.keep,
            stopped: diff.stop,
            started,
        })
    }
}

impl Services {
    /// The any-port decoys follow `plan`, once its instances run: started, stopped, or
    /// relaunched with new handlers on the same listeners, and their steered ports recomputed.
    /// A catch-all that cannot start or follow is reported down (`tcp`, port 0); one that
    /// cannot follow keeps serving as it was.
    async fn follow_decoys(&mut self, plan: &ServicesPlan) {
        let outcome = match (&mut self.decoys, plan.decoys.enabled) {
            (Some(decoys), true) => {
                super::framework::anyport::follow(decoys, plan, &self.shared).await
            }
            (Some(_), false) => {
                if let Some(decoys) = self.decoys.take() {
                    decoys.cancel();
                    let _sessions = decoys.finish().await;
                }
                Ok(())
            }
            (None, true) => super::framework::anyport::start(
                plan,
                &self.shared,
                &self.stop,
                self.raw_udp.clone(),
            )
            .await
            .map(|decoys| self.decoys = Some(decoys)),
            (None, false) => Ok(()),
        };
        if let Err(err) = outcome {
            self.down
                .push(super::DownService::new(crate::event::Service::Tcp, 0, err));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use serde_json::{Value, json};
    use tokio::{
        io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
        net::TcpStream,
    };

    use super::super::{ServiceLimits, ServicesPlan, ServicesSection, instances, start};
    use crate::{event::Action, shutdown::CancellationToken};

    fn plan(services: Value, hostname: &str) -> ServicesPlan {
        let map: BTreeMap<String, Value> = serde_json::from_value(services).unwrap();
        ServicesPlan {
            hostname: hostname.to_owned(),
            interface: "lo".to_owned(),
            limits: ServiceLimits {
                state_dir: std::env::temp_dir().join("sensor-reload-unit"),
                ephemeral_ports: true,
                ..ServiceLimits::default()
            },
            services: ServicesSection::from_map(map),
            ..ServicesPlan::default()
        }
    }

    fn keys(list: &[instances::InstanceKey]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    /// The diff of `old` (as if running) against `new`.
    fn diff(old: &ServicesPlan, new: &ServicesPlan) -> instances::Diff {
        let running = instances::wanted(old).unwrap();
        instances::diff(
            running.iter().map(|w| (&w.key, &w.recipe)),
            &instances::wanted(new).unwrap(),
            instances::plan_wide(old) != instances::plan_wide(new),
        )
    }

    #[test]
    fn instances_are_compared_one_by_one() {
        let old = plan(
            json!({"ftp": [{"port": 2121}, {"port": 2122, "banner": "a"}],
                   "telnet": [{"port": 2323}]}),
            "srv01",
        );
        let new = plan(
            json!({"ftp": [{"port": 2122, "banner": "b"}, {"port": 2121}],
                   "http": [{"port": 8080}]}),
            "srv01",
        );
        let d = diff(&old, &new);
        // Reordering the list does not change an instance; its port and protocol name it.
        assert_eq!(keys(&d.keep), ["ftp:2121"]);
        assert_eq!(keys(&d.stop), ["ftp:2122", "telnet:2323"]);
        assert_eq!(keys(&d.start), ["ftp:2122", "http:8080"]);
    }

    #[test]
    fn the_top_level_hostname_restarts_only_instances_without_their_own() {
        let services = json!({"ftp": [{"port": 2121, "hostname": "FTP01"}],
                              "telnet": [{"port": 2323}]});
        let d = diff(&plan(services.clone(), "srv01"), &plan(services, "srv02"));
        assert_eq!(keys(&d.keep), ["ftp:2121"]);
        assert_eq!(keys(&d.stop), ["telnet:2323"]);
        assert_eq!(keys(&d.start), ["telnet:2323"]);
    }

    #[test]
    fn plan_wide_limits_restart_everything_and_port_zero_instances_are_told_apart() {
        let services = json!({"ftp": [{"port": 0}, {"port": 0, "banner": "x"}]});
        let old = plan(services.clone(), "");
        let mut new = plan(services, "");
        assert_eq!(keys(&diff(&old, &new).keep), ["ftp:0", "ftp:0#1"]);
        new.limits.idle_timeout_secs = Some(5);
        let d = diff(&old, &new);
        assert!(d.keep.is_empty());
        assert_eq!(keys(&d.start), ["ftp:0", "ftp:0#1"]);
        // An empty top-level hostname is the default `srv01`.
        let named = plan(json!({"telnet": [{}]}), "srv01");
        let unnamed = plan(json!({"telnet": [{}]}), "");
        assert_eq!(keys(&diff(&named, &unnamed).keep), ["telnet:23"]);
    }

    async fn banner(addr: std::net::SocketAddr) -> String {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.unwrap();
        line
    }

    #[tokio::test]
    async fn a_reload_keeps_unchanged_sessions_and_hands_a_changed_instance_its_socket() {
        let (sink, mut events) = tokio::sync::mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let old = plan(
            json!({"ftp": [{"port": 0, "banner": "kept"}, {"port": 0, "banner": "old"}],
                   "telnet": [{"port": 0}]}),
            "",
        );
        let mut services = start(&old, sink, &shutdown).await.unwrap();
        let tcp = |s: &super::Services| -> Vec<std::net::SocketAddr> {
            s.bound()
                .iter()
                .map(|(_, a)| *a)
                .filter(|a| a.is_ipv4())
                .collect()
        };
        let before = tcp(&services);
        assert_eq!(before.len(), 3, "{before:?}");
        let (kept_addr, changed_addr, telnet_addr) = (before[0], before[1], before[2]);
        // A session on the unchanged instance, open across the reload.
        let mut open = BufReader::new(TcpStream::connect(kept_addr).await.unwrap());
        let mut line = String::new();
        open.read_line(&mut line).await.unwrap();
        assert_eq!(line, "220 kept\r\n");

        let new = plan(
            json!({"ftp": [{"port": 0, "banner": "kept"}, {"port": 0, "banner": "new"}],
                   "http": [{"port": 0}]}),
            "",
        );
        let reloaded = services.reload(&new, Duration::from_secs(1)).await.unwrap();
        assert_eq!(keys(&reloaded.kept), ["ftp:0"]);
        assert_eq!(keys(&reloaded.stopped), ["ftp:0#1", "telnet:0"]);
        assert_eq!(keys(&reloaded.started), ["ftp:0#1", "http:0"]);
        assert!(services.down().is_empty(), "{:?}", services.down());
        let after = tcp(&services);
        // The changed instance kept its (kernel-chosen) port: it took over its socket.
        assert!(
            after.contains(&kept_addr) && after.contains(&changed_addr),
            "{after:?}"
        );
        assert!(!after.contains(&telnet_addr), "{after:?}");
        assert_eq!(banner(changed_addr).await, "220 new\r\n");
        assert!(
            TcpStream::connect(telnet_addr).await.is_err(),
            "telnet still listens"
        );

        // The session opened before the reload still works, and is reported.
        open.get_mut()
            .write_all(b"USER root\r\nPASS across-the-reload\r\n")
            .await
            .unwrap();
        let login = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let event = events.recv().await.unwrap();
                if event.action == Action::Login {
                    break event;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(login.extra["password"], "across-the-reload");
        assert_eq!(login.session.dst_port, kept_addr.port());
        services.stop(Duration::from_secs(1)).await;
    }
}
