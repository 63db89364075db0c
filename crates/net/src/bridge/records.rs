//! What the default network remembers of each sandbox, beside the leases:
//!
//! - `sandboxes/<id>`: the addresses and hostPort mappings `add` made, so that
//!   `del` removes exactly those (even with a different or empty attachment);
//! - `hostports/<protocol>_<port>_<hostIP|any>`: which sandbox maps a node
//!   port, so a second sandbox asking for it is refused before anything is made.
//!   Reservations are checked and made under an exclusive `flock` of
//!   `hostports.lock`, so two concurrent adds cannot both take a port.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use crate::network::{PortMapping, Protocol};

/// Why a record or a hostPort reservation failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Another sandbox of this network maps the port.
    #[error("hostPort {port}/{protocol} on {host_ip} is already mapped by sandbox {owner}")]
    PortTaken {
        /// The node port.
        port: u16,
        /// Its protocol.
        protocol: &'static str,
        /// The node address (`every address` without `hostIP`).
        host_ip: String,
        /// The sandbox that maps it.
        owner: String,
    },
    /// A process of the node listens on the port.
    #[error(
        "hostPort {port}/{protocol} on {host_ip} is in use on the node: binding it failed: {source}"
    )]
    PortInUse {
        /// The node port.
        port: u16,
        /// Its protocol.
        protocol: &'static str,
        /// The node address.
        host_ip: String,
        /// What bind said.
        source: io::Error,
    },
    /// A mapping's `hostIP` is not an IP address.
    #[error("hostPort {port}: hostIP {host_ip:?} is not an IP address")]
    BadHostIp {
        /// The node port.
        port: u16,
        /// The value given.
        host_ip: String,
    },
    /// A file of the state directory could not be read or written.
    #[error("network state {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RecordError {
    let path = path.to_path_buf();
    move |source| RecordError::Io { path, source }
}

/// What `add` made for one sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) ips: Vec<IpAddr>,
    pub(crate) mappings: Vec<PortMapping>,
}

impl Record {
    fn text(&self) -> String {
        let mut text = String::new();
        for ip in &self.ips {
            text.push_str(&format!("ip {ip}\n"));
        }
        for m in &self.mappings {
            let host_ip = if m.host_ip.is_empty() {
                "-"
            } else {
                &m.host_ip
            };
            text.push_str(&format!(
                "port {} {} {} {host_ip}\n",
                m.protocol.as_str(),
                m.host_port,
                m.container_port
            ));
        }
        text
    }

    fn parse(text: &str) -> Record {
        let mut record = Record::default();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["ip", ip] => record.ips.extend(ip.parse::<IpAddr>().ok()),
                ["port", protocol, host_port, container_port, host_ip] => {
                    let protocol = match *protocol {
                        "tcp" => Protocol::Tcp,
                        "udp" => Protocol::Udp,
                        "sctp" => Protocol::Sctp,
                        _ => continue,
                    };
                    let (Ok(host_port), Ok(container_port)) =
                        (host_port.parse(), container_port.parse())
                    else {
                        continue;
                    };
                    record.mappings.push(PortMapping {
                        host_port,
                        container_port,
                        protocol,
                        host_ip: if *host_ip == "-" {
                            String::new()
                        } else {
                            (*host_ip).to_owned()
                        },
                    });
                }
                _ => {}
            }
        }
        record
    }
}

/// The records of one network's state directory.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    dir: PathBuf,
}

impl Records {
    pub(crate) fn new(dir: PathBuf) -> Records {
        Records { dir }
    }

    fn sandbox_path(&self, sandbox_id: &str) -> PathBuf {
        self.dir.join("sandboxes").join(sandbox_id)
    }

    /// Writes the sandbox's record (atomically: a temp file renamed).
    pub(crate) fn write(&self, sandbox_id: &str, record: &Record) -> Result<(), RecordError> {
        let path = self.sandbox_path(sandbox_id);
        let dir = path.parent().expect("a file under sandboxes/");
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let temp = dir.join(format!(".{sandbox_id}.tmp"));
        fs::write(&temp, record.text()).map_err(io_error(&temp))?;
        fs::rename(&temp, &path).map_err(io_error(&path))
    }

    /// The sandbox's record, if it has one.
    pub(crate) fn read(&self, sandbox_id: &str) -> Result<Option<Record>, RecordError> {
        let path = self.sandbox_path(sandbox_id);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(Record::parse(&text))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// Removes the sandbox's record; no error if it has none.
    pub(crate) fn remove(&self, sandbox_id: &str) -> Result<(), RecordError> {
        let path = self.sandbox_path(sandbox_id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    fn lock(&self) -> Result<File, RecordError> {
        fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let path = self.dir.join("hostports.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_error(&path)(e.into()))?;
        Ok(file)
    }

    /// Reserves the sandbox's hostPorts: refused, with nothing reserved, if
    /// another sandbox maps one of them (the same protocol and port on the
    /// same `hostIP`, or on every address against any `hostIP`), or if binding
    /// it on the node fails because a process uses it.
    pub(crate) fn reserve_ports(
        &self,
        sandbox_id: &str,
        mappings: &[PortMapping],
    ) -> Result<(), RecordError> {
        if mappings.is_empty() {
            return Ok(());
        }
        let dir = self.dir.join("hostports");
        let _lock = self.lock()?;
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let owner = fs::read_to_string(entry.path()).map_err(io_error(&entry.path()))?;
            owners.insert(entry.file_name().to_string_lossy().into_owned(), owner);
        }
        for m in mappings {
            let host_ip = host_ip_key(m)?;
            let prefix = format!("{}_{}_", m.protocol.as_str(), m.host_port);
            let conflict = owners.iter().find(|(key, owner)| {
                owner.as_str() != sandbox_id
                    && key.starts_with(&prefix)
                    && (host_ip == "any"
                        || key[prefix.len()..] == host_ip
                        || &key[prefix.len()..] == "any")
            });
            if let Some((key, owner)) = conflict {
                let taken = &key[prefix.len()..];
                return Err(RecordError::PortTaken {
                    port: m.host_port,
                    protocol: m.protocol.as_str(),
                    host_ip: display_host_ip(taken),
                    owner: owner.clone(),
                });
            }
            check_bind(m, &host_ip)?;
        }
        let mut made = Vec::new();
        for m in mappings {
            let key = format!(
                "{}_{}_{}",
                m.protocol.as_str(),
                m.host_port,
                host_ip_key(m)?
            );
            let path = dir.join(&key);
            if let Err(e) = fs::write(&path, sandbox_id) {
                for path in made {
                    let _ = fs::remove_file(path);
                }
                return Err(io_error(&path)(e));
            }
            made.push(path);
        }
        Ok(())
    }

    /// Releases the hostPorts the sandbox reserved (those of its record).
    pub(crate) fn release_ports(
        &self,
        sandbox_id: &str,
        mappings: &[PortMapping],
    ) -> Result<(), RecordError> {
        let dir = self.dir.join("hostports");
        for m in mappings {
            let Ok(host_ip) = host_ip_key(m) else {
                continue;
            };
            let path = dir.join(format!(
                "{}_{}_{}",
                m.protocol.as_str(),
                m.host_port,
                host_ip
            ));
            match fs::read_to_string(&path) {
                Ok(owner) if owner == sandbox_id => {
                    fs::remove_file(&path)
                        .or_else(not_found_is_ok)
                        .map_err(io_error(&path))?;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
        Ok(())
    }
}

fn not_found_is_ok(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// The mapping's `hostIP` in a reservation's name: the address, or `any`.
fn host_ip_key(m: &PortMapping) -> Result<String, RecordError> {
    if m.host_ip.is_empty() {
        return Ok("any".to_owned());
    }
    let ip: IpAddr = m.host_ip.parse().map_err(|_| RecordError::BadHostIp {
        port: m.host_port,
        host_ip: m.host_ip.clone(),
    })?;
    Ok(if ip.is_unspecified() {
        "any".to_owned()
    } else {
        ip.to_string()
    })
}

fn display_host_ip(key: &str) -> String {
    if key == "any" {
        "every address".to_owned()
    } else {
        key.to_owned()
    }
}

/// Binds the port as the mapping would serve it: a listener there means the
/// DNAT would steal its traffic. TCP binds with `SO_REUSEADDR` (std's), so
/// only a listener, not a connection in TIME_WAIT, makes it fail. A `hostIP`
/// that is no address of the node is not checked (the bind cannot tell). SCTP
/// is not checked (no SCTP socket in std).
fn check_bind(m: &PortMapping, host_ip: &str) -> Result<(), RecordError> {
    let addresses: Vec<IpAddr> = if host_ip == "any" {
        vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ]
    } else {
        vec![host_ip.parse().expect("a key made from an address")]
    };
    for address in addresses {
        let socket = SocketAddr::new(address, m.host_port);
        let result = match m.protocol {
            Protocol::Tcp => TcpListener::bind(socket).map(drop),
            Protocol::Udp => UdpSocket::bind(socket).map(drop),
            Protocol::Sctp => Ok(()),
        };
        if let Err(source) = result {
            if source.kind() == io::ErrorKind::AddrInUse {
                return Err(RecordError::PortInUse {
                    port: m.host_port,
                    protocol: m.protocol.as_str(),
                    host_ip: display_host_ip(host_ip),
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(protocol: Protocol, host_port: u16, host_ip: &str) -> PortMapping {
        PortMapping {
            host_port,
            container_port: 80,
            protocol,
            host_ip: host_ip.to_owned(),
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let record = Record {
            ips: vec!["10.1.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
            mappings: vec![
                mapping(Protocol::Tcp, 8080, ""),
                mapping(Protocol::Udp, 53, "127.0.0.1"),
            ],
        };
        assert_eq!(Record::parse(&record.text()), record);
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path().to_path_buf());
        assert_eq!(records.read("s").unwrap(), None);
        records.write("s", &record).unwrap();
        assert_eq!(records.read("s").unwrap(), Some(record));
        records.remove("s").unwrap();
        records.remove("s").unwrap();
        assert_eq!(records.read("s").unwrap(), None);
    }

    // Ports in 1..1024 on 192.0.2.1 (TEST-NET, not the node's): the bind check
    // cannot tell, so only the reservations decide.
    #[test]
    fn a_port_is_reserved_once_and_every_address_conflicts_with_any() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path().to_path_buf());
        let specific = mapping(Protocol::Tcp, 81, "192.0.2.1");
        records
            .reserve_ports("a", std::slice::from_ref(&specific))
            .unwrap();
        // The same sandbox again (a retried add) is no conflict.
        records
            .reserve_ports("a", std::slice::from_ref(&specific))
            .unwrap();
        let error = records
            .reserve_ports("b", std::slice::from_ref(&specific))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "hostPort 81/tcp on 192.0.2.1 is already mapped by sandbox a"
        );
        // UDP, another address: free.
        records
            .reserve_ports("b", &[mapping(Protocol::Udp, 81, "192.0.2.1")])
            .unwrap();
        records
            .reserve_ports("c", &[mapping(Protocol::Tcp, 81, "192.0.2.2")])
            .unwrap();
        let error = records
            .reserve_ports("d", &[mapping(Protocol::Tcp, 81, "")])
            .unwrap_err();
        assert!(matches!(error, RecordError::PortTaken { .. }), "{error}");
        records
            .release_ports("a", std::slice::from_ref(&specific))
            .unwrap();
        records
            .release_ports("c", &[mapping(Protocol::Tcp, 81, "192.0.2.2")])
            .unwrap();
        records
            .reserve_ports("d", &[mapping(Protocol::Tcp, 81, "0.0.0.0")])
            .unwrap();
        let error = records.reserve_ports("e", &[specific]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("on every address is already mapped by sandbox d"),
            "{error}"
        );
    }

    #[test]
    fn a_port_a_process_listens_on_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path().to_path_buf());
        for host_ip in ["127.0.0.1", ""] {
            let error = records
                .reserve_ports("a", &[mapping(Protocol::Tcp, port, host_ip)])
                .unwrap_err();
            assert!(matches!(error, RecordError::PortInUse { .. }), "{error}");
            assert!(
                error.to_string().contains("is in use on the node"),
                "{error}"
            );
        }
        assert!(fs::read_dir(dir.path().join("hostports"))
            .unwrap()
            .next()
            .is_none());
    }
}
