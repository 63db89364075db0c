//! A small synchronous rtnetlink client: the handful of link, address and route
//! requests the default network makes, each one request and its acknowledgement
//! on a `NETLINK_ROUTE` socket of the calling thread's network namespace.
//!
//! Synchronous on purpose: the rest of podrun's network code is sync, every
//! request is answered by the kernel before `sendmsg` returns, and a runtime
//! (rtnetlink's tokio one) would cost more than the requests themselves.

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The loopback interface's index: always 1 in a network namespace (the
/// kernel registers `lo` first in each one).
pub(crate) const LOOPBACK_INDEX: u32 = 1;

/// A `NETLINK_ROUTE` socket bound in the namespace of the thread that opened it.
pub(crate) struct Netlink {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace; it stays in
    /// that namespace whichever thread uses it later.
    pub(crate) fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Extended acks make the kernel's own reason part of some errors; not
        // every kernel has them, and they are only a nicety.
        let _ = socket.set_ext_ack(true);
        Ok(Netlink {
            socket,
            sequence: 0,
            buffer: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends one request and waits for its acknowledgement; returns the
    /// messages answered before it (one for a `GET` of a single object).
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;

        let mut answers = Vec::new();
        loop {
            self.buffer.clear();
            self.buffer.reserve(64 * 1024);
            self.socket.recv(&mut self.buffer, 0)?;
            let mut offset = 0;
            while offset < self.buffer.len() {
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buffer[offset..])
                        .map_err(|e| {
                            io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {e}"))
                        })?;
                let length = reply.header.length as usize;
                if length == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "netlink: a reply of length 0",
                    ));
                }
                offset += (length + 3) & !3;
                if reply.header.sequence_number != self.sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(answers),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// The link named `name`, if there is one.
    pub(crate) fn link(&mut self, name: &str) -> io::Result<Option<LinkMessage>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(message), 0) {
            Ok(answers) => Ok(answers.into_iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc_enodev()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge named `name` with the MAC address `mac`, up;
    /// `Ok(false)` if a link of that name already exists (another caller made
    /// it first). A bridge without a MAC of its own takes the lowest of its
    /// ports' and changes it as pods come and go, leaving every pod's
    /// neighbour entry for the gateway stale.
    pub(crate) fn create_bridge(&mut self, name: &str, mac: [u8; 6]) -> io::Result<bool> {
        let mut message = LinkMessage::default();
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        message.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        created(self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ))
    }

    /// Sets the link up.
    pub(crate) fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::NewLink(message), 0)
            .map(drop)
    }

    /// Creates a veth pair in one request: `host` here, up, a port of the
    /// bridge `master`; its peer `peer` directly in the namespace open at
    /// `netns` (so no name of the peer ever exists on the host), down.
    pub(crate) fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        netns: RawFd,
    ) -> io::Result<bool> {
        // The peer cannot be created up: the kernel configures it before
        // the host end exists, and opening a veth without its peer fails
        // (ENOTCONN, veth_open). It is set up from inside the pod.
        let mut peer_message = LinkMessage::default();
        peer_message.attributes = vec![
            LinkAttribute::IfName(peer.to_owned()),
            LinkAttribute::NetNsFd(netns),
        ];
        let mut message = LinkMessage::default();
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        message.attributes = vec![
            LinkAttribute::IfName(host.to_owned()),
            LinkAttribute::Controller(master),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
            ]),
        ];
        created(self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ))
    }

    /// Turns hairpin mode on for the bridge port `name`, so that a pod
    /// reaching its own hostPort through a node address gets its traffic
    /// back out of the port it came in (CNI bridge's `hairpinMode`).
    pub(crate) fn set_hairpin(&mut self, name: &str) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                    true,
                )])),
            ]),
        ];
        self.request(RouteNetlinkMessage::NewLink(message), 0)
            .map(drop)
    }

    /// Takes the link named `name` down and out of its bridge, in one request
    /// that returns at once (a deletion waits for RCU grace periods, ~17 ms
    /// here); `Ok(false)` if there was none.
    pub(crate) fn release_link(&mut self, name: &str) -> io::Result<bool> {
        let mut message = LinkMessage::default();
        message.header.change_mask = LinkFlags::Up;
        message.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::Controller(0),
        ];
        match self.request(RouteNetlinkMessage::NewLink(message), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc_enodev()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the link named `name`; `Ok(false)` if there was none.
    pub(crate) fn delete_link(&mut self, name: &str) -> io::Result<bool> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::DelLink(message), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc_enodev()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds `address/prefix` to the link; `Ok(false)` if it is already there.
    /// IPv6 addresses skip duplicate address detection (the subnet is ours and
    /// the lease store hands each address out once), so they are usable at once.
    pub(crate) fn add_address(
        &mut self,
        index: u32,
        address: IpAddr,
        prefix: u8,
    ) -> io::Result<bool> {
        let mut message = AddressMessage::default();
        message.header.index = index;
        message.header.prefix_len = prefix;
        message.header.family = family(address);
        message.attributes = vec![
            AddressAttribute::Local(address),
            AddressAttribute::Address(address),
        ];
        match address {
            IpAddr::V4(v4) => {
                let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                let broadcast = u32::from(v4) | host_bits;
                message
                    .attributes
                    .push(AddressAttribute::Broadcast(broadcast.into()));
            }
            IpAddr::V6(_) => message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad)),
        }
        created(self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ))
    }

    /// Adds the default route of `gateway`'s family through `gateway`.
    pub(crate) fn add_default_route(&mut self, gateway: IpAddr) -> io::Result<bool> {
        let mut message = RouteMessage::default();
        message.header = RouteHeader {
            address_family: family(gateway),
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Boot,
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        created(self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ))
    }
}

fn family(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// `Ok(true)` if the request created the object, `Ok(false)` if it existed.
fn created(result: io::Result<Vec<RouteNetlinkMessage>>) -> io::Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn libc_enodev() -> i32 {
    rustix::io::Errno::NODEV.raw_os_error()
}

/// Whether the link is administratively up.
pub(crate) fn is_up(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Up)
}

/// Whether the link is a bridge.
pub(crate) fn is_bridge(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|attribute| {
        matches!(attribute, LinkAttribute::LinkInfo(infos)
            if infos.iter().any(|info| matches!(info, LinkInfo::Kind(InfoKind::Bridge))))
    })
}
