//! The dead-man relay: the only way out of a remote browser's run contexts.
//!
//! The guard judges each request while Chromium holds it (`Fetch.requestPaused`), over the
//! CDP connection. When that connection's client goes away, Chromium lets the requests it
//! held continue before it disposes the contexts (`disposeOnDetach`): a clerk process killed
//! at that instant would let one unjudged request out of a remote browser. A local Chromium
//! dies with clerk; a remote one does not.
//!
//! So every context clerk opens in a remote browser is given this relay as its proxy
//! (`Target.createBrowserContext{proxyServer: "socks5://…", proxyBypassList: "<-loopback>"}`):
//! a SOCKS5 listener inside the clerk process. All of the context's traffic (HTTP, TLS,
//! WebSockets, to loopback too) goes through it. When the process dies the kernel closes
//! the listener and every tunnel with it, so a request Chromium releases afterwards fails
//! (connection refused or reset) instead of reaching the seller center. When clerk notices
//! that the browser's connection dropped, the relay is shut at once for the same reason.
//!
//! The relay is not the guard: it judges nothing and forwards bytes (TLS stays end to end).
//! It accepts connections only from the browser host's addresses, `CONNECT` only (no BIND,
//! no UDP), no authentication (Chromium's SOCKS client has none).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::BrowserError;

/// How long a tunnel's target may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a client may take to say where it wants to go.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running relay. Shut (listener closed, every tunnel dropped) by [`Relay::shut`] or when
/// dropped.
pub struct Relay {
    /// What the browser dials (`HOST:PORT`).
    advertised: String,
    /// The listener's own address.
    local: SocketAddr,
    stop: watch::Sender<bool>,
}

/// Where a relay listens and what the browser is told to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayPlan {
    pub listen: SocketAddr,
    /// `None`: the listener's own address (its port chosen by the kernel).
    pub advertise: Option<String>,
    /// Peers allowed to connect (the browser host's addresses).
    pub allowed: Vec<IpAddr>,
}

impl RelayPlan {
    /// The plan for a remote browser at `endpoint` (`http://HOST:PORT` or a `ws://` URL):
    /// `relay` is what the browser should dial (`HOST:PORT`, from `[[browser]] relay`) and
    /// `relay_listen` where to listen; by default the relay listens, on a port of the
    /// kernel's choosing, on this machine's address that routes to the browser's host, and
    /// the browser is told that address.
    pub fn for_endpoint(
        endpoint: &str,
        relay: Option<&str>,
        relay_listen: Option<&str>,
    ) -> Result<RelayPlan, BrowserError> {
        let url = url::Url::parse(endpoint)
            .map_err(|e| BrowserError::Launch(format!("bad endpoint: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| BrowserError::Launch("the endpoint names no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let resolved: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(&*host, port))
            .map_err(|e| {
                BrowserError::Launch(format!(
                    "cannot resolve the remote browser's host {host}: {e}"
                ))
            })?
            .collect();
        let first = *resolved.first().ok_or_else(|| {
            BrowserError::Launch(format!("the remote browser's host {host} has no address"))
        })?;
        let mut allowed: Vec<IpAddr> = resolved.iter().map(|a| a.ip()).collect();
        // A browser on this very machine may come from any loopback address.
        if allowed.iter().any(|ip| ip.is_loopback()) {
            allowed.push(IpAddr::from([127, 0, 0, 1]));
            allowed.push(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]));
        }
        allowed.dedup();
        let listen = match (relay_listen, relay) {
            (Some(l), _) => parse_addr(l, "relay_listen")?,
            (None, Some(r)) => {
                let wanted = parse_addr_or_host(r)?;
                match wanted {
                    Some(a) => a,
                    None => {
                        return Err(BrowserError::Launch(format!(
                            "[[browser]] relay `{r}` names a host, not an address of this machine: also give relay_listen (the address and port to listen on)"
                        )))
                    }
                }
            }
            (None, None) => SocketAddr::new(route_to(first)?, 0),
        };
        Ok(RelayPlan {
            listen,
            advertise: relay.map(str::to_owned),
            allowed,
        })
    }
}

fn parse_addr(s: &str, what: &str) -> Result<SocketAddr, BrowserError> {
    s.parse().map_err(|_| {
        BrowserError::Launch(format!(
            "[[browser]] {what} `{s}` is not an address and port (e.g. 10.0.0.5:7070)"
        ))
    })
}

/// `Some` when `s` is an `IP:PORT`, `None` when it is `HOST:PORT`.
fn parse_addr_or_host(s: &str) -> Result<Option<SocketAddr>, BrowserError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(Some(a));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(None),
        _ => Err(BrowserError::Launch(format!(
            "[[browser]] relay `{s}` is not HOST:PORT"
        ))),
    }
}

/// This machine's address on the route to `to` (no packet is sent).
fn route_to(to: SocketAddr) -> Result<IpAddr, BrowserError> {
    let any: SocketAddr = if to.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let probe = std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(to).and_then(|()| s.local_addr()))
        .map_err(|e| {
            BrowserError::Launch(format!(
                "no route to the remote browser's host {}: {e}",
                to.ip()
            ))
        })?;
    Ok(probe.ip())
}

impl Relay {
    /// Starts listening. Must be called within a tokio runtime.
    pub async fn start(plan: RelayPlan) -> Result<Relay, BrowserError> {
        let listener = TcpListener::bind(plan.listen).await.map_err(|e| {
            BrowserError::Launch(format!(
                "the relay for the remote browser cannot listen on {}: {e}",
                plan.listen
            ))
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| BrowserError::Launch(format!("relay address: {e}")))?;
        let advertised = plan.advertise.clone().unwrap_or_else(|| local.to_string());
        let (stop, stopped) = watch::channel(false);
        let allowed: Arc<Vec<IpAddr>> = Arc::new(plan.allowed);
        tokio::spawn(accept(listener, allowed, stopped));
        tracing::debug!(%local, %advertised, "relay listening");
        Ok(Relay {
            advertised,
            local,
            stop,
        })
    }

    /// The proxy a run context is given (`socks5://HOST:PORT`).
    pub fn proxy_server(&self) -> String {
        format!("socks5://{}", self.advertised)
    }

    /// The listener's own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops accepting and drops every tunnel now.
    pub fn shut(&self) {
        self.stop.send_replace(true);
    }

    /// Shut already.
    pub fn is_shut(&self) -> bool {
        *self.stop.borrow()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shut();
    }
}

async fn accept(
    listener: TcpListener,
    allowed: Arc<Vec<IpAddr>>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.wait_for(|s| *s) => return,
        };
        let (client, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!("relay accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer_ip = canonical(peer.ip());
        if !allowed.iter().any(|a| canonical(*a) == peer_ip) {
            tracing::warn!(%peer, "relay: connection from an address that is not the browser's host refused");
            continue;
        }
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let mut stopped = stopped;
            tokio::select! {
                r = tunnel(client) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, "relay tunnel: {e}");
                    }
                }
                _ = stopped.wait_for(|s| *s) => {}
            }
        });
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// SOCKS5 replies (RFC 1928 §6).
const SUCCEEDED: u8 = 0;
const GENERAL_FAILURE: u8 = 1;
const NETWORK_UNREACHABLE: u8 = 3;
const HOST_UNREACHABLE: u8 = 4;
const CONNECTION_REFUSED: u8 = 5;
const COMMAND_NOT_SUPPORTED: u8 = 7;
const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;

/// One SOCKS5 `CONNECT` (RFC 1928), then bytes both ways until either side closes.
async fn tunnel(mut client: TcpStream) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let target = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut client)).await {
        Ok(r) => r?,
        Err(_) => return Err(std::io::Error::other("handshake timed out")),
    };
    let Some((host, port)) = target else {
        return Ok(());
    };
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect();
        let mut last = std::io::Error::other("no address");
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    })
    .await;
    let mut upstream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let code = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => CONNECTION_REFUSED,
                std::io::ErrorKind::HostUnreachable => HOST_UNREACHABLE,
                std::io::ErrorKind::NetworkUnreachable => NETWORK_UNREACHABLE,
                _ => HOST_UNREACHABLE,
            };
            reply(&mut client, code).await?;
            return Ok(());
        }
        Err(_) => {
            reply(&mut client, HOST_UNREACHABLE).await?;
            return Ok(());
        }
    };
    let _ = upstream.set_nodelay(true);
    reply(&mut client, SUCCEEDED).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Reads the greeting and the request; `None` when the request was answered with a refusal.
async fn handshake(client: &mut TcpStream) -> std::io::Result<Option<(String, u16)>> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(std::io::Error::other("not SOCKS5"));
    }
    let mut methods = vec![0u8; head[1] as usize];
    client.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        client.write_all(&[5, 0xff]).await?;
        return Ok(None);
    }
    client.write_all(&[5, 0]).await?;
    let mut req = [0u8; 4];
    client.read_exact(&mut req).await?;
    if req[0] != 5 {
        return Err(std::io::Error::other("not SOCKS5"));
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a).await?;
            IpAddr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; len[0] as usize];
            client.read_exact(&mut name).await?;
            match String::from_utf8(name) {
                Ok(n) => n,
                Err(_) => {
                    reply(client, GENERAL_FAILURE).await?;
                    return Ok(None);
                }
            }
        }
        4 => {
            let mut a = [0u8; 16];
            client.read_exact(&mut a).await?;
            IpAddr::from(a).to_string()
        }
        _ => {
            reply(client, ADDRESS_TYPE_NOT_SUPPORTED).await?;
            return Ok(None);
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    if req[1] != 1 {
        reply(client, COMMAND_NOT_SUPPORTED).await?;
        return Ok(None);
    }
    Ok(Some((host, u16::from_be_bytes(port))))
}

async fn reply(client: &mut TcpStream, code: u8) -> std::io::Result<()> {
    client.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn socks_connect(relay: SocketAddr, to: SocketAddr) -> std::io::Result<(TcpStream, u8)> {
        let mut s = TcpStream::connect(relay).await?;
        s.write_all(&[5, 1, 0]).await?;
        let mut m = [0u8; 2];
        s.read_exact(&mut m).await?;
        assert_eq!(m, [5, 0]);
        let SocketAddr::V4(v4) = to else { panic!("v4") };
        let mut req = vec![5, 1, 0, 1];
        req.extend_from_slice(&v4.ip().octets());
        req.extend_from_slice(&v4.port().to_be_bytes());
        s.write_all(&req).await?;
        let mut rep = [0u8; 10];
        s.read_exact(&mut rep).await?;
        Ok((s, rep[1]))
    }

    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        a
    }

    #[tokio::test]
    async fn tunnels_bytes_and_dies_when_shut() {
        let target = echo().await;
        let plan = RelayPlan::for_endpoint("http://127.0.0.1:9222", None, None).unwrap();
        assert_eq!(plan.listen.ip(), IpAddr::from([127, 0, 0, 1]));
        let relay = Relay::start(plan).await.unwrap();
        assert!(relay.proxy_server().starts_with("socks5://127.0.0.1:"));
        let (mut s, code) = socks_connect(relay.local_addr(), target).await.unwrap();
        assert_eq!(code, SUCCEEDED);
        s.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        // Shut: the open tunnel ends and new connections are refused.
        relay.shut();
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(matches!(ended, Ok(Ok(0)) | Ok(Err(_))), "{ended:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(TcpStream::connect(relay.local_addr()).await.is_err());
    }

    #[tokio::test]
    async fn refuses_strangers_and_unsupported_commands() {
        let target = echo().await;
        // Only 10.9.9.9 may connect: this test's loopback connection is dropped unanswered.
        let relay = Relay::start(RelayPlan {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            allowed: vec!["10.9.9.9".parse().unwrap()],
        })
        .await
        .unwrap();
        assert!(socks_connect(relay.local_addr(), target).await.is_err());
        // BIND (2) is refused with "command not supported".
        let relay =
            Relay::start(RelayPlan::for_endpoint("ws://127.0.0.1:1/x", None, None).unwrap())
                .await
                .unwrap();
        let mut s = TcpStream::connect(relay.local_addr()).await.unwrap();
        s.write_all(&[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80])
            .await
            .unwrap();
        let mut rep = [0u8; 12];
        s.read_exact(&mut rep).await.unwrap();
        assert_eq!(rep[..2], [5, 0]);
        assert_eq!(rep[3], COMMAND_NOT_SUPPORTED);
        // A closed port: "connection refused", not a tunnel.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let (_s, code) = socks_connect(relay.local_addr(), closed).await.unwrap();
        assert_eq!(code, CONNECTION_REFUSED);
    }

    #[test]
    fn plans_name_what_is_wrong() {
        let p =
            RelayPlan::for_endpoint("http://127.0.0.1:9222", Some("127.0.0.1:7070"), None).unwrap();
        assert_eq!(p.listen, "127.0.0.1:7070".parse().unwrap());
        assert_eq!(p.advertise.as_deref(), Some("127.0.0.1:7070"));
        let e = RelayPlan::for_endpoint("http://127.0.0.1:9222", Some("clerk-1:7070"), None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("relay_listen"), "{e}");
        let p = RelayPlan::for_endpoint(
            "http://127.0.0.1:9222",
            Some("clerk-1:7070"),
            Some("0.0.0.0:7070"),
        )
        .unwrap();
        assert_eq!(p.listen, "0.0.0.0:7070".parse().unwrap());
        assert_eq!(p.advertise.as_deref(), Some("clerk-1:7070"));
        let e = RelayPlan::for_endpoint("http://127.0.0.1:9222", Some("nope"), None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("HOST:PORT"), "{e}");
    }
}
