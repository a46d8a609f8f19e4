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
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, rdata::A};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Where the resolver listens inside the container, as in Docker.
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// How long an answer may be cached (Docker uses 600 s; ours change more often).
const TTL: u32 = 600;
/// A forwarded query with no answer by then is forgotten.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

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
}

/// What one container may resolve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Lowercase names without the trailing dot, to every address they have.
    pub a: HashMap<String, Vec<Ipv4Addr>>,
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
            for name in [p.name.as_str(), short]
                .into_iter()
                .chain(aliases.iter().map(String::as_str))
            {
                let ips = out.a.entry(name.to_ascii_lowercase()).or_default();
                if !ips.contains(ip) {
                    ips.push(*ip);
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
            if q.query_type() == RecordType::A || q.query_type() == RecordType::ANY {
                let mut ips = ips.clone();
                ips.shuffle(&mut rand::rng());
                let name: Name = q.name().clone();
                for ip in ips {
                    resp.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(ip))));
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

/// One container's resolver: its sockets and the queries it forwarded.
pub struct Server {
    udp: UdpSocket,
    tcp: TcpListener,
    upstream: Option<UdpSocket>,
    config: DnsConfig,
    pending: HashMap<u16, Pending>,
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
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let upstream = if config.forward && !config.upstreams.is_empty() {
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
        })
    }

    /// The descriptors to poll for reading.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = vec![self.udp.as_fd(), self.tcp.as_fd()];
        if let Some(u) = &self.upstream {
            v.push(u.as_fd());
        }
        v
    }

    /// Handles whatever is readable; `ready[i]` matches `fds()[i]`. Never blocks long: UDP is
    /// non-blocking, a TCP client gets a short deadline.
    pub fn service(&mut self, ready: &[bool], source: &mut dyn NameSource) {
        if ready.first() == Some(&true) {
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
        if ready.get(1) == Some(&true) {
            while let Ok((conn, _)) = self.tcp.accept() {
                let _ = self.tcp_query(conn, source);
            }
        }
        if ready.get(2) == Some(&true)
            && let Some(up) = &self.upstream
        {
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
        self.pending
            .retain(|_, p| p.sent.elapsed() < FORWARD_TIMEOUT);
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

    /// One length-prefixed query over TCP, answered or forwarded (over UDP) within a second.
    fn tcp_query(
        &self,
        mut conn: std::net::TcpStream,
        source: &mut dyn NameSource,
    ) -> std::io::Result<()> {
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(Duration::from_millis(500)))?;
        conn.set_write_timeout(Some(Duration::from_millis(500)))?;
        let mut len = [0u8; 2];
        conn.read_exact(&mut len)?;
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut q)?;
        let answer = match resolve(&q, source.names(), self.config.forward) {
            Reply::Answer(a) => a,
            Reply::Drop => return Ok(()),
            Reply::Forward => {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                for u in &self.config.upstreams {
                    let _ = s.send_to(&q, u);
                }
                let mut buf = vec![0u8; 65535];
                let n = s.recv(&mut buf)?;
                buf.truncate(n);
                buf
            }
        };
        conn.write_all(&(answer.len() as u16).to_be_bytes())?;
        conn.write_all(&answer)
    }
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
}
