//! Which GitLab URLs the service may call on a tenant's behalf (SSRF protection).
//!
//! A tenant-supplied self-managed URL makes this service send requests from inside our
//! network. Only public addresses are reachable unless the operator allowlists a host or a
//! CIDR range. The check runs twice: up front on the URL's shape and IP literals
//! ([`UrlPolicy::check_url`]), and on every DNS answer through [`PolicyResolver`], which is the
//! resolver reqwest connects with, so a name that later rebinds to a private address never
//! gets a connection.
//!
//! Ports are allowed explicitly too: a public URL only on 443 (or the operator's public ports),
//! an allowlisted entry on 443 and
//! 80 unless it names its port (`host:8443`, `10.0.0.0/8:8080`, `[fd00::/8]:*` for any), so
//! allowlisting an internal host does not open its database or admin ports to a tenant's URL.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use ipnet::IpNet;
use url::{Host, Url};

use crate::error::{Error, Result};

/// The ports of an allowlisted entry that names none.
const DEFAULT_PORTS: &[u16] = &[443, 80];
/// The ports a public (not allowlisted) URL may use unless the operator names others.
pub const DEFAULT_PUBLIC_PORTS: &[u16] = &[443];

/// The ports an allowlist entry admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    Default,
    One(u16),
    Any,
}

impl Ports {
    fn allow(self, port: u16) -> bool {
        match self {
            Ports::Default => DEFAULT_PORTS.contains(&port),
            Ports::One(p) => p == port,
            Ports::Any => true,
        }
    }
}

/// Names that reach cloud metadata services without being IP literals.
const METADATA_HOSTS: &[&str] = &["metadata.google.internal", "metadata"];

/// Resolves a host name to addresses. Injectable so tests can script DNS answers.
pub trait Lookup: Send + Sync + 'static {
    fn lookup<'a>(&'a self, host: &'a str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;
}

/// The operating system's resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup<'a>(&'a self, host: &'a str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// The operator's allowlist plus the rules for everything else. Cheap to clone.
#[derive(Clone)]
pub struct UrlPolicy {
    hosts: Arc<[(String, Ports)]>,
    nets: Arc<[(IpNet, Ports)]>,
    public_ports: Arc<[u16]>,
    lookup: Arc<dyn Lookup>,
}

impl fmt::Debug for UrlPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlPolicy")
            .field("hosts", &self.hosts)
            .field("nets", &self.nets)
            .field("public_ports", &self.public_ports)
            .finish_non_exhaustive()
    }
}

impl Default for UrlPolicy {
    /// Public HTTPS only, nothing allowlisted.
    fn default() -> Self {
        UrlPolicy {
            hosts: Arc::from(Vec::new()),
            nets: Arc::from(Vec::new()),
            public_ports: Arc::from(DEFAULT_PUBLIC_PORTS),
            lookup: Arc::new(SystemLookup),
        }
    }
}

impl UrlPolicy {
    /// Parses `GITLAB_URL_ALLOWLIST`: comma-separated host names (`gitlab.internal.example`,
    /// `localhost`) and CIDR ranges (`10.1.0.0/16`, `::1/128`), each optionally with a port
    /// (`gitlab.internal.example:8443`, `10.1.0.0/16:8080`, `[::1/128]:3000`) or `:*` for any;
    /// without one, 443 and 80. A bare IP counts as a single-address range. Blank entries are
    /// ignored, so an empty spec allows nothing extra.
    pub fn from_allowlist(spec: &str) -> Result<Self> {
        let mut hosts = Vec::new();
        let mut nets = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let invalid = || Error::Config { message: format!("invalid GITLAB_URL_ALLOWLIST entry {entry:?}") };
            let (target, ports) = split_port(entry).ok_or_else(invalid)?;
            if let Ok(net) = target.parse::<IpNet>() {
                nets.push((net.trunc(), ports));
            } else if let Ok(ip) = target.parse::<IpAddr>() {
                nets.push((IpNet::from(ip), ports));
            } else if is_host_name(target) {
                hosts.push((normalize_host(target), ports));
            } else {
                return Err(invalid());
            }
        }
        Ok(UrlPolicy { hosts: hosts.into(), nets: nets.into(), ..UrlPolicy::default() })
    }

    /// The ports public (not allowlisted) URLs may use (`GITLAB_URL_PUBLIC_PORTS`), for
    /// self-managed GitLabs served on a public address but another port than 443.
    pub fn with_public_ports(mut self, ports: &[u16]) -> Self {
        self.public_ports = Arc::from(ports);
        self
    }

    /// Replaces the DNS lookup the resolver uses (tests script rebinding with this).
    pub fn with_lookup(mut self, lookup: Arc<dyn Lookup>) -> Self {
        self.lookup = lookup;
        self
    }

    /// Checks what can be checked without DNS: scheme, credentials, host, port, IP literals.
    /// Plain `http` is accepted only for allowlisted hosts, or for names when CIDR ranges are
    /// allowlisted (the resolver then insists on addresses inside those ranges).
    pub fn check_url(&self, url: &Url) -> Result<()> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(blocked("URLs with credentials are not allowed"));
        }
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(blocked(format!("scheme {other:?} is not allowed"))),
        };
        let port = url.port_or_known_default().unwrap_or(0);
        match url.host() {
            None => Err(blocked("URL has no host")),
            Some(Host::Ipv4(ip)) => self.check_literal(IpAddr::V4(ip), https, port),
            Some(Host::Ipv6(ip)) => self.check_literal(IpAddr::V6(ip), https, port),
            Some(Host::Domain(name)) => {
                let name = normalize_host(name);
                if let Some(ports) = self.host_ports(&name) {
                    return if ports.allow(port) { Ok(()) } else { Err(port_refused(port, &name)) };
                }
                if METADATA_HOSTS.contains(&name.as_str()) {
                    return Err(blocked(format!("{name} is a cloud metadata host")));
                }
                if !https && self.nets.is_empty() {
                    return Err(blocked(format!("plain http is not allowed for {name}")));
                }
                // The resolver decides by address; here, whether any address could do.
                let public_may = https && self.public_ports.contains(&port);
                if !public_may && !self.nets.iter().any(|(_, ports)| ports.allow(port)) {
                    return Err(port_refused(port, &name));
                }
                Ok(())
            }
        }
    }

    /// True when `ip` may be connected to on some port: allowlisted, or public.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.ip_allowlisted(ip) || !is_non_public(ip)
    }

    fn check_literal(&self, ip: IpAddr, https: bool, port: u16) -> Result<()> {
        if self.ip_allowlisted(ip) {
            return if self.ip_port_allowlisted(ip, port) { Ok(()) } else { Err(port_refused(port, &ip.to_string())) };
        }
        if !https {
            return Err(blocked(format!("plain http is not allowed for {ip}")));
        }
        if is_non_public(ip) {
            return Err(blocked(format!("{ip} is not a public address")));
        }
        if !self.public_ports.contains(&port) {
            return Err(port_refused(port, &ip.to_string()));
        }
        Ok(())
    }

    fn host_ports(&self, name: &str) -> Option<Ports> {
        self.hosts.iter().find(|(h, _)| h == name).map(|(_, p)| *p)
    }

    fn nets_containing(&self, ip: IpAddr) -> impl Iterator<Item = Ports> + '_ {
        let canonical = canonical(ip);
        self.nets.iter().filter(move |(net, _)| net.contains(&ip) || net.contains(&canonical)).map(|(_, ports)| *ports)
    }

    fn ip_allowlisted(&self, ip: IpAddr) -> bool {
        self.nets_containing(ip).next().is_some()
    }

    fn ip_port_allowlisted(&self, ip: IpAddr, port: u16) -> bool {
        self.nets_containing(ip).any(|ports| ports.allow(port))
    }

    /// Whether `ip` may be connected to on `port` for a name that is not allowlisted itself.
    fn address_allowed(&self, ip: IpAddr, port: u16, require_allowlisted: bool) -> bool {
        if self.ip_allowlisted(ip) {
            return self.ip_port_allowlisted(ip, port);
        }
        !require_allowlisted && !is_non_public(ip) && self.public_ports.contains(&port)
    }

    /// The resolver for a client whose base URL is `base`. With plain `http`, a name that is
    /// not allowlisted itself must resolve into an allowlisted range.
    pub fn resolver_for(&self, base: &Url) -> PolicyResolver {
        PolicyResolver {
            policy: self.clone(),
            require_allowlisted: base.scheme() != "https",
            port: base.port_or_known_default().unwrap_or(0),
        }
    }

    /// Filters a DNS answer down to the addresses this policy permits; refuses when none is left.
    async fn vet(&self, host: &str, require_allowlisted: bool, port: u16) -> Result<Vec<IpAddr>> {
        let name = normalize_host(host);
        let trusted_name = self.host_ports(&name).is_some_and(|ports| ports.allow(port));
        if !trusted_name && METADATA_HOSTS.contains(&name.as_str()) {
            return Err(blocked(format!("{name} is a cloud metadata host")));
        }
        let ips = self.lookup.lookup(&name).await.map_err(|e| Error::Transient {
            attempts: 1,
            message: format!("DNS lookup for {name} failed: {e}"),
            answered: false,
        })?;
        let allowed: Vec<IpAddr> =
            ips.into_iter().filter(|&ip| trusted_name || self.address_allowed(ip, port, require_allowlisted)).collect();
        if allowed.is_empty() {
            return Err(blocked(format!("{name} resolves to no address this service may connect to")));
        }
        Ok(allowed)
    }
}

/// reqwest's DNS resolver, vetting every answer against the [`UrlPolicy`]. Because reqwest
/// connects only to the addresses this returns, the check covers the address actually used.
#[derive(Clone, Debug)]
pub struct PolicyResolver {
    policy: UrlPolicy,
    require_allowlisted: bool,
    /// The base URL's port: the only one this resolver's client connects to (no redirects).
    port: u16,
}

impl PolicyResolver {
    /// Resolves and vets `host`; what reqwest's [`reqwest::dns::Resolve`] impl calls.
    pub async fn resolve_host(&self, host: &str) -> Result<Vec<IpAddr>> {
        self.policy.vet(host, self.require_allowlisted, self.port).await
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let ips = this.resolve_host(name.as_str()).await.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            // Port 0 is replaced by reqwest with the URL's port or the scheme's default.
            let addrs: reqwest::dns::Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

fn port_refused(port: u16, host: &str) -> Error {
    blocked(format!("port {port} is not allowed for {host} (GitLab URLs use 443 unless the operator allows another port)"))
}

/// An allowlist entry's target and ports: `target`, `target:port`, `target:*`, and for IPv6
/// `[target]:port`.
fn split_port(entry: &str) -> Option<(&str, Ports)> {
    let parse = |port: &str| match port {
        "*" => Some(Ports::Any),
        p => p.parse::<u16>().ok().filter(|&p| p != 0).map(Ports::One),
    };
    if let Some(rest) = entry.strip_prefix('[') {
        let (target, after) = rest.split_once(']')?;
        return match after {
            "" => Some((target, Ports::Default)),
            _ => Some((target, parse(after.strip_prefix(':')?)?)),
        };
    }
    // One colon is a port (`host:443`, `10.0.0.0/8:8080`); more is an IPv6 address without one.
    match entry.matches(':').count() {
        1 => {
            let (target, port) = entry.split_once(':')?;
            Some((target, parse(port)?))
        }
        _ => Some((entry, Ports::Default)),
    }
}

fn blocked(reason: impl Into<String>) -> Error {
    Error::Blocked { reason: reason.into() }
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn is_host_name(entry: &str) -> bool {
    !entry.is_empty()
        && entry.len() <= 253
        && entry.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An IPv6 address that embeds an IPv4 one (mapped, compatible, NAT64, 6to4) is judged by the
/// IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        Some(v4)
    } else if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        // IPv4-compatible (::a.b.c.d); `::` and `::1` are IPv6's own.
        Some(tail)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(tail)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else {
        None
    }
}

/// Addresses that are not on the public internet: private, loopback, link-local (cloud
/// metadata lives there), CGNAT, multicast, broadcast, unspecified, reserved and documentation
/// ranges, and IPv6 forms that embed any of these.
pub fn is_non_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_non_public_v4(v4),
        IpAddr::V6(v6) => is_non_public_v6(v6),
    }
}

fn is_non_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
}

fn is_non_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // Site-local (deprecated but still routed internally by some networks).
        || (s[0] & 0xffc0) == 0xfec0
        // Documentation, Teredo and ORCHID ranges.
        || (s[0] == 0x2001 && (s[1] == 0x0db8 || s[1] == 0 || (s[1] & 0xfff0) == 0x0010))
        || s[0] == 0x0100 && s[1..4] == [0, 0, 0]
}
