//! One file (or folder) per emulated protocol. Each implements
//! [`TcpProtocol`](super::framework::tcp::TcpProtocol) or
//! [`UdpProtocol`](super::framework::udp::UdpProtocol) with its own settings type, documents its
//! wire behaviour and the `nmap -sV` identification it aims for, and is listed once in the
//! [`registry`](super::registry).

pub mod dns;
pub mod ftp;
pub mod http;
pub mod ldap;
pub mod mssql;
pub mod mysql;
pub mod postgres;
pub mod rdp;
pub mod rsync;
pub mod shared;
pub mod smb;
pub mod snmp;
pub mod ssh;
pub mod telnet;
pub mod vnc;
