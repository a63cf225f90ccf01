//! Shared by the benchmark examples that watch DNS answers move (`health_failover`, `drill_convergence`):
//! one `meet.gslb.example A` query for a Polish client (ECS 83.0.0.0/24) and the first address answered.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};

/// The first A record for a Polish client of meet; `None` when nothing (or an answer to another query id)
/// came back within 200 ms.
pub(crate) async fn first_a_for_polish_client(
    sock: &tokio::net::UdpSocket,
    dns: SocketAddr,
    id: u16,
) -> Option<String> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("meet.gslb.example.").unwrap(),
        RecordType::A,
    ));
    let mut e = Edns::new();
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        "83.0.0.0".parse().unwrap(),
        24,
        0,
    )));
    m.set_edns(e);
    sock.send_to(&m.to_vec().unwrap(), dns).await.ok()?;
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    let reply = Message::from_vec(&buf[..n]).ok()?;
    if reply.metadata.id != id {
        return None;
    }
    reply.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0.to_string()),
        _ => None,
    })
}
