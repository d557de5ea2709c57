//! Peer addresses in Redis's `ip:port@cport` form, as stored in openraft's `BasicNode.addr`:
//! `port` is the node's client port (what `MOVED` names), `cport` its cluster-bus port (what
//! peers dial). An address without `@` is a bare bus address.

/// Redis's fixed distance between a node's client port and its cluster-bus port.
pub const BUS_PORT_OFFSET: u16 = 10_000;

/// Splits `host:port` at the last colon (so `[::1]:7001` keeps its brackets).
fn split_host_port(a: &str) -> Option<(&str, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// The address to dial for a peer: `ip:cport` for `ip:port@cport`; an address without `@`
/// is returned as-is.
pub fn bus_addr(addr: &str) -> String {
    match addr.split_once('@') {
        Some((client, cport)) => match client.rsplit_once(':') {
            Some((host, _)) => format!("{host}:{cport}"),
            // No host in the client part: nothing better to dial than the bus port alone.
            None => format!(":{cport}"),
        },
        None => addr.to_string(),
    }
}

/// The client address `ip:port` of a peer: the part before `@`; for an address without `@`
/// (a bare bus address) the client port is the bus port − 10000, as in Redis. An address whose
/// port cannot be parsed or is below 10000 is returned as-is.
pub fn client_addr(addr: &str) -> String {
    if let Some((client, _)) = addr.split_once('@') {
        return client.to_string();
    }
    match split_host_port(addr) {
        Some((host, port)) if port >= BUS_PORT_OFFSET => {
            format!("{host}:{}", port - BUS_PORT_OFFSET)
        }
        _ => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_form_splits_into_bus_and_client() {
        assert_eq!(bus_addr("127.0.0.1:7001@17001"), "127.0.0.1:17001");
        assert_eq!(client_addr("127.0.0.1:7001@17001"), "127.0.0.1:7001");
        // The announced bus port need not be client port + 10000 (a proxy in between).
        assert_eq!(bus_addr("127.0.0.2:7002@25002"), "127.0.0.2:25002");
        assert_eq!(client_addr("127.0.0.2:7002@25002"), "127.0.0.2:7002");
    }

    #[test]
    fn bare_address_is_the_bus_address() {
        assert_eq!(bus_addr("127.0.0.1:17001"), "127.0.0.1:17001");
        assert_eq!(client_addr("127.0.0.1:17001"), "127.0.0.1:7001");
        assert_eq!(bus_addr("localhost:17003"), "localhost:17003");
        assert_eq!(client_addr("localhost:17003"), "localhost:7003");
    }

    #[test]
    fn ipv6_keeps_brackets() {
        assert_eq!(bus_addr("[::1]:7001@17001"), "[::1]:17001");
        assert_eq!(client_addr("[::1]:7001@17001"), "[::1]:7001");
        assert_eq!(client_addr("[::1]:17001"), "[::1]:7001");
    }

    #[test]
    fn underivable_client_port_is_left_alone() {
        // Port below the offset or unparsable: no client port can be derived.
        assert_eq!(client_addr("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(client_addr("no-port"), "no-port");
        assert_eq!(bus_addr("no-port"), "no-port");
    }
}
