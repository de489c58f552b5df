//! The domain controller's names and its RootDSE, the entry every client may read without
//! binding (`ldapsearch -x -s base -b ""`), with the attributes and values a Windows Server
//! domain controller returns, derived from the NetBIOS server name and the DNS domain.

use chrono::{DateTime, Utc};

/// The domain controller being emulated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// NetBIOS computer name, upper case (`DC01`).
    pub server: String,
    /// DNS domain (`acme.local`).
    pub domain: String,
    /// Functional level (0 = Windows 2000 ... 7 = Windows Server 2016 and later).
    pub level: u8,
}

/// Trapster's `level` names, in functional level order.
pub const LEVELS: [&str; 8] = [
    "Windows2000Domain",
    "Windows2003InterimDomain",
    "Windows2003Domain",
    "Windows2008Domain",
    "Windows2008R2Domain",
    "Windows2012Domain",
    "Windows2012R2Domain",
    "WinThreshold",
];

/// The functional level named `name` (Trapster's names, or the digit); Windows Server 2016 (7)
/// for anything else, as Trapster does.
#[must_use]
pub fn level(name: &str) -> u8 {
    LEVELS
        .iter()
        .position(|l| l.eq_ignore_ascii_case(name))
        .and_then(|i| u8::try_from(i).ok())
        .or_else(|| name.parse::<u8>().ok().filter(|&n| n <= 7))
        .unwrap_or(7)
}

impl Names {
    /// `DC=acme,DC=local`.
    #[must_use]
    pub fn base_dn(&self) -> String {
        self.domain
            .split('.')
            .filter(|p| !p.is_empty())
            .map(|p| format!("DC={p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `DC01.acme.local`.
    #[must_use]
    pub fn dns_host_name(&self) -> String {
        format!("{}.{}", self.server, self.domain)
    }

    /// The build suffix AD appends to its diagnostic messages (`v4563` on Windows Server 2019).
    #[must_use]
    pub const fn build_tag(&self) -> &'static str {
        match self.level {
            0..=3 => "v1772",
            4 => "v1db1",
            5 => "v23f0",
            6 => "v2580",
            _ => "v4563",
        }
    }

    /// The RootDSE's attributes in the order AD returns them, with their values at `now`.
    #[must_use]
    pub fn root_dse(&self, now: DateTime<Utc>) -> Vec<(&'static str, Vec<String>)> {
        let base = self.base_dn();
        let config = format!("CN=Configuration,{base}");
        let schema = format!("CN=Schema,{config}");
        let server_dn = format!(
            "CN={},CN=Servers,CN=Default-First-Site-Name,CN=Sites,{config}",
            self.server
        );
        let level = self.level.to_string();
        let one = |v: String| vec![v];
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // Grows with time, as a live directory's does.
        let usn = 20_000 + (now.timestamp() / 60).rem_euclid(10_000_000);
        vec![
            ("domainFunctionality", one(level.clone())),
            ("forestFunctionality", one(level.clone())),
            ("domainControllerFunctionality", one(level)),
            ("rootDomainNamingContext", one(base.clone())),
            (
                "ldapServiceName",
                one(format!(
                    "{}:{}$@{}",
                    self.domain,
                    self.server.to_lowercase(),
                    self.domain.to_uppercase()
                )),
            ),
            ("isGlobalCatalogReady", one("TRUE".to_owned())),
            (
                "supportedSASLMechanisms",
                list(&["GSSAPI", "GSS-SPNEGO", "EXTERNAL", "DIGEST-MD5"]),
            ),
            ("supportedLDAPVersion", list(&["3", "2"])),
            ("supportedLDAPPolicies", list(&POLICIES)),
            ("supportedControl", list(&CONTROLS)),
            ("supportedCapabilities", list(&CAPABILITIES)),
            ("subschemaSubentry", one(format!("CN=Aggregate,{schema}"))),
            ("serverName", one(server_dn.clone())),
            ("schemaNamingContext", one(schema.clone())),
            (
                "namingContexts",
                vec![
                    base.clone(),
                    config.clone(),
                    schema,
                    format!("DC=DomainDnsZones,{base}"),
                    format!("DC=ForestDnsZones,{base}"),
                ],
            ),
            ("isSynchronized", one("TRUE".to_owned())),
            ("highestCommittedUSN", one(usn.to_string())),
            (
                "dsServiceName",
                one(format!("CN=NTDS Settings,{server_dn}")),
            ),
            ("dnsHostName", one(self.dns_host_name())),
            ("defaultNamingContext", one(base)),
            (
                "currentTime",
                one(now.format("%Y%m%d%H%M%S.0Z").to_string()),
            ),
            ("configurationNamingContext", one(config)),
        ]
    }
}

const POLICIES: [&str; 20] = [
    "MaxPoolThreads",
    "MaxPercentDirSyncRequests",
    "MaxDatagramRecv",
    "MaxReceiveBuffer",
    "InitRecvTimeout",
    "MaxConnections",
    "MaxConnIdleTime",
    "MaxPageSize",
    "MaxBatchReturnMessages",
    "MaxQueryDuration",
    "MaxDirSyncDuration",
    "MaxTempTableSize",
    "MaxResultSetSize",
    "MinResultSets",
    "MaxResultSetsPerConn",
    "MaxNotificationPerConn",
    "MaxValRange",
    "MaxValRangeTransitive",
    "ThreadMemoryLimit",
    "SystemMemoryLimitPercent",
];

const CONTROLS: [&str; 40] = [
    "1.2.840.113556.1.4.319",
    "1.2.840.113556.1.4.801",
    "1.2.840.113556.1.4.473",
    "1.2.840.113556.1.4.528",
    "1.2.840.113556.1.4.417",
    "1.2.840.113556.1.4.619",
    "1.2.840.113556.1.4.841",
    "1.2.840.113556.1.4.529",
    "1.2.840.113556.1.4.805",
    "1.2.840.113556.1.4.521",
    "1.2.840.113556.1.4.970",
    "1.2.840.113556.1.4.1338",
    "1.2.840.113556.1.4.474",
    "1.2.840.113556.1.4.1339",
    "1.2.840.113556.1.4.1340",
    "1.2.840.113556.1.4.1413",
    "2.16.840.1.113730.3.4.9",
    "2.16.840.1.113730.3.4.10",
    "1.2.840.113556.1.4.1504",
    "1.2.840.113556.1.4.1852",
    "1.2.840.113556.1.4.802",
    "1.2.840.113556.1.4.1907",
    "1.2.840.113556.1.4.1948",
    "1.2.840.113556.1.4.1974",
    "1.2.840.113556.1.4.1341",
    "1.2.840.113556.1.4.2026",
    "1.2.840.113556.1.4.2064",
    "1.2.840.113556.1.4.2065",
    "1.2.840.113556.1.4.2066",
    "1.2.840.113556.1.4.2090",
    "1.2.840.113556.1.4.2205",
    "1.2.840.113556.1.4.2204",
    "1.2.840.113556.1.4.2206",
    "1.2.840.113556.1.4.2211",
    "1.2.840.113556.1.4.2239",
    "1.2.840.113556.1.4.2255",
    "1.2.840.113556.1.4.2256",
    "1.2.840.113556.1.4.2309",
    "1.2.840.113556.1.4.2330",
    "1.2.840.113556.1.4.2354",
];

const CAPABILITIES: [&str; 6] = [
    "1.2.840.113556.1.4.800",
    "1.2.840.113556.1.4.1670",
    "1.2.840.113556.1.4.1791",
    "1.2.840.113556.1.4.1935",
    "1.2.840.113556.1.4.2080",
    "1.2.840.113556.1.4.2237",
];

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::{Names, level};

    #[test]
    fn names_follow_the_domain() {
        let n = Names {
            server: "DC01".to_owned(),
            domain: "acme.local".to_owned(),
            level: level("WinThreshold"),
        };
        assert_eq!(n.base_dn(), "DC=acme,DC=local");
        let now = chrono::Utc.with_ymd_and_hms(2026, 12, 2, 0, 30, 5).unwrap();
        let dse = n.root_dse(now);
        let get = |k: &str| dse.iter().find(|(a, _)| *a == k).unwrap().1.clone();
        assert_eq!(get("dnsHostName"), ["DC01.acme.local"]);
        assert_eq!(get("ldapServiceName"), ["acme.local:dc01$@ACME.LOCAL"]);
        assert_eq!(
            get("dsServiceName"),
            [
                "CN=NTDS Settings,CN=DC01,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=acme,DC=local"
            ]
        );
        assert_eq!(get("currentTime"), ["20261202003005.0Z"]);
        assert_eq!(get("domainFunctionality"), ["7"]);
        assert_eq!(get("namingContexts").len(), 5);
        assert_eq!(level("Windows2012R2Domain"), 6);
        assert_eq!(level("windows2008domain"), 3);
        assert_eq!(level("2"), 2);
        assert_eq!(level("nonsense"), 7);
    }
}
