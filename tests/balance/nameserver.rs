//! A test's own DNS server on loopback: `A` and `AAAA` answers set by the test, queries held or answered SERVFAIL.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

use crate::common::*;
use crate::support::*;

/// A DNS server on a loopback address of its own, port 53 (resolv.conf
/// names no port). Every name's `A` query gets the addresses it is set to
/// (any other type none); while held, queries wait unanswered until
/// [`NameServer::release`]; so do those for a name held alone
/// ([`NameServer::hold_name`]), for ever. Only the proxy asks it
/// ([`Proxy::start_with_resolv_conf`]): nothing leaves the machine.
pub(super) struct NameServer {
    ip: Ipv4Addr,
    socket: Arc<UdpSocket>,
    state: Arc<Mutex<Answering>>,
    task: tokio::task::JoinHandle<()>,
}

struct Answering {
    ips: Vec<IpAddr>,
    hold: bool,
    /// Names whose queries are held whatever `hold` is.
    held_names: Vec<String>,
    /// Queries held unanswered, and who asked.
    held: Vec<(Vec<u8>, SocketAddr)>,
    /// How many queries were answered.
    answered: usize,
    /// Queries are answered SERVFAIL, none held ([`NameServer::fail`]).
    servfail: bool,
    /// Queries are answered NXDOMAIN ([`NameServer::no_such_name`]).
    nxdomain: bool,
}

impl NameServer {
    pub(super) async fn start(ips: &[&str]) -> NameServer {
        // One address per test process: another checkout's tests may run
        // one too.
        let pid = std::process::id();
        let mut bound = None;
        for k in 0..64 {
            let n = pid.wrapping_add(k);
            let ip = Ipv4Addr::new(127, 53, (n >> 8) as u8, (n % 250 + 1) as u8);
            if let Ok(socket) = UdpSocket::bind((ip, 53)).await {
                bound = Some((ip, socket));
                break;
            }
        }
        let (ip, socket) = bound.expect("a loopback address with port 53 free");
        let socket = Arc::new(socket);
        let state = Arc::new(Mutex::new(Answering {
            ips: parse(ips),
            hold: false,
            held_names: Vec::new(),
            held: Vec::new(),
            answered: 0,
            servfail: false,
            nxdomain: false,
        }));
        let (s, st) = (socket.clone(), state.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let query = buf[..n].to_vec();
                let reply = {
                    let mut st = st.lock().unwrap();
                    let named = qname(&query).is_some_and(|n| st.held_names.contains(&n));
                    if st.hold || named {
                        st.held.push((query, from));
                        continue;
                    }
                    st.answered += 1;
                    let failed = st.servfail || st.nxdomain;
                    let ips = if failed { &[][..] } else { &st.ips[..] };
                    let mut reply = answer(&query, ips);
                    // RCODE 2: the lookup fails at once (`EAI_AGAIN`);
                    // RCODE 3: the name does not exist (`EAI_NONAME`).
                    let rcode = if st.servfail { 2 } else { 3 };
                    reply
                        .iter_mut()
                        .filter(|_| failed)
                        .for_each(|r| r[3] |= rcode);
                    reply
                };
                if let Some(reply) = reply {
                    let _ = s.send_to(&reply, from).await;
                }
            }
        });
        NameServer {
            ip,
            socket,
            state,
            task,
        }
    }

    /// A resolv.conf naming this server alone, asked once per query (no
    /// retransmission to count as another).
    pub(super) fn resolv_conf(&self) -> String {
        format!("nameserver {}\noptions timeout:30 attempts:1\n", self.ip)
    }

    /// From now on queries wait unanswered.
    pub(super) fn hold(&self) {
        self.state.lock().unwrap().hold = true;
    }

    /// From now on queries for `name` wait unanswered, for ever.
    pub(super) fn hold_name(&self, name: &str) {
        let name = name.to_ascii_lowercase();
        self.state.lock().unwrap().held_names.push(name);
    }

    /// From now on every query is answered at once, SERVFAIL.
    pub(super) fn fail(&self) {
        let mut st = self.state.lock().unwrap();
        (st.hold, st.servfail) = (false, true);
    }

    /// From now on queries answered are answered with `ips` (none: the
    /// name exists with no address, `NODATA`), no longer failed.
    pub(super) fn answer_with(&self, ips: &[&str]) {
        let mut st = self.state.lock().unwrap();
        (st.ips, st.nxdomain, st.servfail) = (parse(ips), false, false);
    }

    /// From now on every query is answered at once: no such name.
    pub(super) fn no_such_name(&self) {
        self.state.lock().unwrap().nxdomain = true;
    }

    /// How many queries wait unanswered.
    fn held(&self) -> usize {
        self.state.lock().unwrap().held.len()
    }

    /// Wait until a query waits unanswered (`what`: whose).
    pub(super) async fn wait_held(&self, what: &str) {
        wait_until(WAIT, what, || async { self.held() > 0 }).await;
    }

    /// How many queries for `name` wait unanswered.
    pub(super) fn held_for(&self, name: &str) -> usize {
        let st = self.state.lock().unwrap();
        (st.held.iter())
            .filter(|(q, _)| qname(q).as_deref() == Some(name))
            .count()
    }

    /// How many queries were answered.
    pub(super) fn answered(&self) -> usize {
        self.state.lock().unwrap().answered
    }

    /// How many sockets the queries waiting unanswered came from: one
    /// per lookup (a lookup asks `A` and `AAAA` on one socket).
    pub(super) fn held_askers(&self) -> usize {
        let st = self.state.lock().unwrap();
        let mut from: Vec<SocketAddr> = st.held.iter().map(|(_, f)| *f).collect();
        from.sort();
        from.dedup();
        from.len()
    }

    /// Answer the queries held with `ips`; those from now on still wait
    /// (a resolver that answers each query late).
    pub(super) async fn answer_held(&self, ips: &[&str]) {
        let held = std::mem::take(&mut self.state.lock().unwrap().held);
        for (query, from) in held {
            if let Some(reply) = answer(&query, &parse(ips)) {
                self.socket.send_to(&reply, from).await.unwrap();
            }
        }
    }

    /// Answer the queries held, and every one from now on, with `ips`.
    pub(super) async fn release(&self, ips: &[&str]) {
        self.release_as(ips, ips).await;
    }

    /// Answer the queries held with `held`, and every one from now on
    /// with `then`.
    pub(super) async fn release_as(&self, held: &[&str], then: &[&str]) {
        let (held, ips) = {
            let mut st = self.state.lock().unwrap();
            st.hold = false;
            st.ips = parse(then);
            (std::mem::take(&mut st.held), parse(held))
        };
        for (query, from) in held {
            if let Some(reply) = answer(&query, &ips) {
                self.socket.send_to(&reply, from).await.unwrap();
            }
        }
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn parse(ips: &[&str]) -> Vec<IpAddr> {
    ips.iter().map(|ip| ip.parse().unwrap()).collect()
}

/// The name `query` asks about, lower case, without the root's dot.
fn qname(query: &[u8]) -> Option<String> {
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            return Some(labels.join(".").to_ascii_lowercase());
        }
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + len)?).into_owned());
        at += 1 + len;
    }
}

/// The response to `query` (RFC 1035 §4.1): its question, and one record
/// per address of `ips` of the type asked (`A`, or `AAAA`: RFC 3596); none
/// for a malformed query.
fn answer(query: &[u8], ips: &[IpAddr]) -> Option<Vec<u8>> {
    // The question: labels up to the root's empty one, type, class.
    let mut end = 12;
    loop {
        let len = usize::from(*query.get(end)?);
        end += 1 + len;
        if len == 0 {
            break;
        }
    }
    let qtype = u16::from_be_bytes([*query.get(end)?, *query.get(end + 1)?]);
    let question = query.get(12..end + 4)?;
    let records: Vec<Vec<u8>> = (ips.iter())
        .filter_map(|ip| match (qtype, ip) {
            (1, IpAddr::V4(v4)) => Some(v4.octets().to_vec()),
            (28, IpAddr::V6(v6)) => Some(v6.octets().to_vec()),
            _ => None,
        })
        .collect();
    let mut reply = query[..2].to_vec();
    // A response, recursion desired and available, no error; one question.
    reply.extend_from_slice(&[0x81, 0x80, 0, 1]);
    reply.extend_from_slice(&(records.len() as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(question);
    for rdata in records {
        // The question's name (a pointer to offset 12), its type, IN, TTL 0.
        reply.extend_from_slice(&[0xc0, 12]);
        reply.extend_from_slice(&qtype.to_be_bytes());
        reply.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, rdata.len() as u8]);
        reply.extend_from_slice(&rdata);
    }
    Some(reply)
}
