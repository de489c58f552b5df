//! How long a connection may stay silent, per instance: a decoy hangs up on a silent client
//! when the product it imitates would, not at one value for every service.
//!
//! Two timeouts govern every TCP session ([`super::session::Session`]): the handshake timeout,
//! from the accept until the protocol calls `handshake_done` (the login phase for FTP and
//! Telnet, the first request for HTTP, the startup packet for databases), and the idle
//! timeout, for every read after it. For one instance each is, first found:
//!
//! 1. the instance's own `handshake_timeout_secs` / `idle_timeout_secs` (any protocol);
//! 2. `sensor.services.handshake_timeout_secs` / `idle_timeout_secs`, when set;
//! 3. the imitated product's, from [`TcpProtocol::timeouts`](super::tcp::TcpProtocol::timeouts)
//!    (FTP: IIS 120 s, vsftpd 300 s, ProFTPD 300 s then 600 s; Telnet: Linux `login` 60 s,
//!    Cisco IOS 30 s per prompt; HTTP: Apache's `Timeout 300`, under which `mod_reqtimeout`'s
//!    20 s and `KeepAliveTimeout 5` apply; MySQL: `connect_timeout` 10 s, then
//!    `wait_timeout`; PostgreSQL: `authentication_timeout` 60 s);
//! 4. the framework's [`Timeouts::FRAMEWORK`] (15 s, 60 s) for protocols that name none.
//!
//! The session timeout (`sensor.services.session_timeout_secs`) still caps every session.

use serde::Deserialize;
use serde_json::Value;

use crate::services::ServiceLimits;

/// A handshake and an idle timeout, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the accept until the handshake is done.
    pub handshake_secs: u64,
    /// Between reads after it.
    pub idle_secs: u64,
}

impl Timeouts {
    /// For protocols that name no product timeouts.
    pub const FRAMEWORK: Self = Self::secs(15, 60);

    /// A handshake and an idle timeout.
    #[must_use]
    pub const fn secs(handshake_secs: u64, idle_secs: u64) -> Self {
        Self {
            handshake_secs,
            idle_secs,
        }
    }
}

/// The keys every instance may set.
#[derive(Debug, Default, Deserialize)]
struct InstanceTimeouts {
    #[serde(default)]
    handshake_timeout_secs: Option<u64>,
    #[serde(default)]
    idle_timeout_secs: Option<u64>,
}

/// The limits one instance runs with: `limits` with its two timeouts resolved (see the
/// module documentation for the order).
#[must_use]
pub fn resolve(
    limits: &ServiceLimits,
    product: Option<Timeouts>,
    settings: &Value,
) -> ServiceLimits {
    let own: InstanceTimeouts = serde_json::from_value(settings.clone()).unwrap_or_default();
    let product = product.unwrap_or(Timeouts::FRAMEWORK);
    let mut out = limits.clone();
    out.handshake_timeout_secs = Some(
        own.handshake_timeout_secs
            .or(limits.handshake_timeout_secs)
            .unwrap_or(product.handshake_secs)
            .max(1),
    );
    out.idle_timeout_secs = Some(
        own.idle_timeout_secs
            .or(limits.idle_timeout_secs)
            .unwrap_or(product.idle_secs)
            .max(1),
    );
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Timeouts, resolve};
    use crate::services::ServiceLimits;

    #[test]
    fn the_instance_then_the_global_setting_then_the_product_decide() {
        let none = ServiceLimits::default();
        let vsftpd = Some(Timeouts::secs(300, 300));
        let got = resolve(&none, vsftpd, &json!({"port": 21}));
        assert_eq!(
            (got.handshake_timeout_secs, got.idle_timeout_secs),
            (Some(300), Some(300))
        );
        let got = resolve(&none, None, &json!({}));
        assert_eq!(
            (got.handshake_timeout_secs, got.idle_timeout_secs),
            (Some(15), Some(60))
        );
        let global = ServiceLimits {
            idle_timeout_secs: Some(7),
            ..ServiceLimits::default()
        };
        let got = resolve(&global, vsftpd, &json!({}));
        assert_eq!(
            (got.handshake_timeout_secs, got.idle_timeout_secs),
            (Some(300), Some(7))
        );
        let got = resolve(
            &global,
            vsftpd,
            &json!({"idle_timeout_secs": 2, "handshake_timeout_secs": 3}),
        );
        assert_eq!(
            (got.handshake_timeout_secs, got.idle_timeout_secs),
            (Some(3), Some(2))
        );
        assert_eq!(got.idle_timeout(), std::time::Duration::from_secs(2));
    }
}
