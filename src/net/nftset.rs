//! Published ports added to the port maps over netlink, without running `nft`.
//!
//! `nft -f` starts by reading the whole ruleset into its cache, every element of every set of
//! every table included, which made it the largest single cost of publishing a container's
//! ports (5 ms of CPU and more per call, growing with the host's ruleset). Adding map elements
//! needs none of that: one nfnetlink batch with one `NFT_MSG_NEWSETELEM` per map.
//!
//! Only the common case goes this way. Whatever the kernel refuses (a missing table, a host
//! port already mapped elsewhere, no nf_tables) makes [`add_port_elements`] return an error,
//! and the caller falls back to `nft`, which gives the authoritative message.
use super::{PortMapping, Protocol};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
    setsockopt, socket, sockopt,
};
use std::os::fd::AsRawFd;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFPROTO_INET: u8 = 1;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

/// Why the netlink path did not apply the elements (the caller then runs `nft`).
#[derive(Debug)]
pub struct Refused(pub String);

/// Adds one element per mapping to `pf_any` / `pf_ip` of `inet table`, in one transaction.
pub fn add_port_elements(table: &str, ports: &[PortMapping]) -> Result<(), Refused> {
    let (batch, expect) = batch(table, ports, 1);
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(|e| Refused(format!("netlink socket: {e}")))?;
    // An answer always comes; the timeout only keeps a broken kernel from hanging `up`.
    let _ = setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(2, 0),
    );
    sendto(
        fd.as_raw_fd(),
        &batch,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|e| Refused(format!("netlink send: {e}")))?;
    let mut pending = expect;
    let mut buf = vec![0u8; 16384];
    while !pending.is_empty() {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())
            .map_err(|e| Refused(format!("netlink receive: {e}")))?;
        for (seq, errno) in acks(&buf[..n]) {
            if errno != 0 {
                return Err(Refused(format!(
                    "nf_tables: {}",
                    nix::errno::Errno::from_raw(-errno)
                )));
            }
            pending.retain(|s| *s != seq);
        }
    }
    Ok(())
}

/// The batch for `ports` (sequence numbers from `seq`), and the sequence numbers of the
/// messages whose acknowledgement says the transaction applied.
fn batch(table: &str, ports: &[PortMapping], seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut out = Vec::new();
    let mut seq = seq;
    let mut expect = Vec::new();
    message(
        &mut out,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    for (map, with_ip) in [("pf_any", false), ("pf_ip", true)] {
        let elems: Vec<&PortMapping> = ports
            .iter()
            .filter(|p| host_ip(p).is_some() == with_ip)
            .collect();
        if elems.is_empty() {
            continue;
        }
        let mut list = Vec::new();
        for p in elems {
            let mut elem = Vec::new();
            nested(
                &mut elem,
                NFTA_SET_ELEM_KEY,
                &attr(NFTA_DATA_VALUE, &key(p)),
            );
            nested(
                &mut elem,
                NFTA_SET_ELEM_DATA,
                &attr(NFTA_DATA_VALUE, &data(p)),
            );
            nested(&mut list, NFTA_LIST_ELEM, &elem);
        }
        let mut body = attr(NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
        body.extend(attr(NFTA_SET_ELEM_LIST_SET, &cstr(map)));
        nested(&mut body, NFTA_SET_ELEM_LIST_ELEMENTS, &list);
        seq += 1;
        expect.push(seq);
        message(
            &mut out,
            NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWSETELEM,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
            seq,
            NFPROTO_INET,
            0,
            &body,
        );
    }
    seq += 1;
    message(
        &mut out,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    (out, expect)
}

fn host_ip(p: &PortMapping) -> Option<std::net::Ipv4Addr> {
    p.host_ip.filter(|ip| !ip.is_unspecified())
}

/// nftables concatenations: each field takes whole 32-bit registers, zero padded.
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.resize(out.len().div_ceil(4) * 4, 0);
}

/// `[host address .] protocol . host port`
fn key(p: &PortMapping) -> Vec<u8> {
    let mut k = Vec::new();
    if let Some(ip) = host_ip(p) {
        field(&mut k, &ip.octets());
    }
    let proto: u8 = match p.protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    };
    field(&mut k, &[proto]);
    field(&mut k, &p.host_port.to_be_bytes());
    k
}

/// `container address . container port`
fn data(p: &PortMapping) -> Vec<u8> {
    let mut d = Vec::new();
    field(&mut d, &p.container_ip.octets());
    field(&mut d, &p.container_port.to_be_bytes());
    d
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(4 + payload.len() + 3);
    a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize(a.len().div_ceil(4) * 4, 0);
    a
}

fn nested(out: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    out.extend(attr(kind | NLA_F_NESTED, inner));
}

/// A netlink message with an `nfgenmsg` header (`res_id` in network order).
fn message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    body: &[u8],
) {
    let len = 16 + 4 + body.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(body);
}

/// `(sequence number, error)` of each `NLMSG_ERROR` (an acknowledgement when 0) in `buf`.
fn acks(buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
        if len < 16 || at + len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap_or_default());
        if kind == NLMSG_ERROR && len >= 20 {
            let errno = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap_or_default());
            // The error message quotes the request's header: its sequence number is ours.
            let seq = buf
                .get(at + 28..at + 32)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
                .unwrap_or(0);
            out.push((seq, errno));
        }
        at += len.div_ceil(4) * 4;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn mapping(host_ip: Option<Ipv4Addr>, proto: Protocol) -> PortMapping {
        PortMapping {
            host_ip,
            host_port: 5353,
            protocol: proto,
            container_ip: Ipv4Addr::new(10, 213, 7, 2),
            container_port: 53,
        }
    }

    #[test]
    fn keys_and_data_take_whole_registers_as_nft_lays_them_out() {
        // `nft --debug=netlink` shows `element 0100007f 00000011 0000e914 : 0207d50a 00003500`
        // for `127.0.0.1 . udp . 5353 : 10.213.7.2 . 53`.
        let p = mapping(Some(Ipv4Addr::LOCALHOST), Protocol::Udp);
        assert_eq!(key(&p), [127, 0, 0, 1, 17, 0, 0, 0, 0x14, 0xe9, 0, 0]);
        assert_eq!(data(&p), [10, 213, 7, 2, 0, 53, 0, 0]);
        let any = mapping(Some(Ipv4Addr::UNSPECIFIED), Protocol::Tcp);
        assert_eq!(key(&any), [6, 0, 0, 0, 0x14, 0xe9, 0, 0]);
    }

    #[test]
    fn one_message_per_map_between_batch_markers() {
        let ports = [
            mapping(None, Protocol::Tcp),
            mapping(Some(Ipv4Addr::LOCALHOST), Protocol::Udp),
            mapping(None, Protocol::Udp),
        ];
        let (b, expect) = batch("berth_x", &ports, 7);
        assert_eq!(expect, [8, 9]);
        let mut kinds = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let len = u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            kinds.push(u16::from_ne_bytes(b[at + 4..at + 6].try_into().unwrap()));
            at += len;
        }
        assert_eq!(at, b.len());
        assert_eq!(kinds, [16, 10 << 8 | 12, 10 << 8 | 12, 17]);
    }

    #[test]
    fn reads_acks_and_errors_by_sequence_number() {
        let mut m = Vec::new();
        for (seq, errno) in [(8u32, 0i32), (9, -16)] {
            m.extend_from_slice(&36u32.to_ne_bytes());
            m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            m.extend_from_slice(&[0; 10]);
            m.extend_from_slice(&errno.to_ne_bytes());
            m.extend_from_slice(&[0; 8]);
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&[0; 4]);
        }
        assert_eq!(acks(&m), [(8, 0), (9, -16)]);
    }

    #[test]
    #[allow(clippy::print_stderr)]
    fn the_kernel_takes_the_elements_and_nft_lists_them() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root for nftables");
            return;
        }
        let table = format!("berth_set_test_{}", std::process::id());
        let script = format!(
            "add table inet {table}\n\
             add map inet {table} pf_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             add map inet {table} pf_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}\n"
        );
        if crate::net::firewall::run_nft("test table", &script).is_err() {
            eprintln!("skipped: nft not usable");
            return;
        }
        let ports = [
            mapping(None, Protocol::Tcp),
            mapping(Some(Ipv4Addr::LOCALHOST), Protocol::Udp),
        ];
        let added = add_port_elements(&table, &ports);
        // The same again is fine; the same host port to another container is refused.
        let again = add_port_elements(&table, &ports);
        let mut other = mapping(None, Protocol::Tcp);
        other.container_port = 54;
        let clash = add_port_elements(&table, &[other]);
        let listed = crate::net::firewall::run_nft("list", &format!("list table inet {table}\n"));
        let _ = crate::net::firewall::run_nft("drop", &format!("delete table inet {table}\n"));
        added.unwrap();
        again.unwrap();
        assert!(clash.is_err());
        let listed = listed.unwrap();
        assert!(listed.contains("tcp . 5353 : 10.213.7.2 . 53"), "{listed}");
        assert!(
            listed.contains("127.0.0.1 . udp . 5353 : 10.213.7.2 . 53"),
            "{listed}"
        );
        assert!(
            add_port_elements(&table, &ports).is_err(),
            "the table is gone"
        );
    }
}
