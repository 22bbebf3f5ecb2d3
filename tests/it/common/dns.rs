//! A DNS server on loopback, in the test process, answering TXT queries from records the test
//! publishes while it runs. It speaks the wire protocol over UDP and over TCP on the
//! same port (a resolver falls back to TCP for truncated answers), answers NXDOMAIN for names it
//! does not hold, and keeps a log of the questions it was asked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Zone {
    /// Lower-cased name without the trailing dot → its TXT strings, one record each.
    txt: HashMap<String, Vec<String>>,
    /// Every question asked: (name, record type).
    asked: Vec<(String, RecordType)>,
}

pub struct DnsServer {
    /// UDP and TCP, same port.
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    pub async fn start() -> DnsServer {
        let (udp, tcp) = crate::common::udp_and_tcp_on_one_port().await;
        let addr = udp.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));

        let udp_zone = zone.clone();
        let udp_task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let Ok((len, peer)) = udp.recv_from(&mut buffer).await else {
                    continue;
                };
                if let Some(reply) = answer(&udp_zone, &buffer[..len]) {
                    let _ = udp.send_to(&reply, peer).await;
                }
            }
        });
        let tcp_zone = zone.clone();
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                tokio::spawn(serve_tcp(stream, tcp_zone.clone()));
            }
        });
        DnsServer {
            addr,
            zone,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// Publishes `values` as the TXT records of `name`, replacing any there.
    pub fn set_txt(&self, name: &str, values: &[&str]) {
        self.zone
            .lock()
            .unwrap()
            .txt
            .insert(key(name), values.iter().map(|v| v.to_string()).collect());
    }

    /// The questions asked so far, as (lower-cased name without the final dot, type).
    pub fn asked(&self) -> Vec<(String, RecordType)> {
        self.zone.lock().unwrap().asked.clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn serve_tcp(mut stream: TcpStream, zone: Arc<Mutex<Zone>>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut message = vec![0u8; u16::from_be_bytes(len) as usize];
        if stream.read_exact(&mut message).await.is_err() {
            return;
        }
        let Some(reply) = answer(&zone, &message) else {
            return;
        };
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// The response to one query message, or `None` for something that is not a query.
fn answer(zone: &Mutex<Zone>, bytes: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(bytes).ok()?;
    if request.message_type() != MessageType::Query {
        return None;
    }
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_authoritative(true)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .add_queries(request.queries().iter().cloned());
    if request.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        response.set_edns(edns);
    }
    let Some(query) = request.queries().first() else {
        response.set_response_code(ResponseCode::FormErr);
        return response.to_vec().ok();
    };
    let name = key(&query.name().to_ascii());
    let mut zone = zone.lock().unwrap();
    zone.asked.push((name.clone(), query.query_type()));
    match zone.txt.get(&name) {
        None => {
            response.set_response_code(ResponseCode::NXDomain);
        }
        Some(values) => {
            response.set_response_code(ResponseCode::NoError);
            if matches!(query.query_type(), RecordType::TXT | RecordType::ANY) {
                for value in values {
                    // One character-string holds at most 255 bytes; longer values are split,
                    // as a zone file would.
                    let strings = value
                        .as_bytes()
                        .chunks(255)
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect();
                    // TTL 0: a resolver must not answer a later question from its cache.
                    response.add_answer(Record::from_rdata(
                        query.name().clone(),
                        0,
                        RData::TXT(TXT::new(strings)),
                    ));
                }
            }
        }
    }
    response.to_vec().ok()
}
