//! Configurations for other crates' tests (feature `testing`): one fact, the smallest valid deployment
//! of a kind, written once.

/// The text of [`ONE_REGION`] (a macro, so that [`ONE_REGION_WITH_TLS`] can extend it at compile time).
macro_rules! one_region {
    () => {
        r#"schema-version = 1
[regions.waw]
name = "Warsaw"
lat = 52.23
lon = 21.01
country = "PL"
ipv4 = ["192.0.2.1"]
capacity = 100

[zones."gslb.example"]
ns = ["ns1.gslb.example."]
[zones."gslb.example".soa]
mname = "ns1.gslb.example."
rname = "hostmaster.gslb.example."
[[zones."gslb.example".records]]
name = "ns1"
type = "A"
data = "203.0.113.53"

"#
    };
}

/// One region (`waw`, Warsaw, 192.0.2.1, capacity 100) and one zone (`gslb.example`, with `ns1`): add
/// services, sections and other regions after it.
pub const ONE_REGION: &str = one_region!();

/// [`ONE_REGION`] and a `[tls]` section with one certificate: what an `[acme]` section needs around it.
pub const ONE_REGION_WITH_TLS: &str = concat!(
    one_region!(),
    r#"[tls]
[[tls.certificates]]
cert = "/etc/meridian/c.pem"
key = "/etc/meridian/c.key"
"#
);
