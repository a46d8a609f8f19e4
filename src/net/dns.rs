//! The embedded DNS resolver, answering at `127.0.0.11:53` inside every container, as Docker's
//! does.
//!
//! Each container's shim runs one: the sockets are bound inside the container's network
//! namespace (on a short-lived thread that `setns`es into it, see [`Server::bind`]) and served
//! from the shim's single-threaded poll loop, so there is no daemon to keep alive and a crash
//! affects one container. Names come from a [`NameSource`] (the shim reads the container
//! records on disk, so a scale or a restart is visible at the next query). Everything else is
//! forwarded, from the host's namespace, to the upstream resolvers written in the container's
//! `dns.json` (none when all its networks are `internal`).
//!
//! Answers: a container's name, its short id, and every alias it has on a network (the service
//! name is one), for the networks the asking container shares with it; all addresses of a name,
//! shuffled for each answer (round robin as Docker does it).
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, rdata::A, rdata::AAAA};
use nix::poll::PollFlags;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Where the resolver listens inside the container, as in Docker.
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// How long an answer may be cached (Docker uses 600 s; ours change more often).
const TTL: u32 = 600;
/// A forwarded query with no answer by then is forgotten.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// A TCP client must complete a query this long after connecting or after its last answer,
/// and a forwarded TCP query be answered: then the connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// At most this many TCP clients at once; a new one pushes out the one idle longest.
const TCP_MAX: usize = 32;

/// What the CLI decides for a container's resolver (`data/containers/<id>/dns.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DnsConfig {
    /// Where unknown names go: compose `dns:`, else the host's resolvers.
    pub upstreams: Vec<SocketAddr>,
    /// False when every network of the container is `internal`: no name leaves the host.
    pub forward: bool,
}

/// Nameservers of a resolv.conf text, as socket addresses on port 53.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next()) {
                (Some("nameserver"), Some(ip)) => ip.parse().ok().map(|ip| SocketAddr::new(ip, 53)),
                _ => None,
            }
        })
        .collect()
}

/// The `search` domains of a resolv.conf text.
pub fn search_domains(resolv_conf: &str) -> Vec<String> {
    resolv_conf
        .lines()
        .filter_map(|l| l.strip_prefix("search "))
        .flat_map(|l| l.split_whitespace().map(str::to_string))
        .collect()
}

/// A container's `/etc/resolv.conf`: our resolver, the search domains and the options.
pub fn container_resolv_conf(search: &[String], options: &[String]) -> String {
    let mut out = format!("nameserver {RESOLVER_IP}\n");
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut opts = vec!["ndots:0".to_string()];
    for o in options {
        let key = o.split(':').next().unwrap_or_default();
        opts.retain(|x| x.split(':').next() != Some(key));
        opts.push(o.clone());
    }
    out.push_str(&format!("options {}\n", opts.join(" ")));
    out
}

/// One container as the resolver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub name: String,
    /// `(network, address, aliases on that network)`.
    pub networks: Vec<(String, Ipv4Addr, Vec<String>)>,
    /// `(network, IPv6 address)` on the IPv6 networks among them.
    pub networks6: Vec<(String, Ipv6Addr)>,
}

/// What one container may resolve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Lowercase names without the trailing dot, to every address they have.
    pub a: HashMap<String, Vec<Ipv4Addr>>,
    /// The same names' IPv6 addresses, on the IPv6 networks.
    pub aaaa: HashMap<String, Vec<Ipv6Addr>>,
    /// `d.c.b.a.in-addr.arpa` to `<container name>.<network>`, as Docker answers reverse
    /// lookups.
    pub ptr: HashMap<String, String>,
}

impl Names {
    pub fn get(&self, name: &str) -> Option<&Vec<Ipv4Addr>> {
        self.a.get(name)
    }
    pub fn contains_key(&self, name: &str) -> bool {
        self.a.contains_key(name)
    }
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }
}

impl std::ops::Index<&str> for Names {
    type Output = Vec<Ipv4Addr>;
    fn index(&self, name: &str) -> &Vec<Ipv4Addr> {
        &self.a[name]
    }
}

fn reverse_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

fn reverse_name6(ip: Ipv6Addr) -> String {
    let hex = format!("{:032x}", u128::from(ip));
    let mut out: Vec<String> = hex.chars().rev().map(String::from).collect();
    out.push("ip6.arpa".into());
    out.join(".")
}

/// The names `asker` may resolve: those of peers on a network it is on.
pub fn names_for(asker: &str, peers: &[Peer]) -> Names {
    let mut out = Names::default();
    let Some(me) = peers.iter().find(|p| p.id == asker) else {
        return out;
    };
    for p in peers {
        for (net, ip, aliases) in &p.networks {
            if !me.networks.iter().any(|(n, _, _)| n == net) {
                continue;
            }
            let short = &p.id[..p.id.len().min(12)];
            out.ptr
                .insert(reverse_name(*ip), format!("{}.{net}", p.name));
            let ip6 = p.networks6.iter().find(|(n, _)| n == net).map(|(_, a)| *a);
            if let Some(ip6) = ip6 {
                out.ptr
                    .insert(reverse_name6(ip6), format!("{}.{net}", p.name));
            }
            for name in [p.name.as_str(), short]
                .into_iter()
                .chain(aliases.iter().map(String::as_str))
            {
                let ips = out.a.entry(name.to_ascii_lowercase()).or_default();
                if !ips.contains(ip) {
                    ips.push(*ip);
                }
                if let Some(ip6) = ip6 {
                    let ips = out.aaaa.entry(name.to_ascii_lowercase()).or_default();
                    if !ips.contains(&ip6) {
                        ips.push(ip6);
                    }
                }
            }
        }
    }
    out
}

/// What to do with one query.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send this message back.
    Answer(Vec<u8>),
    /// Not ours: ask the upstream resolvers.
    Forward,
    /// Not a DNS query at all: ignore it.
    Drop,
}

/// Answers a query from `names`, or says it must be forwarded (or refused, when `forward` is
/// false, with SERVFAIL as Docker does on internal networks).
pub fn resolve(query: &[u8], names: &Names, forward: bool) -> Reply {
    let Ok(msg) = Message::from_vec(query) else {
        return Reply::Drop;
    };
    if msg.metadata.message_type != MessageType::Query {
        return Reply::Drop;
    }
    let mut resp = Message::response(msg.metadata.id, msg.metadata.op_code);
    resp.metadata.recursion_desired = msg.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.queries = msg.queries.clone();
    let q = match (msg.metadata.op_code, msg.queries.as_slice()) {
        (OpCode::Query, [q]) => q,
        _ => {
            resp.metadata.response_code = ResponseCode::NotImp;
            return encode(&resp);
        }
    };
    let key = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if let Some(target) = names.ptr.get(&key)
        && q.query_class() == DNSClass::IN
        && let Ok(target) = Name::from_ascii(format!("{target}."))
    {
        resp.metadata.authoritative = true;
        if q.query_type() == RecordType::PTR {
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                TTL,
                RData::PTR(hickory_proto::rr::rdata::PTR(target)),
            ));
        }
        return encode(&resp);
    }
    match names.get(&key) {
        Some(ips) if q.query_class() == DNSClass::IN => {
            resp.metadata.authoritative = true;
            let ty = q.query_type();
            let name: Name = q.name().clone();
            if ty == RecordType::A || ty == RecordType::ANY {
                let mut ips = ips.clone();
                ips.shuffle(&mut rand::rng());
                for ip in ips {
                    resp.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(ip))));
                }
            }
            if (ty == RecordType::AAAA || ty == RecordType::ANY)
                && let Some(ips6) = names.aaaa.get(&key)
            {
                let mut ips6 = ips6.clone();
                ips6.shuffle(&mut rand::rng());
                for ip in ips6 {
                    resp.add_answer(Record::from_rdata(name.clone(), TTL, RData::AAAA(AAAA(ip))));
                }
            }
            // Other types of a known name: no data, not "no such name" (the AAAA lookup that
            // comes with every A lookup must not fail the name).
            encode(&resp)
        }
        _ if forward => Reply::Forward,
        _ => {
            resp.metadata.response_code = ResponseCode::ServFail;
            encode(&resp)
        }
    }
}

fn encode(m: &Message) -> Reply {
    m.to_vec().map_or(Reply::Drop, Reply::Answer)
}

/// Where the resolver gets its names; asked at every query, so it may cache.
pub trait NameSource {
    fn names(&mut self) -> &Names;
}

/// A query sent upstream, waiting for its answer.
struct Pending {
    client: SocketAddr,
    id: u16,
    sent: Instant,
}

/// A TCP query forwarded upstream over TCP (the client asked over TCP, typically because the
/// UDP answer was truncated), on a non-blocking connection.
struct TcpForward {
    conn: TcpStream,
    /// The length-prefixed query, and how much of it is written.
    query: Vec<u8>,
    written: usize,
    answer: Vec<u8>,
    /// Index of the upstream being asked; the next one is tried when it fails.
    upstream: usize,
}

/// One DNS-over-TCP client, served without ever blocking the shim's loop.
struct TcpClient {
    conn: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    forward: Option<TcpForward>,
    deadline: Instant,
    closed: bool,
}

/// One container's resolver: its sockets and the queries it forwarded.
pub struct Server {
    udp: UdpSocket,
    tcp: TcpListener,
    upstream: Option<UdpSocket>,
    config: DnsConfig,
    pending: HashMap<u16, Pending>,
    clients: Vec<TcpClient>,
}

/// A non-blocking TCP connection to `addr` under way (from the caller's namespace).
fn connect_nonblocking(addr: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, connect, socket};
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok(TcpStream::from(fd)),
        Err(e) => Err(e.into()),
    }
}

/// SERVFAIL for a query (an upstream that could not be reached over TCP).
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    let mut resp = Message::response(msg.metadata.id, msg.metadata.op_code);
    resp.metadata.recursion_desired = msg.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.response_code = ResponseCode::ServFail;
    resp.queries = msg.queries;
    resp.to_vec().ok()
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&(msg.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// A complete length-prefixed message at the start of `buf`, taken out of it.
fn take_framed(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([*buf.first()?, *buf.get(1)?]));
    if buf.len() < len + 2 {
        return None;
    }
    let msg = buf[2..len + 2].to_vec();
    buf.drain(..len + 2);
    Some(msg)
}

/// Reads what is there without blocking; false when the peer closed or failed.
fn read_available(conn: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                into.extend_from_slice(&buf[..n]);
                // A DNS message is at most 64 KiB; anything larger is not a DNS client.
                if into.len() > 2 * 65538 {
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Writes what the socket takes without blocking; false when the peer failed.
fn write_available(conn: &mut TcpStream, data: &[u8], written: &mut usize) -> bool {
    while *written < data.len() {
        match conn.write(&data[*written..]) {
            Ok(0) => return false,
            Ok(n) => *written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            // Still connecting.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

impl Server {
    /// Binds `127.0.0.11:53` (UDP and TCP) inside the network namespace at `netns`, and a UDP
    /// socket for forwarding in the caller's namespace. The namespace's `lo` must be up.
    pub fn bind(netns: &Path, mut config: DnsConfig) -> std::io::Result<Server> {
        // Nowhere to forward to: fail unknown names at once rather than let clients time out.
        config.forward &= !config.upstreams.is_empty();
        let netns = netns.to_path_buf();
        // setns changes only the calling thread; this one ends right after binding, and the
        // sockets stay in the namespace they were created in.
        let (udp, tcp) = std::thread::spawn(move || -> std::io::Result<_> {
            let f = std::fs::File::open(&netns)?;
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let udp = UdpSocket::bind((RESOLVER_IP, 53))?;
            let tcp = TcpListener::bind((RESOLVER_IP, 53))?;
            Ok((udp, tcp))
        })
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))??;
        Self::from_sockets(udp, tcp, config)
    }

    /// A resolver on sockets bound by the caller (tests bind them on loopback).
    pub fn from_sockets(
        udp: UdpSocket,
        tcp: TcpListener,
        mut config: DnsConfig,
    ) -> std::io::Result<Server> {
        config.forward &= !config.upstreams.is_empty();
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let upstream = if config.forward {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            s.set_nonblocking(true)?;
            Some(s)
        } else {
            None
        };
        Ok(Server {
            udp,
            tcp,
            upstream,
            config,
            pending: HashMap::new(),
            clients: Vec::new(),
        })
    }

    /// The descriptors to poll and for what; `service`'s `ready[i]` matches entry `i`.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut v = vec![
            (self.udp.as_fd(), PollFlags::POLLIN),
            (self.tcp.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(u) = &self.upstream {
            v.push((u.as_fd(), PollFlags::POLLIN));
        }
        for c in &self.clients {
            let mut ev = PollFlags::POLLIN;
            if !c.output.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            v.push((c.conn.as_fd(), ev));
            if let Some(f) = &c.forward {
                let ev = if f.written < f.query.len() {
                    PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                };
                v.push((f.conn.as_fd(), ev));
            }
        }
        v
    }

    /// When the caller must call [`Server::service`] again even if nothing is ready: the
    /// earliest TCP deadline or forwarded query expiry.
    pub fn next_wakeup(&self, now: Instant) -> Option<Duration> {
        let tcp = self.clients.iter().map(|c| c.deadline);
        let udp = self.pending.values().map(|p| p.sent + FORWARD_TIMEOUT);
        tcp.chain(udp)
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    /// Handles whatever is ready (`ready[i]` matches `poll_fds()[i]`) and expires what is
    /// overdue. Never blocks: every socket is non-blocking, and TCP clients are state
    /// machines with a deadline, so a slow or silent client cannot stall the caller's loop.
    pub fn service(&mut self, ready: &[bool], source: &mut dyn NameSource) {
        let is = |i: usize| ready.get(i) == Some(&true);
        if is(0) {
            let mut buf = [0u8; 4096];
            while let Ok((n, from)) = self.udp.recv_from(&mut buf) {
                match resolve(&buf[..n], source.names(), self.config.forward) {
                    Reply::Answer(a) => {
                        let _ = self.udp.send_to(&a, from);
                    }
                    Reply::Forward => self.forward(&buf[..n], from),
                    Reply::Drop => {}
                }
            }
        }
        let mut at = 2;
        if let Some(up) = &self.upstream {
            if is(at) {
                let mut buf = [0u8; 4096];
                while let Ok((n, _)) = up.recv_from(&mut buf) {
                    if n < 2 {
                        continue;
                    }
                    let ours = u16::from_be_bytes([buf[0], buf[1]]);
                    if let Some(p) = self.pending.remove(&ours) {
                        buf[..2].copy_from_slice(&p.id.to_be_bytes());
                        let _ = self.udp.send_to(&buf[..n], p.client);
                    }
                }
            }
            at += 1;
        }
        let now = Instant::now();
        for i in 0..self.clients.len() {
            let mut any = is(at);
            at += 1;
            if self.clients[i].forward.is_some() {
                any |= is(at);
                at += 1;
            }
            if any || self.clients[i].deadline <= now {
                self.progress(i, source, now);
            }
        }
        self.clients.retain(|c| !c.closed);
        if is(1) {
            while let Ok((conn, _)) = self.tcp.accept() {
                if conn.set_nonblocking(true).is_err() {
                    continue;
                }
                if self.clients.len() >= TCP_MAX
                    && let Some(oldest) =
                        (0..self.clients.len()).min_by_key(|i| self.clients[*i].deadline)
                {
                    self.clients.swap_remove(oldest);
                }
                self.clients.push(TcpClient {
                    conn,
                    input: Vec::new(),
                    output: Vec::new(),
                    forward: None,
                    deadline: now + TCP_IDLE,
                    closed: false,
                });
                // The query often arrives with the connection.
                let last = self.clients.len() - 1;
                self.progress(last, source, now);
            }
            self.clients.retain(|c| !c.closed);
        }
        self.pending
            .retain(|_, p| p.sent.elapsed() < FORWARD_TIMEOUT);
    }

    /// Moves TCP client `i` as far as it goes without blocking.
    fn progress(&mut self, i: usize, source: &mut dyn NameSource, now: Instant) {
        let forward_ok = self.config.forward;
        let upstreams = self.config.upstreams.clone();
        let c = &mut self.clients[i];
        if c.deadline <= now {
            c.closed = true;
            return;
        }
        if !read_available(&mut c.conn, &mut c.input) {
            c.closed = true;
            return;
        }
        loop {
            if let Some(f) = c.forward.as_mut() {
                let ok = write_available(&mut f.conn, &f.query, &mut f.written)
                    && (f.written < f.query.len() || read_available(&mut f.conn, &mut f.answer));
                if let Some(answer) = take_framed(&mut f.answer) {
                    c.output.extend_from_slice(&framed(&answer));
                    c.forward = None;
                    c.deadline = now + TCP_IDLE;
                    continue;
                }
                if ok {
                    break; // waiting for the upstream
                }
                // This upstream failed: the next one, or SERVFAIL.
                let query = f.query.clone();
                let next = f.upstream + 1;
                c.forward = None;
                if let Some(fwd) = start_tcp_forward(&upstreams, next, query.clone()) {
                    c.forward = Some(fwd);
                    continue;
                }
                if let Some(fail) = servfail(&query[2..]) {
                    c.output.extend_from_slice(&framed(&fail));
                }
                continue;
            }
            let Some(query) = take_framed(&mut c.input) else {
                break;
            };
            match resolve(&query, source.names(), forward_ok) {
                Reply::Answer(a) => {
                    c.output.extend_from_slice(&framed(&a));
                    c.deadline = now + TCP_IDLE;
                }
                Reply::Drop => {
                    c.closed = true;
                    return;
                }
                Reply::Forward => match start_tcp_forward(&upstreams, 0, framed(&query)) {
                    Some(f) => c.forward = Some(f),
                    None => {
                        if let Some(fail) = servfail(&query) {
                            c.output.extend_from_slice(&framed(&fail));
                        }
                    }
                },
            }
        }
        let mut written = 0;
        if !write_available(&mut c.conn, &c.output, &mut written) {
            c.closed = true;
            return;
        }
        c.output.drain(..written);
    }

    /// Sends the query to every upstream under a fresh id; the first answer wins.
    fn forward(&mut self, query: &[u8], client: SocketAddr) {
        let Some(up) = &self.upstream else { return };
        if query.len() < 2 || self.pending.len() > 1024 {
            return;
        }
        let mut ours: u16 = rand::random();
        while self.pending.contains_key(&ours) {
            ours = ours.wrapping_add(1);
        }
        let mut q = query.to_vec();
        let id = u16::from_be_bytes([q[0], q[1]]);
        q[..2].copy_from_slice(&ours.to_be_bytes());
        for u in &self.config.upstreams {
            let _ = up.send_to(&q, u);
        }
        self.pending.insert(
            ours,
            Pending {
                client,
                id,
                sent: Instant::now(),
            },
        );
    }
}

/// A TCP connection to the first upstream from `from` on that accepts one.
fn start_tcp_forward(upstreams: &[SocketAddr], from: usize, query: Vec<u8>) -> Option<TcpForward> {
    (from..upstreams.len()).find_map(|i| {
        connect_nonblocking(upstreams[i])
            .ok()
            .map(|conn| TcpForward {
                conn,
                query: query.clone(),
                written: 0,
                answer: Vec::new(),
                upstream: i,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, name: &str, nets: &[(&str, [u8; 4], &[&str])]) -> Peer {
        Peer {
            id: id.into(),
            name: name.into(),
            networks: nets
                .iter()
                .map(|(n, ip, a)| {
                    (
                        n.to_string(),
                        Ipv4Addr::from(*ip),
                        a.iter().map(|s| s.to_string()).collect(),
                    )
                })
                .collect(),
            networks6: Vec::new(),
        }
    }

    fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).unwrap(),
            ty,
        ));
        m.to_vec().unwrap()
    }

    fn answers(r: Reply) -> (ResponseCode, Vec<Ipv4Addr>) {
        let Reply::Answer(bytes) = r else {
            panic!("{r:?}")
        };
        let m = Message::from_vec(&bytes).unwrap();
        let ips = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        (m.metadata.response_code, ips)
    }

    fn peers() -> Vec<Peer> {
        vec![
            peer(
                "aaaa",
                "p-front-1",
                &[("p_front", [10, 0, 1, 2], &["front"])],
            ),
            peer(
                "bbbb",
                "p-back-1",
                &[("p_back", [10, 0, 2, 2], &["back", "db"])],
            ),
            peer(
                "cccc",
                "p-app-1",
                &[
                    ("p_front", [10, 0, 1, 3], &["app"]),
                    ("p_back", [10, 0, 2, 3], &["app"]),
                ],
            ),
            peer("dddd", "p-app-2", &[("p_front", [10, 0, 1, 4], &["app"])]),
        ]
    }

    #[test]
    fn names_are_scoped_to_shared_networks() {
        let front = names_for("aaaa", &peers());
        assert!(front.contains_key("p-front-1") && front.contains_key("front"));
        assert!(!front.contains_key("back") && !front.contains_key("db"));
        let mut app = front["app"].clone();
        app.sort();
        assert_eq!(
            app,
            [Ipv4Addr::new(10, 0, 1, 3), Ipv4Addr::new(10, 0, 1, 4)]
        );
        // On both networks: the back end sees app's back-end address only.
        let back = names_for("bbbb", &peers());
        assert_eq!(back["app"], [Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(back["p-app-1"], [Ipv4Addr::new(10, 0, 2, 3)]);
        assert!(back.contains_key("cccc") && !back.contains_key("p-app-2"));
        assert!(names_for("nobody", &peers()).is_empty());
    }

    #[test]
    fn answers_all_replicas_shuffled() {
        let names = names_for("aaaa", &peers());
        let mut orders = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let (code, ips) = answers(resolve(&query("APP.", RecordType::A), &names, true));
            assert_eq!(code, ResponseCode::NoError);
            assert_eq!(ips.len(), 2);
            orders.insert(ips);
        }
        assert_eq!(orders.len(), 2, "both orders seen");
    }

    #[test]
    fn known_name_other_type_is_empty_not_nxdomain() {
        let names = names_for("aaaa", &peers());
        let (code, ips) = answers(resolve(&query("front", RecordType::AAAA), &names, true));
        assert_eq!((code, ips.len()), (ResponseCode::NoError, 0));
    }

    #[test]
    fn aaaa_answers_on_ipv6_networks_only() {
        let mut ps = peers();
        let v6: Ipv6Addr = "fd80::3".parse().unwrap();
        ps[2].networks6.push(("p_front".into(), v6));
        let names = names_for("aaaa", &ps);
        let Reply::Answer(bytes) = resolve(&query("app.", RecordType::AAAA), &names, true) else {
            panic!("no answer")
        };
        let m = Message::from_vec(&bytes).unwrap();
        let got: Vec<Ipv6Addr> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::AAAA(a) => Some(a.0),
                _ => None,
            })
            .collect();
        assert_eq!(got, [v6]);
        // A and AAAA stay apart; a peer seen only over IPv4 has no AAAA.
        let (_, ips) = answers(resolve(&query("app.", RecordType::A), &names, true));
        assert_eq!(ips.len(), 2);
        let (code, _) = answers(resolve(&query("front.", RecordType::AAAA), &names, true));
        assert_eq!(code, ResponseCode::NoError);
        // On the back network (no IPv6 there) the same container has no AAAA.
        assert!(!names_for("bbbb", &ps).aaaa.contains_key("app"));
        assert_eq!(
            reverse_name6(v6),
            "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.d.f.ip6.arpa"
        );
        assert!(names.ptr.contains_key(&reverse_name6(v6)));
    }

    #[test]
    fn reverse_lookups_name_the_container_on_its_network() {
        let names = names_for("aaaa", &peers());
        let Reply::Answer(bytes) = resolve(
            &query("3.1.0.10.in-addr.arpa.", RecordType::PTR),
            &names,
            true,
        ) else {
            panic!("no answer")
        };
        let m = Message::from_vec(&bytes).unwrap();
        match &m.answers[0].data {
            RData::PTR(p) => assert_eq!(p.0.to_ascii(), "p-app-1.p_front."),
            other => panic!("{other:?}"),
        }
        // An address on a network the asker is not on is not ours to answer.
        assert_eq!(
            resolve(
                &query("3.2.0.10.in-addr.arpa.", RecordType::PTR),
                &names,
                true
            ),
            Reply::Forward
        );
    }

    #[test]
    fn unknown_names_forward_or_fail_when_internal() {
        let names = names_for("aaaa", &peers());
        assert_eq!(
            resolve(&query("example.com.", RecordType::A), &names, true),
            Reply::Forward
        );
        let (code, _) = answers(resolve(
            &query("example.com.", RecordType::A),
            &names,
            false,
        ));
        assert_eq!(code, ResponseCode::ServFail);
        assert_eq!(resolve(b"\x01", &names, true), Reply::Drop);
    }

    #[test]
    fn resolv_conf_files() {
        let host = "# x\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch a.example b.example\n";
        assert_eq!(
            nameservers(host),
            [
                "127.0.0.53:53".parse().unwrap(),
                "10.1.1.1:53".parse::<SocketAddr>().unwrap()
            ]
        );
        assert_eq!(search_domains(host), ["a.example", "b.example"]);
        assert_eq!(
            container_resolv_conf(
                &search_domains(host),
                &["ndots:2".into(), "timeout:1".into()]
            ),
            "nameserver 127.0.0.11\nsearch a.example b.example\noptions ndots:2 timeout:1\n"
        );
        assert_eq!(
            container_resolv_conf(&[], &[]),
            "nameserver 127.0.0.11\noptions ndots:0\n"
        );
    }

    struct Fixed(Names);
    impl NameSource for Fixed {
        fn names(&mut self) -> &Names {
            &self.0
        }
    }

    /// A resolver on 127.0.0.1 served by a poll loop like the shim's, on a thread of its own
    /// until `stop` is set; returns its UDP and TCP addresses.
    fn serve(
        config: DnsConfig,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> (SocketAddr, SocketAddr) {
        use nix::poll::{PollFd, PollTimeout, poll};
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addrs = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut server = Server::from_sockets(udp, tcp, config).unwrap();
            let mut names = Fixed(names_for("aaaa", &peers()));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let wake = server
                    .next_wakeup(Instant::now())
                    .unwrap_or(Duration::from_millis(50))
                    .min(Duration::from_millis(50));
                let ready: Vec<bool> = {
                    let mut fds: Vec<PollFd> = server
                        .poll_fds()
                        .into_iter()
                        .map(|(fd, ev)| PollFd::new(fd, ev))
                        .collect();
                    let t = PollTimeout::try_from(wake.as_millis() as i32).unwrap();
                    poll(&mut fds, t).unwrap();
                    fds.iter()
                        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                        .collect()
                };
                server.service(&ready, &mut names);
            }
        });
        addrs
    }

    fn tcp_ask(addr: SocketAddr, q: &[u8]) -> Vec<u8> {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        // In two pieces: a query may arrive in parts.
        let framed = framed(q);
        c.write_all(&framed[..3]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        c.write_all(&framed[3..]).unwrap();
        let mut len = [0u8; 2];
        c.read_exact(&mut len).unwrap();
        let mut a = vec![0u8; usize::from(u16::from_be_bytes(len))];
        c.read_exact(&mut a).unwrap();
        a
    }

    #[test]
    fn silent_tcp_clients_do_not_stall_the_resolver() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A TCP upstream answering every query with SERVFAIL-free NXDOMAIN, slowly.
        let up = TcpListener::bind("127.0.0.1:0").unwrap();
        let up_addr = up.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in up.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut conn = conn;
                    let mut len = [0u8; 2];
                    conn.read_exact(&mut len).unwrap();
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    conn.read_exact(&mut q).unwrap();
                    let q = Message::from_vec(&q).unwrap();
                    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                    r.queries = q.queries.clone();
                    r.metadata.response_code = ResponseCode::NXDomain;
                    std::thread::sleep(Duration::from_millis(300));
                    conn.write_all(&framed(&r.to_vec().unwrap())).unwrap();
                });
            }
        });
        let config = DnsConfig {
            upstreams: vec![up_addr],
            forward: true,
        };
        let (udp_addr, tcp_addr) = serve(config, stop.clone());
        // Forty clients that connect and send nothing or half a query.
        let mut silent: Vec<TcpStream> = (0..40)
            .map(|_| TcpStream::connect(tcp_addr).unwrap())
            .collect();
        silent[0].write_all(&[0, 30, 1]).unwrap();
        std::thread::sleep(Duration::from_millis(100));

        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let started = Instant::now();
        for _ in 0..10 {
            client
                .send_to(&query("front.", RecordType::A), udp_addr)
                .unwrap();
            let mut buf = [0u8; 512];
            let n = client.recv(&mut buf).unwrap();
            let (code, ips) = answers(Reply::Answer(buf[..n].to_vec()));
            assert_eq!(
                (code, ips),
                (ResponseCode::NoError, vec![Ipv4Addr::new(10, 0, 1, 2)])
            );
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "UDP answers took {:?}",
            started.elapsed()
        );
        // TCP still answers, our names at once and forwarded ones through the TCP upstream
        // (a slow one does not hold up others either).
        let slow = std::thread::spawn(move || tcp_ask(tcp_addr, &query("x.test.", RecordType::A)));
        let started = Instant::now();
        let (code, ips) = answers(Reply::Answer(tcp_ask(
            tcp_addr,
            &query("app.", RecordType::A),
        )));
        assert_eq!((code, ips.len()), (ResponseCode::NoError, 2));
        assert!(started.elapsed() < Duration::from_millis(250));
        let fwd = Message::from_vec(&slow.join().unwrap()).unwrap();
        assert_eq!(fwd.metadata.response_code, ResponseCode::NXDomain);
        // A dead upstream: SERVFAIL, not a hang.
        drop(silent);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (_, tcp_addr) = serve(
            DnsConfig {
                upstreams: vec![dead],
                forward: true,
            },
            stop.clone(),
        );
        let a = Message::from_vec(&tcp_ask(tcp_addr, &query("x.test.", RecordType::A))).unwrap();
        assert_eq!(a.metadata.response_code, ResponseCode::ServFail);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
