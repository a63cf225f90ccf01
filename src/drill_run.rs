//! `meridian drill run`: proves failover before it is needed. It reads what clients get now (DNS answers
//! for sample client locations, asked of a DNS server with EDNS Client Subnet over TCP — never rate
//! limited —, and which region proxies serve from, by their `x-meridian-region` header), starts a drill,
//! watches every observer that was served from the drilled region until it moves, rolls the drill back,
//! and watches them return — reporting how long each took.
//!
//! What a drill is (`DrillSpec`) is defined here and shared with `meridian drill start`.
//!
//! On Ctrl-C it rolls back (stops the drill) and exits non-zero. If it is killed outright, the drill
//! still ends at its expiry: every reader enforces it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use meridian_admin::api::{ChangeMeta, DrillModeText, DrillStarted, DrillStopped, StartDrill, Status};
use meridian_admin::client::{AdminClient, get_header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::admin_args::AdminConnArgs;
use crate::admin_args::{call_as, get_status};
use crate::author::author;
use crate::durations::{human_ms, parse_duration};

/// What a drill does and for how long (shared by `drill start` and `drill run`).
#[derive(clap::Args, Clone)]
pub(crate) struct DrillSpec {
    /// The region drilled.
    #[arg(long, value_name = "REGION")]
    pub(crate) region: String,
    /// down (as if health checks failed), drain, or capacity=PCT.
    #[arg(long, value_name = "MODE", value_parser = str::parse::<DrillModeText>)]
    pub(crate) mode: DrillModeText,
    /// How long: 90s, 5m, 1h30m (at most 72h). The drill ends then even if nobody stops it.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Why (recorded in the drill and the audit log).
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: String,
    /// The drill's id (default: REGION-MODE-STARTMS).
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// Start it even if a safety check refuses.
    #[arg(long)]
    pub(crate) force: bool,
}

impl DrillSpec {
    pub(crate) fn body(&self) -> StartDrill {
        StartDrill {
            region: self.region.clone(),
            mode: self.mode,
            duration_ms: self.duration.as_millis() as u64,
            id: self.id.clone(),
            meta: ChangeMeta {
                author: Some(author()),
                reason: Some(self.reason.clone()),
                expect_revision: None,
                force: self.force,
            },
        }
    }
}

/// Sample clients (address in the bundled database's country) when no --client is given.
const SAMPLES: &[(&str, &str)] = &[
    ("PL", "83.0.0.1"),
    ("DE", "91.0.0.1"),
    ("GB", "81.2.69.142"),
    ("CA", "24.48.0.1"),
    ("US", "8.8.8.8"),
];

/// Arguments of `meridian drill run`.
#[derive(clap::Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    spec: DrillSpec,
    /// A Meridian DNS server to ask (ADDR:PORT), with EDNS Client Subnet for each client.
    #[arg(long, value_name = "ADDR")]
    dns: Option<SocketAddr>,
    /// A client address to ask for (repeatable) [default: sample clients in PL, DE, GB, CA and US].
    #[arg(long = "client", value_name = "IP")]
    clients: Vec<IpAddr>,
    /// The service to ask for: name or hostname [default: the configuration's first service].
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// A proxy URL to request (repeatable); the region it served from is read from `x-meridian-region`.
    #[arg(long = "proxy", value_name = "URL")]
    proxies: Vec<String>,
    /// Host header for the proxy requests [default: the service's hostname].
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Give up waiting for clients to move (or return) after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Keep the drill on this long after everything moved, before rolling back.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    hold: Option<Duration>,
    /// Time between observations.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "20ms")]
    interval: Duration,
    #[command(flatten)]
    conn: AdminConnArgs,
}

#[derive(Clone, Debug)]
enum Target {
    Dns { ip: IpAddr },
    Proxy { url: String },
}

struct Observer {
    label: String,
    target: Target,
    baseline: String,
    affected: bool,
    moved: Option<(Duration, String)>,
    returned: Option<Duration>,
}

struct Env {
    dns: Option<SocketAddr>,
    hostname: String,
    host_header: String,
    /// Address -> region id.
    addresses: BTreeMap<IpAddr, String>,
    ca_file: Option<std::path::PathBuf>,
}

/// What a DNS query for `hostname` with ECS `client` returns, as region ids (`waw,fra`), or why not.
async fn ask_dns(server: SocketAddr, hostname: &str, client: IpAddr, env: &Env) -> Result<String, String> {
    let name = Name::from_ascii(format!("{}.", hostname.trim_end_matches('.'))).map_err(|e| e.to_string())?;
    let rtype = if client.is_ipv4() {
        RecordType::A
    } else {
        RecordType::AAAA
    };
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name, rtype));
    let mut edns = Edns::new();
    let prefix = if client.is_ipv4() { 24 } else { 56 };
    edns.options_mut()
        .insert(EdnsOption::Subnet(ClientSubnet::new(client, prefix, 0)));
    m.set_edns(edns);
    let wire = m.to_vec().map_err(|e| e.to_string())?;
    let exchange = async {
        let mut tcp = TcpStream::connect(server).await?;
        let _ = tcp.set_nodelay(true);
        let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&wire);
        tcp.write_all(&framed).await?;
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).await?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tcp.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| "no DNS answer within 2 s".to_owned())?
        .map_err(|e| format!("DNS over TCP to {server}: {e}"))?;
    let reply = Message::from_vec(&buf).map_err(|e| format!("bad DNS reply: {e}"))?;
    if reply.metadata.response_code != ResponseCode::NoError {
        return Ok(reply.metadata.response_code.to_string().to_uppercase());
    }
    let mut regions: Vec<String> = Vec::new();
    for r in &reply.answers {
        let ip = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        let region = env.addresses.get(&ip).cloned().unwrap_or_else(|| ip.to_string());
        if !regions.contains(&region) {
            regions.push(region);
        }
    }
    if regions.is_empty() {
        return Ok("no answer".to_owned());
    }
    Ok(regions.join(","))
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        & 0xffff) as u16
}

async fn observe(t: &Target, env: &Env) -> Result<String, String> {
    match t {
        Target::Dns { ip } => match env.dns {
            Some(server) => ask_dns(server, &env.hostname, *ip, env).await,
            None => Err("no --dns".to_owned()),
        },
        Target::Proxy { url } => {
            let (status, region) = get_header(
                url,
                Some(&env.host_header),
                "x-meridian-region",
                env.ca_file.as_deref(),
                Duration::from_secs(2),
            )
            .await?;
            Ok(region.unwrap_or_else(|| format!("HTTP {status} without x-meridian-region")))
        }
    }
}

fn serves_from(observation: &str, region: &str) -> bool {
    observation.split(',').any(|r| r == region)
}

/// A valid observation that names some region (not an error, not "no answer").
fn is_answer(observation: &str, env: &Env) -> bool {
    observation
        .split(',')
        .all(|r| env.addresses.values().any(|known| known == r))
}

enum Phase {
    Failover,
    Return,
}

/// Observes until every affected observer has moved (or returned); false on timeout.
async fn watch(
    observers: &mut [Observer],
    env: &Env,
    region: &str,
    phase: &Phase,
    start: Instant,
    args: &RunArgs,
) -> bool {
    let mut last_note = Instant::now();
    loop {
        let pending: Vec<usize> = observers
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                o.affected
                    && match phase {
                        Phase::Failover => o.moved.is_none(),
                        Phase::Return => o.returned.is_none(),
                    }
            })
            .map(|(i, _)| i)
            .collect();
        if pending.is_empty() {
            return true;
        }
        if start.elapsed() > args.timeout {
            for &i in &pending {
                println!(
                    "  {:<28} did not {} within {}",
                    observers[i].label,
                    match phase {
                        Phase::Failover => "move",
                        Phase::Return => "return",
                    },
                    human_ms(args.timeout.as_millis() as u64)
                );
            }
            return false;
        }
        let results = observe_all(pending.iter().map(|&i| observe(&observers[i].target, env))).await;
        let at = start.elapsed();
        for (&i, result) in pending.iter().zip(results) {
            let o = &mut observers[i];
            let Ok(now) = result else { continue };
            match phase {
                Phase::Failover => {
                    if !serves_from(&now, region) && is_answer(&now, env) {
                        println!(
                            "  {:<28} {} -> {}   moved after {}",
                            o.label,
                            o.baseline,
                            now,
                            human_ms(at.as_millis() as u64)
                        );
                        o.moved = Some((at, now));
                    }
                }
                Phase::Return => {
                    if now == o.baseline {
                        println!(
                            "  {:<28} back to {}   after {}",
                            o.label,
                            now,
                            human_ms(at.as_millis() as u64)
                        );
                        o.returned = Some(at);
                    }
                }
            }
        }
        if last_note.elapsed() >= Duration::from_secs(1) {
            last_note = Instant::now();
            println!(
                "  ... waiting for {} observer(s), {} elapsed",
                pending.len(),
                human_ms(start.elapsed().as_millis() as u64)
            );
        }
        tokio::time::sleep(args.interval).await;
    }
}

/// Runs the observations one after the other (a handful, each a loopback or LAN round trip).
async fn observe_all<F: Future<Output = T>, T>(futures: impl Iterator<Item = F>) -> Vec<T> {
    let mut out = Vec::new();
    for f in futures {
        out.push(f.await);
    }
    out
}

async fn stop(client: &AdminClient, id: &str, why: &str) -> anyhow::Result<()> {
    let body = ChangeMeta {
        author: Some(author()),
        reason: Some(why.to_owned()),
        ..ChangeMeta::default()
    };
    call_as::<_, DrillStopped>(client, "DELETE", &format!("/v1/drills/{id}"), &body)
        .await
        .map(|_| ())
}

pub(crate) async fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    if args.dns.is_none() && args.proxies.is_empty() {
        bail!("nothing to watch: give --dns ADDR (and --client IP...) and/or --proxy URL");
    }
    let client = args.conn.client()?;
    let status = get_status(&client).await?;
    let region = &args.spec.region;
    let (env, service) = environment(args, &status)?;
    println!("before the drill ({} for {service}):", env.hostname);
    let mut observers = baselines(targets(args)?, &env, region).await?;

    let t0 = Instant::now();
    let started: DrillStarted = call_as(&client, "POST", "/v1/drills", &args.spec.body()).await?;
    let id = started.id;
    println!(
        "\ndrill {id} started: {} {} (expires in {} whatever happens to this command); watching clients move...",
        args.spec.mode,
        region,
        human_ms(started.drill.remaining_ms)
    );

    let interrupted = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::pin!(interrupted);
    let failover_ok = tokio::select! {
        ok = watch(&mut observers, &env, region, &Phase::Failover, t0, args) => ok,
        () = &mut interrupted => {
            return interrupted_exit(&client, &id).await;
        }
    };
    if let Some(hold) = args.hold {
        println!("holding the drill for {}", human_ms(hold.as_millis() as u64));
        tokio::select! {
            () = tokio::time::sleep(hold) => {}
            () = &mut interrupted => return interrupted_exit(&client, &id).await,
        }
    }
    println!("\nrolling back (stopping drill {id}); watching clients return...");
    let t1 = Instant::now();
    stop(&client, &id, "drill run: rollback").await?;
    let return_ok = tokio::select! {
        ok = watch(&mut observers, &env, region, &Phase::Return, t1, args) => ok,
        () = &mut interrupted => false,
    };
    Ok(summary(&observers, failover_ok, return_ok))
}

/// What the observations are compared against, from the node's status: the service's hostname and
/// every region's addresses; and the service's name. Errors name the known regions or services.
fn environment(args: &RunArgs, status: &Status) -> anyhow::Result<(Env, String)> {
    let region = &args.spec.region;
    if !status.regions.iter().any(|r| r.id == *region) {
        let known: Vec<&str> = status.regions.iter().map(|r| r.id.as_str()).collect();
        bail!("unknown region {region:?} (known: {})", known.join(", "));
    }
    let services = &status.services;
    let service = match &args.service {
        Some(s) => services
            .iter()
            .find(|x| x.name == *s || x.hostname == s.trim_end_matches('.'))
            .ok_or_else(|| {
                let known: Vec<&str> = services.iter().map(|x| x.name.as_str()).collect();
                anyhow!("unknown service {s:?} (known: {})", known.join(", "))
            })?,
        None => services
            .first()
            .ok_or_else(|| anyhow!("the configuration has no services"))?,
    };
    let hostname = service.hostname.clone();
    let mut addresses = BTreeMap::new();
    for r in &status.regions {
        for a in r.ipv4.iter().chain(&r.ipv6) {
            if let Ok(ip) = a.parse::<IpAddr>() {
                addresses.insert(ip, r.id.clone());
            }
        }
    }
    let env = Env {
        dns: args.dns,
        host_header: args.host.clone().unwrap_or_else(|| hostname.clone()),
        hostname,
        addresses,
        ca_file: None,
    };
    Ok((env, service.name.clone()))
}

/// The observers to watch: DNS answers for each client (the samples without --client), then each proxy.
fn targets(args: &RunArgs) -> anyhow::Result<Vec<(String, Target)>> {
    let mut targets: Vec<(String, Target)> = Vec::new();
    if args.dns.is_some() {
        if args.clients.is_empty() {
            for (cc, ip) in SAMPLES {
                let ip: IpAddr = ip.parse().context("sample client")?;
                targets.push((format!("dns {cc} {ip}"), Target::Dns { ip }));
            }
        } else {
            for ip in &args.clients {
                targets.push((format!("dns {ip}"), Target::Dns { ip: *ip }));
            }
        }
    }
    for url in &args.proxies {
        targets.push((format!("proxy {url}"), Target::Proxy { url: url.clone() }));
    }
    Ok(targets)
}

/// What each target gets before the drill, printed; an error unless some observer is served from
/// `region` (nothing would show the failover).
async fn baselines(targets: Vec<(String, Target)>, env: &Env, region: &str) -> anyhow::Result<Vec<Observer>> {
    let mut observers = Vec::new();
    for (label, target) in targets {
        let baseline = observe(&target, env).await.map_err(|e| anyhow!("{label}: {e}"))?;
        let affected = serves_from(&baseline, region);
        println!(
            "  {label:<28} {baseline}{}",
            if affected {
                ""
            } else {
                "   (not served from the drilled region: not expected to move)"
            }
        );
        observers.push(Observer {
            label,
            target,
            baseline,
            affected,
            moved: None,
            returned: None,
        });
    }
    if !observers.iter().any(|o| o.affected) {
        bail!(
            "no observer is served from {region} now: nothing would show the failover (pick --client addresses near it)"
        );
    }
    Ok(observers)
}

/// Prints how many moved and returned, and how slowly; the verdict as the exit code.
fn summary(observers: &[Observer], failover_ok: bool, return_ok: bool) -> ExitCode {
    let moved: Vec<Duration> = observers
        .iter()
        .filter_map(|o| o.moved.as_ref().map(|m| m.0))
        .collect();
    let returned: Vec<Duration> = observers.iter().filter_map(|o| o.returned).collect();
    let affected = observers.iter().filter(|o| o.affected).count();
    let max = |v: &[Duration]| {
        v.iter()
            .max()
            .map_or("-".to_owned(), |d| human_ms(d.as_millis() as u64))
    };
    println!(
        "\nsummary: failover {}/{affected} moved (slowest {}); return {}/{affected} back (slowest {})",
        moved.len(),
        max(&moved),
        returned.len(),
        max(&returned)
    );
    if failover_ok && return_ok {
        println!("PASS: failover and return observed");
        ExitCode::SUCCESS
    } else {
        println!(
            "FAIL: {}",
            if failover_ok {
                "not every client returned"
            } else {
                "not every client moved"
            }
        );
        ExitCode::FAILURE
    }
}

async fn interrupted_exit(client: &AdminClient, id: &str) -> anyhow::Result<ExitCode> {
    eprintln!("\ninterrupted: rolling back drill {id}");
    match stop(client, id, "drill run interrupted").await {
        Ok(()) => eprintln!("drill {id} stopped"),
        Err(e) => eprintln!("could not stop drill {id} ({e:#}); it ends at its expiry anyway"),
    }
    Ok(ExitCode::from(130))
}
