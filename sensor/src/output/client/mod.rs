//! What every output client shares: TLS settings with one root store ([`tls`]), the HTTP
//! client ([`http`]) and secrets in configuration ([`secret`]).

pub mod http;
pub mod secret;
pub mod tls;
