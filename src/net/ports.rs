//! Holding published host ports: a bound (not listening) socket per port, kept open by the
//! container's owner for as long as the port is published.
//!
//! The kernel's DNAT never delivers to this socket; it exists so that a host process (or a
//! second berth project) asking for the same port gets `EADDRINUSE`, and so that we get Docker's
//! "port is already allocated" instead of silently shadowing a host service. `SO_REUSEADDR` is
//! deliberately not set: it would let another non-listening socket bind the port too.
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket};

use super::{NetError, Protocol};

/// Binds `host_ip:port/proto` (all addresses when `None`) and returns the socket and the bound
/// port, which differs from `port` only when `port` is 0 (pick a free one).
pub fn reserve_port(
    host_ip: Option<Ipv4Addr>,
    port: u16,
    proto: Protocol,
) -> Result<(OwnedFd, u16), NetError> {
    let fail = |errno: nix::Error| {
        if errno == nix::Error::EADDRINUSE {
            NetError::PortAllocated {
                host_ip,
                port,
                protocol: proto,
            }
        } else {
            NetError::PortBind {
                host_ip,
                port,
                protocol: proto,
                source: errno.into(),
            }
        }
    };
    let ty = match proto {
        Protocol::Tcp => SockType::Stream,
        Protocol::Udp => SockType::Datagram,
    };
    let fd = socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None).map_err(fail)?;
    let ip = host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let addr = SockaddrIn::from(SocketAddrV4::new(ip, port));
    bind(fd.as_fd().as_raw_fd_compat(), &addr).map_err(fail)?;
    let bound: SockaddrIn = getsockname(fd.as_fd().as_raw_fd_compat()).map_err(fail)?;
    Ok((fd, bound.port()))
}

/// Parses the host side of a published port: `8080` or a range `8000-8010` (whose end is
/// returned as `Some`).
pub fn parse_host_ports(s: &str) -> Result<(u16, Option<u16>), NetError> {
    let bad = || NetError::InvalidPorts {
        value: s.to_string(),
    };
    match s.split_once('-') {
        None => Ok((s.trim().parse().map_err(|_| bad())?, None)),
        Some((a, b)) => {
            let (a, b): (u16, u16) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if b < a || a == 0 {
                return Err(bad());
            }
            Ok((a, (b > a).then_some(b)))
        }
    }
}

/// Reserves the first free port of `first..=last` (Docker's rule for a host range, which lets
/// the replicas of a scaled service share one). Fails like [`reserve_port`] when all are taken.
pub fn reserve_range(
    host_ip: Option<Ipv4Addr>,
    first: u16,
    last: u16,
    proto: Protocol,
) -> Result<(OwnedFd, u16), NetError> {
    let mut err = None;
    for port in first..=last {
        match reserve_port(host_ip, port, proto) {
            Ok(r) => return Ok(r),
            Err(e @ NetError::PortAllocated { .. }) => err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(err.unwrap_or(NetError::PortAllocated {
        host_ip,
        port: first,
        protocol: proto,
    }))
}

/// nix 0.29 socket calls take raw fds.
trait RawCompat {
    fn as_raw_fd_compat(&self) -> std::os::fd::RawFd;
}

impl RawCompat for std::os::fd::BorrowedFd<'_> {
    fn as_raw_fd_compat(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_reservation_is_refused_like_docker() {
        let (_held, port) = reserve_port(Some(Ipv4Addr::LOCALHOST), 0, Protocol::Tcp).unwrap();
        assert_ne!(port, 0);
        let err = reserve_port(Some(Ipv4Addr::LOCALHOST), port, Protocol::Tcp).unwrap_err();
        assert!(matches!(err, NetError::PortAllocated { .. }));
        assert_eq!(
            err.to_string(),
            format!("Bind for 127.0.0.1:{port}/tcp failed: port is already allocated")
        );
        // A wildcard reservation conflicts with a specific one.
        let err = reserve_port(None, port, Protocol::Tcp).unwrap_err();
        assert!(err.to_string().starts_with("Bind for 0.0.0.0:"), "{err}");
        // Another process's listener is refused too.
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn host_port_syntax() {
        assert_eq!(parse_host_ports("8080").unwrap(), (8080, None));
        assert_eq!(parse_host_ports("8000-8010").unwrap(), (8000, Some(8010)));
        assert_eq!(parse_host_ports("8000-8000").unwrap(), (8000, None));
        for bad in ["x", "10-5", "0-3", "70000", "1-"] {
            assert!(parse_host_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_range_is_shared_by_replicas() {
        let (_a, first) = reserve_port(Some(Ipv4Addr::LOCALHOST), 0, Protocol::Tcp).unwrap();
        // The range starts on a taken port: the next free one is used, then the range is full.
        let last = first.saturating_add(1);
        match reserve_range(Some(Ipv4Addr::LOCALHOST), first, last, Protocol::Tcp) {
            Ok((_b, p)) => {
                assert_eq!(p, last);
                let e = reserve_range(Some(Ipv4Addr::LOCALHOST), first, last, Protocol::Tcp);
                assert!(matches!(e, Err(NetError::PortAllocated { .. })));
            }
            // Someone else holds `last`: then the whole range is taken, as it should say.
            Err(e) => assert!(matches!(e, NetError::PortAllocated { .. })),
        }
    }

    #[test]
    fn udp_and_tcp_are_separate() {
        let (_tcp, port) = reserve_port(Some(Ipv4Addr::LOCALHOST), 0, Protocol::Tcp).unwrap();
        // The same number may or may not be free for UDP; if it is, both can be held.
        if let Ok((_udp, p)) = reserve_port(Some(Ipv4Addr::LOCALHOST), port, Protocol::Udp) {
            assert_eq!(p, port);
            assert!(reserve_port(Some(Ipv4Addr::LOCALHOST), port, Protocol::Udp).is_err());
        }
    }

    #[test]
    fn released_port_can_be_taken_again() {
        let (held, port) = reserve_port(Some(Ipv4Addr::LOCALHOST), 0, Protocol::Udp).unwrap();
        drop(held);
        let (_again, p) = reserve_port(Some(Ipv4Addr::LOCALHOST), port, Protocol::Udp).unwrap();
        assert_eq!(p, port);
    }
}
