//! The catalogue of event kinds: every `<service>.<action>` the sensor emits, with the source
//! the README's event table names. A test checks that table against this list,
//! and every format has a golden output for every kind.

use super::{Action, LogType, Service};

/// One event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// Its logtype.
    pub logtype: LogType,
    /// Which part of the sensor emits it, as the README's table says.
    pub source: &'static str,
}

/// Every kind the sensor emits today, in README order. [`Service`] already names every
/// Trapster channel, so formats handle events of services still to come.
pub const CATALOGUE: &[Kind] = &[
    Kind {
        logtype: LogType {
            service: Service::Portscan,
            action: Action::Query,
        },
        source: "XDP scan detection",
    },
    Kind {
        logtype: LogType {
            service: Service::Portscan,
            action: Action::Flood,
        },
        source: "XDP scan detection (flood control)",
    },
    Kind {
        logtype: LogType {
            service: Service::Dns,
            action: Action::Flood,
        },
        source: "UDP decoys (flood control)",
    },
    Kind {
        logtype: LogType {
            service: Service::Snmp,
            action: Action::Flood,
        },
        source: "UDP decoys (flood control)",
    },
    Kind {
        logtype: LogType {
            service: Service::Udp,
            action: Action::Flood,
        },
        source: "any-port decoys (flood control)",
    },
    Kind {
        logtype: LogType {
            service: Service::Tcp,
            action: Action::Flood,
        },
        source: "TCP decoys (flood control)",
    },
    Kind {
        logtype: LogType {
            service: Service::Sensor,
            action: Action::Degraded,
        },
        source: "output delivery",
    },
    Kind {
        logtype: LogType {
            service: Service::Sensor,
            action: Action::Heartbeat,
        },
        source: "agent (sensor.heartbeat)",
    },
    Kind {
        logtype: LogType {
            service: Service::Breadcrumb,
            action: Action::Login,
        },
        source: "breadcrumbs (any login service)",
    },
    Kind {
        logtype: LogType {
            service: Service::Honeytoken,
            action: Action::Url,
        },
        source: "honeytokens (HTTP and HTTPS services)",
    },
    Kind {
        logtype: LogType {
            service: Service::Honeytoken,
            action: Action::JsClone,
        },
        source: "honeytokens (HTTP and HTTPS services)",
    },
    Kind {
        logtype: LogType {
            service: Service::Ftp,
            action: Action::Connection,
        },
        source: "FTP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Ftp,
            action: Action::Data,
        },
        source: "FTP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Ftp,
            action: Action::Login,
        },
        source: "FTP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Ftp,
            action: Action::Upload,
        },
        source: "FTP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Telnet,
            action: Action::Connection,
        },
        source: "Telnet service",
    },
    Kind {
        logtype: LogType {
            service: Service::Telnet,
            action: Action::Login,
        },
        source: "Telnet service",
    },
    Kind {
        logtype: LogType {
            service: Service::Ssh,
            action: Action::Connection,
        },
        source: "SSH service",
    },
    Kind {
        logtype: LogType {
            service: Service::Ssh,
            action: Action::Login,
        },
        source: "SSH service",
    },
    Kind {
        logtype: LogType {
            service: Service::Ssh,
            action: Action::Query,
        },
        source: "SSH service",
    },
    Kind {
        logtype: LogType {
            service: Service::Ssh,
            action: Action::Upload,
        },
        source: "SSH service",
    },
    Kind {
        logtype: LogType {
            service: Service::Http,
            action: Action::Connection,
        },
        source: "HTTP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Http,
            action: Action::Data,
        },
        source: "HTTP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Http,
            action: Action::Query,
        },
        source: "HTTP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Http,
            action: Action::Login,
        },
        source: "HTTP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Https,
            action: Action::Connection,
        },
        source: "HTTPS service",
    },
    Kind {
        logtype: LogType {
            service: Service::Https,
            action: Action::Data,
        },
        source: "HTTPS service",
    },
    Kind {
        logtype: LogType {
            service: Service::Https,
            action: Action::Query,
        },
        source: "HTTPS service",
    },
    Kind {
        logtype: LogType {
            service: Service::Https,
            action: Action::Login,
        },
        source: "HTTPS service",
    },
    Kind {
        logtype: LogType {
            service: Service::Mysql,
            action: Action::Connection,
        },
        source: "MySQL service",
    },
    Kind {
        logtype: LogType {
            service: Service::Mysql,
            action: Action::Data,
        },
        source: "MySQL service",
    },
    Kind {
        logtype: LogType {
            service: Service::Mysql,
            action: Action::Login,
        },
        source: "MySQL service",
    },
    Kind {
        logtype: LogType {
            service: Service::Postgres,
            action: Action::Connection,
        },
        source: "PostgreSQL service",
    },
    Kind {
        logtype: LogType {
            service: Service::Postgres,
            action: Action::Data,
        },
        source: "PostgreSQL service",
    },
    Kind {
        logtype: LogType {
            service: Service::Postgres,
            action: Action::Login,
        },
        source: "PostgreSQL service",
    },
    Kind {
        logtype: LogType {
            service: Service::Vnc,
            action: Action::Connection,
        },
        source: "VNC service",
    },
    Kind {
        logtype: LogType {
            service: Service::Vnc,
            action: Action::Data,
        },
        source: "VNC service",
    },
    Kind {
        logtype: LogType {
            service: Service::Vnc,
            action: Action::Login,
        },
        source: "VNC service",
    },
    Kind {
        logtype: LogType {
            service: Service::Vnc,
            action: Action::Query,
        },
        source: "VNC service",
    },
    Kind {
        logtype: LogType {
            service: Service::Rsync,
            action: Action::Connection,
        },
        source: "rsync service",
    },
    Kind {
        logtype: LogType {
            service: Service::Rsync,
            action: Action::Data,
        },
        source: "rsync service",
    },
    Kind {
        logtype: LogType {
            service: Service::Rsync,
            action: Action::Login,
        },
        source: "rsync service",
    },
    Kind {
        logtype: LogType {
            service: Service::Rsync,
            action: Action::Query,
        },
        source: "rsync service",
    },
    Kind {
        logtype: LogType {
            service: Service::Llmnr,
            action: Action::Poisoning,
        },
        source: "poisoning detection",
    },
    Kind {
        logtype: LogType {
            service: Service::Nbns,
            action: Action::Poisoning,
        },
        source: "poisoning detection",
    },
    Kind {
        logtype: LogType {
            service: Service::Mdns,
            action: Action::Poisoning,
        },
        source: "poisoning detection",
    },
    Kind {
        logtype: LogType {
            service: Service::Llmnr,
            action: Action::Query,
        },
        source: "own-name answering",
    },
    Kind {
        logtype: LogType {
            service: Service::Nbns,
            action: Action::Query,
        },
        source: "own-name answering",
    },
    Kind {
        logtype: LogType {
            service: Service::Smb,
            action: Action::Connection,
        },
        source: "SMB service",
    },
    Kind {
        logtype: LogType {
            service: Service::Smb,
            action: Action::Data,
        },
        source: "SMB service",
    },
    Kind {
        logtype: LogType {
            service: Service::Smb,
            action: Action::Login,
        },
        source: "SMB service",
    },
    Kind {
        logtype: LogType {
            service: Service::Smb,
            action: Action::Query,
        },
        source: "SMB service",
    },
    Kind {
        logtype: LogType {
            service: Service::Rdp,
            action: Action::Connection,
        },
        source: "RDP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Rdp,
            action: Action::Data,
        },
        source: "RDP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Rdp,
            action: Action::Login,
        },
        source: "RDP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Ldap,
            action: Action::Connection,
        },
        source: "LDAP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Ldap,
            action: Action::Data,
        },
        source: "LDAP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Ldap,
            action: Action::Login,
        },
        source: "LDAP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Ldap,
            action: Action::Query,
        },
        source: "LDAP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Mssql,
            action: Action::Connection,
        },
        source: "MSSQL service",
    },
    Kind {
        logtype: LogType {
            service: Service::Mssql,
            action: Action::Data,
        },
        source: "MSSQL service",
    },
    Kind {
        logtype: LogType {
            service: Service::Mssql,
            action: Action::Login,
        },
        source: "MSSQL service",
    },
    Kind {
        logtype: LogType {
            service: Service::Snmp,
            action: Action::Connection,
        },
        source: "SNMP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Snmp,
            action: Action::Data,
        },
        source: "SNMP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Snmp,
            action: Action::Login,
        },
        source: "SNMP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Snmp,
            action: Action::Query,
        },
        source: "SNMP service",
    },
    Kind {
        logtype: LogType {
            service: Service::Dns,
            action: Action::Connection,
        },
        source: "DNS service",
    },
    Kind {
        logtype: LogType {
            service: Service::Dns,
            action: Action::Data,
        },
        source: "DNS service",
    },
    Kind {
        logtype: LogType {
            service: Service::Dns,
            action: Action::Query,
        },
        source: "DNS service",
    },
    Kind {
        logtype: LogType {
            service: Service::Tcp,
            action: Action::Connection,
        },
        source: "any-port decoys (sensor.decoys)",
    },
    Kind {
        logtype: LogType {
            service: Service::Udp,
            action: Action::Connection,
        },
        source: "any-port decoys (sensor.decoys)",
    },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::CATALOGUE;

    #[test]
    fn catalogue_has_no_duplicates() {
        let names: BTreeSet<String> = CATALOGUE.iter().map(|k| k.logtype.to_string()).collect();
        assert_eq!(names.len(), CATALOGUE.len());
    }

    #[test]
    fn readme_event_table_matches_the_catalogue() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("| logtype | source |")
            .expect("README has the event table");
        let rows: Vec<(String, String)> = readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
            })
            .collect();
        let expected: Vec<(String, String)> = CATALOGUE
            .iter()
            .map(|k| (k.logtype.to_string(), k.source.to_owned()))
            .collect();
        assert_eq!(
            rows, expected,
            "README event table and event::kind::CATALOGUE differ"
        );
    }
}
