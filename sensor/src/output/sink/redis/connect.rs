//! Connecting to what a `redis` output names, with the `redis` crate's own clients:
//!
//! - one server (`host`, `port`): a multiplexed connection;
//! - a Redis Cluster (`cluster`: seed nodes): the crate's cluster client, which learns the slot
//!   map, follows `MOVED`/`ASK` redirections and picks up a replica promoted by a failover;
//! - Redis Sentinel (`sentinel`): the sentinels are asked for the master at every
//!   (re)connection, so after a failover the next retry writes to the new master.
//!
//! Every failure drops the connection; the driver's retry reconnects. Credentials are given
//! to the clients as parts, never in a URL, so no error text can hold them.

use std::time::Duration;

use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, RedisConnectionInfo, RedisError,
    RedisResult, TlsMode,
    aio::MultiplexedConnection,
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    sentinel::{SentinelClientBuilder, SentinelServerType},
};

use super::RedisConfig;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// An open connection of either kind.
pub(super) enum Conn {
    /// One server, or the master Sentinel named.
    Single(MultiplexedConnection),
    /// A cluster.
    Cluster(ClusterConnection),
}

impl Conn {
    /// Runs `pipe`, ignoring its replies.
    pub(super) async fn run(&mut self, pipe: &redis::Pipeline) -> RedisResult<()> {
        match self {
            Self::Single(conn) => pipe.query_async::<()>(conn).await,
            Self::Cluster(conn) => pipe.query_async::<()>(conn).await,
        }
    }
}

/// `host:port` (`[v6]:port` for IPv6) as a connection address.
///
/// # Errors
/// The reason, naming the node.
pub(super) fn node(node: &str, tls: bool, insecure: bool) -> Result<ConnectionAddr, String> {
    let bad = || format!("`{node}` is not host:port");
    let (host, port) = node.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(if tls {
        ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_owned(), port)
    })
}

fn invalid(what: &'static str, detail: String) -> RedisError {
    RedisError::from((redis::ErrorKind::InvalidClientConfig, what, detail))
}

/// The connection the configuration names.
///
/// # Errors
/// Connecting, authenticating or (Sentinel) finding the master failed.
pub(super) async fn connect(config: &RedisConfig) -> RedisResult<Conn> {
    let timeouts = AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    if !config.cluster.is_empty() {
        return cluster(config).await.map(Conn::Cluster);
    }
    if config.sentinel.is_some() {
        let mut client = sentinel(config)?;
        return client
            .get_async_connection_with_config(&timeouts)
            .await
            .map(Conn::Single);
    }
    single(config)?
        .get_multiplexed_async_connection_with_config(&timeouts)
        .await
        .map(Conn::Single)
}

fn redis_info(config: &RedisConfig) -> RedisConnectionInfo {
    RedisConnectionInfo {
        db: config.db,
        username: config.username.clone(),
        password: config.password.as_ref().map(|p| p.expose().to_owned()),
        ..RedisConnectionInfo::default()
    }
}

fn tls_mode(config: &RedisConfig) -> Option<TlsMode> {
    config.tls.then_some(if config.insecure {
        TlsMode::Insecure
    } else {
        TlsMode::Secure
    })
}

/// The trusted roots and client certificate for TLS: the root store every output shares
/// (system store plus `ca_file`) unless `insecure`, and the client pair when both are named.
fn certificates(config: &RedisConfig) -> RedisResult<Option<redis::TlsCertificates>> {
    if !config.tls {
        return Ok(None);
    }
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| invalid("cannot read a TLS file", format!("{}: {e}", path.display())))
    };
    let client_tls = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        _ => None,
    };
    let root_cert = if config.insecure {
        config.ca_file.as_deref().map(read).transpose()?
    } else {
        Some(
            crate::output::client::tls::pem_bundle(config.ca_file.as_deref())
                .map_err(|e| invalid("cannot load the trusted certificates", e.to_string()))?,
        )
    };
    Ok(
        (root_cert.is_some() || client_tls.is_some()).then_some(redis::TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}

fn single(config: &RedisConfig) -> RedisResult<redis::Client> {
    let addr = node(
        &format!("[{}]:{}", config.host, config.port),
        config.tls,
        config.insecure,
    )
    .map_err(|e| invalid("bad address", e))?;
    let info = ConnectionInfo {
        addr,
        redis: redis_info(config),
    };
    match certificates(config)? {
        Some(certs) => redis::Client::build_with_tls(info, certs),
        None => redis::Client::open(info),
    }
}

async fn cluster(config: &RedisConfig) -> RedisResult<ClusterConnection> {
    let seeds = config
        .cluster
        .iter()
        .map(|n| {
            node(n, config.tls, config.insecure).map(|addr| ConnectionInfo {
                addr,
                redis: redis_info(config),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("bad cluster node", e))?;
    let mut builder = ClusterClientBuilder::new(seeds)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        // The driver's backoff retries a failed batch; the client's own retries stay short.
        .retries(2);
    if let Some(username) = &config.username {
        builder = builder.username(username.clone());
    }
    if let Some(password) = &config.password {
        builder = builder.password(password.expose().to_owned());
    }
    if let Some(mode) = tls_mode(config) {
        builder = builder.tls(mode);
    }
    if let Some(certs) = certificates(config)? {
        builder = builder.certs(certs);
    }
    builder.build()?.get_async_connection().await
}

fn sentinel(config: &RedisConfig) -> RedisResult<redis::sentinel::SentinelClient> {
    let Some(sentinel) = &config.sentinel else {
        return Err(invalid("no sentinel", String::new()));
    };
    let nodes = sentinel
        .nodes
        .iter()
        .map(|n| node(n, config.tls, config.insecure))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("bad sentinel node", e))?;
    let mut builder =
        SentinelClientBuilder::new(nodes, sentinel.master.clone(), SentinelServerType::Master)?
            .set_client_to_redis_db(config.db);
    if let Some(username) = &config.username {
        builder = builder.set_client_to_redis_username(username.clone());
    }
    if let Some(password) = &config.password {
        builder = builder.set_client_to_redis_password(password.expose().to_owned());
    }
    if let Some(username) = &sentinel.username {
        builder = builder.set_client_to_sentinel_username(username.clone());
    }
    if let Some(password) = &sentinel.password {
        builder = builder.set_client_to_sentinel_password(password.expose().to_owned());
    }
    if let Some(mode) = tls_mode(config) {
        builder = builder
            .set_client_to_redis_tls_mode(mode)
            .set_client_to_sentinel_tls_mode(mode);
    }
    if let Some(certs) = certificates(config)? {
        builder = builder
            .set_client_to_redis_certificates(certs.clone())
            .set_client_to_sentinel_certificates(certs);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::node;

    #[test]
    fn nodes_are_host_and_port() {
        assert_eq!(
            node("10.0.0.5:7000", false, false).unwrap(),
            redis::ConnectionAddr::Tcp("10.0.0.5".to_owned(), 7000)
        );
        assert_eq!(
            node("[2001:db8::5]:7000", false, false).unwrap(),
            redis::ConnectionAddr::Tcp("2001:db8::5".to_owned(), 7000)
        );
        for bad in ["10.0.0.5", "10.0.0.5:", ":7000", "h:0", "h:99999", "h:x"] {
            assert!(node(bad, false, false).is_err(), "{bad}");
        }
    }
}
