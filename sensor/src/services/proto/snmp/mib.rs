//! The objects the agent serves: the MIB-2 `system` group and a small `interfaces` group, in
//! lexicographic OID order so `get-next` and `get-bulk` walk them as net-snmp's `snmpd` would.
//!
//! Values are fixed at build time except `sysUpTime`, which counts hundredths of a second from
//! the agent's (configured) boot.

use rasn::types::{Integer, ObjectIdentifier, OctetString};
use rasn_smi::{
    v1::{Gauge, TimeTicks},
    v2::{ApplicationSyntax, ObjectSyntax, SimpleSyntax},
};

/// `1.3.6.1.2.1.1` (system).
const SYSTEM: [u32; 7] = [1, 3, 6, 1, 2, 1, 1];
/// `1.3.6.1.2.1.2` (interfaces).
const INTERFACES: [u32; 7] = [1, 3, 6, 1, 2, 1, 2];

/// One object's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// OCTET STRING.
    Text(Vec<u8>),
    /// OBJECT IDENTIFIER.
    Oid(Vec<u32>),
    /// INTEGER.
    Int(i64),
    /// Gauge32.
    Gauge(u32),
    /// TimeTicks since the agent's boot (computed at request time).
    UpTime,
}

/// One network interface row of `ifTable`.
#[derive(Debug, Clone)]
pub struct Interface {
    /// `ifDescr`.
    pub name: String,
    /// `ifType` (24 softwareLoopback, 6 ethernetCsmacd).
    pub kind: i64,
    /// `ifMtu`.
    pub mtu: i64,
    /// `ifSpeed`, bits per second.
    pub speed: u32,
    /// `ifPhysAddress`.
    pub mac: Vec<u8>,
}

/// What the `system` group says.
#[derive(Debug, Clone)]
pub struct System {
    /// `sysDescr`.
    pub descr: String,
    /// `sysObjectID`.
    pub object_id: Vec<u32>,
    /// `sysContact`.
    pub contact: String,
    /// `sysName`.
    pub name: String,
    /// `sysLocation`.
    pub location: String,
    /// `sysServices`.
    pub services: i64,
}

/// The served objects, sorted by OID.
#[derive(Debug, Clone)]
pub struct Mib {
    objects: Vec<(Vec<u32>, Value)>,
}

/// What a `get` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The object's value.
    Found(&'a Value),
    /// The object type exists, not this instance.
    NoSuchInstance,
    /// No such object type.
    NoSuchObject,
}

impl Mib {
    /// The MIB for `system` and `interfaces`.
    #[must_use]
    pub fn new(system: &System, interfaces: &[Interface]) -> Self {
        let mut objects = Vec::new();
        let mut sys = |leaf: u32, value: Value| {
            let mut oid = SYSTEM.to_vec();
            oid.extend([leaf, 0]);
            objects.push((oid, value));
        };
        sys(1, Value::Text(system.descr.clone().into_bytes()));
        sys(2, Value::Oid(system.object_id.clone()));
        sys(3, Value::UpTime);
        sys(4, Value::Text(system.contact.clone().into_bytes()));
        sys(5, Value::Text(system.name.clone().into_bytes()));
        sys(6, Value::Text(system.location.clone().into_bytes()));
        sys(7, Value::Int(system.services));
        let count = i64::try_from(interfaces.len()).unwrap_or(i64::MAX);
        let mut if_number = INTERFACES.to_vec();
        if_number.extend([1, 0]);
        objects.push((if_number, Value::Int(count)));
        // ifTable is walked column by column: every row's ifIndex, then every ifDescr, ...
        for column in 1..=8u32 {
            for (row, interface) in (1u32..).zip(interfaces) {
                let value = match column {
                    1 => Value::Int(i64::from(row)),
                    2 => Value::Text(interface.name.clone().into_bytes()),
                    3 => Value::Int(interface.kind),
                    4 => Value::Int(interface.mtu),
                    5 => Value::Gauge(interface.speed),
                    6 => Value::Text(interface.mac.clone()),
                    // ifAdminStatus, ifOperStatus: up.
                    _ => Value::Int(1),
                };
                let mut oid = INTERFACES.to_vec();
                oid.extend([2, 1, column, row]);
                objects.push((oid, value));
            }
        }
        objects.sort_by(|a, b| a.0.cmp(&b.0));
        Self { objects }
    }

    /// The object at exactly `oid`.
    #[must_use]
    pub fn get(&self, oid: &[u32]) -> Lookup<'_> {
        if let Ok(i) = self
            .objects
            .binary_search_by(|(o, _)| o.as_slice().cmp(oid))
        {
            return self
                .objects
                .get(i)
                .map_or(Lookup::NoSuchObject, |(_, v)| Lookup::Found(v));
        }
        // An object type is an instance's OID without its last arc (`.0` for scalars, the
        // row index for table columns).
        let is_type = |prefix: &[u32]| {
            self.objects
                .iter()
                .any(|(o, _)| o.split_last().is_some_and(|(_, t)| t == prefix))
        };
        let known_type = (1..=oid.len()).filter_map(|n| oid.get(..n)).any(is_type);
        if known_type {
            Lookup::NoSuchInstance
        } else {
            Lookup::NoSuchObject
        }
    }

    /// The first object after `oid`, if any.
    #[must_use]
    pub fn next(&self, oid: &[u32]) -> Option<(&[u32], &Value)> {
        let i = self.objects.partition_point(|(o, _)| o.as_slice() <= oid);
        self.objects.get(i).map(|(o, v)| (o.as_slice(), v))
    }
}

/// A value on the wire, `uptime` being the current sysUpTime in hundredths of a second.
#[must_use]
pub fn syntax(value: &Value, uptime: u32) -> ObjectSyntax {
    match value {
        Value::Text(bytes) => {
            ObjectSyntax::Simple(SimpleSyntax::String(OctetString::from(bytes.clone())))
        }
        Value::Oid(arcs) => ObjectSyntax::Simple(SimpleSyntax::ObjectId(oid(arcs))),
        Value::Int(n) => ObjectSyntax::Simple(SimpleSyntax::Integer(Integer::from(*n))),
        Value::Gauge(n) => ObjectSyntax::ApplicationWide(ApplicationSyntax::Unsigned(Gauge(*n))),
        Value::UpTime => ObjectSyntax::ApplicationWide(ApplicationSyntax::Ticks(TimeTicks(uptime))),
    }
}

/// An OID from arcs the agent itself chose or echoes back. Arcs the X.690 rules refuse (a
/// first arc above 2) cannot come from a decoded request; they fall back to `0.0`.
#[must_use]
pub fn oid(arcs: &[u32]) -> ObjectIdentifier {
    ObjectIdentifier::new(arcs.to_vec())
        .unwrap_or_else(|| ObjectIdentifier::new_unchecked(vec![0, 0].into()))
}

/// An OID in dotted form.
#[must_use]
pub fn dotted(arcs: &[u32]) -> String {
    arcs.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Parses a dotted OID (`1.3.6.1.4.1.8072.3.2.10`, a leading dot allowed).
#[must_use]
pub fn parse_dotted(text: &str) -> Option<Vec<u32>> {
    let arcs: Option<Vec<u32>> = text
        .trim_start_matches('.')
        .split('.')
        .map(|a| a.parse().ok())
        .collect();
    arcs.filter(|a| a.len() >= 2 && ObjectIdentifier::new(a.clone()).is_some())
}
