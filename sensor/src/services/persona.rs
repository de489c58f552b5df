//! Personas: one coherent machine behind every decoy (`sensor.persona`).
//!
//! Each service module has its own defaults (they follow Trapster Community's: IIS FTP, Cisco
//! IOS telnet, MySQL 8.0, ...), which put a Windows FTP server, a Debian OpenSSH and a Cisco
//! router on one address, with greetings byte-identical to Trapster's that fingerprinters key
//! on. A persona picks, per protocol, the keys a real machine of that kind would show, under the
//! instance's own keys (a key written in the `services` block always wins), and the IP TTL of
//! every decoy socket (the initial TTL `nmap -O` and p0f read from SYN-ACKs and replies):
//!
//! | persona | FTP | SSH | Telnet | HTTP(S) | MySQL | Windows services | SNMP | TTL |
//! |---|---|---|---|---|---|---|---|---|
//! | `debian-12-server` (default) | vsftpd 3.0.3 | OpenSSH 9.2p1 Debian | Linux `login` | Apache 2.4 | MariaDB 10.11 | own defaults | Linux net-snmp | 64 |
//! | `windows-server-2022` | IIS | OpenSSH for Windows 8.1 | own default | IIS 10 | MySQL 8.0 | 2022 (build 20348) | Windows | 128 |
//! | `cisco-ios` | own default | Cisco-1.25 | Cisco IOS | appliance login | own default | own defaults | Cisco IOS 15.2 | 255 |
//! | `none` | each module's own defaults, the kernel's TTL |||||||| |
//!
//! What a persona cannot change: the kernel's own answers (RSTs from closed ports, ICMP, TCP
//! options and window of the SYN-ACK) keep the host's Linux shape, and the SSH decoy keeps
//! OpenSSH 9.2's algorithm lists whatever identification it shows.

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The machine the decoys present together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Persona {
    /// A Debian 12 server (the default).
    #[default]
    #[serde(rename = "debian-12-server")]
    Debian12Server,
    /// A Windows Server 2022 member server or domain controller.
    #[serde(rename = "windows-server-2022")]
    WindowsServer2022,
    /// A Cisco IOS switch or router.
    CiscoIos,
    /// No persona: each service module's own defaults and the kernel's TTL.
    None,
}

impl Persona {
    /// Every persona, in documentation order.
    pub const ALL: [Self; 4] = [
        Self::Debian12Server,
        Self::WindowsServer2022,
        Self::CiscoIos,
        Self::None,
    ];

    /// Its name in `sensor.persona`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Debian12Server => "debian-12-server",
            Self::WindowsServer2022 => "windows-server-2022",
            Self::CiscoIos => "cisco-ios",
            Self::None => "none",
        }
    }

    /// The initial IP TTL (IPv6 hop limit) of the decoys' sockets; `None`: the kernel's.
    #[must_use]
    pub const fn ttl(self) -> Option<u32> {
        match self {
            Self::Debian12Server => Some(64),
            Self::WindowsServer2022 => Some(128),
            Self::CiscoIos => Some(255),
            Self::None => None,
        }
    }

    /// The keys this persona gives instances of `protocol` (a registry name), as an object.
    #[must_use]
    pub fn defaults(self, protocol: &str) -> Map<String, Value> {
        let value = match (self, protocol) {
            (Self::Debian12Server, "ftp") => json!({"banner": "(vsFTPd 3.0.3)"}),
            (Self::Debian12Server, "telnet") => json!({"version": "Linux 6.1.0-28-amd64"}),
            (Self::Debian12Server, "http" | "https") => json!({"skin": "default_apache"}),
            (Self::Debian12Server, "mysql") => {
                json!({"version": "5.5.5-10.11.6-MariaDB-0+deb12u1"})
            }
            (Self::WindowsServer2022, "ftp") => json!({"banner": "Microsoft FTP Service"}),
            (Self::WindowsServer2022, "ssh") => {
                json!({"version": "SSH-2.0-OpenSSH_for_Windows_8.1"})
            }
            (Self::WindowsServer2022, "http" | "https") => json!({"skin": "default_iis"}),
            (Self::WindowsServer2022, "mysql") => json!({"version": "8.0.40"}),
            (Self::WindowsServer2022, "mssql") => json!({"version": "2022"}),
            (Self::WindowsServer2022, "rdp" | "smb") => json!({"version": "2022"}),
            (Self::WindowsServer2022, "snmp") => json!({
                "sys_descr": "Hardware: Intel64 Family 6 Model 85 Stepping 7 AT/AT COMPATIBLE - \
                              Software: Windows Version 6.3 (Build 20348 Multiprocessor Free)",
                "sys_object_id": "1.3.6.1.4.1.311.1.1.3.1.2",
            }),
            (Self::CiscoIos, "ssh") => json!({"version": "SSH-2.0-Cisco-1.25"}),
            (Self::CiscoIos, "telnet") => json!({"version": "Cisco IOS"}),
            (Self::CiscoIos, "http" | "https") => json!({"skin": "appliance_login"}),
            (Self::CiscoIos, "snmp") => json!({
                "sys_descr": "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M), \
                              Version 15.2(7)E9, RELEASE SOFTWARE (fc1)\r\nTechnical Support: \
                              http://www.cisco.com/techsupport\r\nCopyright (c) 1986-2023 by \
                              Cisco Systems, Inc.\r\nCompiled Thu 22-Jun-23 03:05 by mcpre",
                "sys_object_id": "1.3.6.1.4.1.9.1.1208",
            }),
            _ => return Map::new(),
        };
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// `settings` (an instance as written) with this persona's keys for `protocol` added where
    /// the instance sets none.
    #[must_use]
    pub fn apply(self, protocol: &str, settings: &Value) -> Value {
        let mut out = settings.clone();
        if let Value::Object(map) = &mut out {
            for (key, value) in self.defaults(protocol) {
                map.entry(key).or_insert(value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::registry;

    #[test]
    fn every_persona_key_is_one_its_protocol_reads_and_accepts() {
        for persona in Persona::ALL {
            for protocol in registry::PROTOCOLS {
                let settings = persona.apply(protocol.name, &json!({}));
                assert!(
                    (protocol.ignored)(&settings).is_empty(),
                    "{} {}: {:?}",
                    persona.name(),
                    protocol.name,
                    (protocol.ignored)(&settings)
                );
                assert!(
                    (protocol.check)(&settings).is_ok(),
                    "{} {}: {:?}",
                    persona.name(),
                    protocol.name,
                    (protocol.check)(&settings).err()
                );
            }
        }
    }

    #[test]
    fn the_instances_own_keys_win() {
        let written = json!({"port": 2121, "banner": "ProFTPD 1.3.8 Server"});
        let applied = Persona::WindowsServer2022.apply("ftp", &written);
        assert_eq!(applied, written);
        let applied = Persona::WindowsServer2022.apply("ftp", &json!({"port": 21}));
        assert_eq!(
            applied,
            json!({"port": 21, "banner": "Microsoft FTP Service"})
        );
        assert_eq!(Persona::None.apply("ftp", &written), written);
    }

    #[test]
    fn the_default_persona_differs_from_the_module_defaults_trapster_shares() {
        // Trapster Community greets with IIS FTP, Cisco IOS telnet and MySQL 8.0.
        let debian = Persona::default();
        assert_eq!(debian, Persona::Debian12Server);
        for protocol in ["ftp", "telnet", "mysql"] {
            assert!(!debian.defaults(protocol).is_empty(), "{protocol}");
        }
        assert_eq!(debian.ttl(), Some(64));
        assert_eq!(Persona::WindowsServer2022.ttl(), Some(128));
    }

    #[test]
    fn names_parse_back() {
        for persona in Persona::ALL {
            let parsed: Persona =
                serde_json::from_value(json!(persona.name())).expect("a persona name");
            assert_eq!(parsed, persona);
        }
        let err = serde_json::from_value::<Persona>(json!("windows-xp")).unwrap_err();
        assert!(err.to_string().contains("debian-12-server"), "{err}");
    }
}
