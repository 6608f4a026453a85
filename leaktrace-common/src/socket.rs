//! Socket families and types as the kernel numbers them, for the sockets an
//! fd entry refers to (include/linux/socket.h, include/linux/net.h).

pub const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const AF_NETLINK: u16 = 16;
pub const AF_PACKET: u16 = 17;

pub const SOCK_STREAM: u16 = 1;
pub const SOCK_DGRAM: u16 = 2;
pub const SOCK_RAW: u16 = 3;
pub const SOCK_SEQPACKET: u16 = 5;

/// The name of a family, `None` for 0 (not known: the kernel's type
/// information was not available when it was acquired).
pub fn family_name(family: u16) -> Option<&'static str> {
    Some(match family {
        0 => return None,
        AF_UNIX => "AF_UNIX",
        AF_INET => "AF_INET",
        AF_INET6 => "AF_INET6",
        AF_NETLINK => "AF_NETLINK",
        AF_PACKET => "AF_PACKET",
        4 => "AF_IPX",
        5 => "AF_APPLETALK",
        9 => "AF_X25",
        15 => "AF_KEY",
        29 => "AF_CAN",
        31 => "AF_BLUETOOTH",
        38 => "AF_ALG",
        40 => "AF_VSOCK",
        44 => "AF_XDP",
        45 => "AF_MCTP",
        _ => "AF_OTHER",
    })
}

/// The name of a socket type, `None` for 0 (not known).
pub fn type_name(kind: u16) -> Option<&'static str> {
    Some(match kind {
        0 => return None,
        SOCK_STREAM => "SOCK_STREAM",
        SOCK_DGRAM => "SOCK_DGRAM",
        SOCK_RAW => "SOCK_RAW",
        4 => "SOCK_RDM",
        SOCK_SEQPACKET => "SOCK_SEQPACKET",
        6 => "SOCK_DCCP",
        10 => "SOCK_PACKET",
        _ => "SOCK_OTHER",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_not_named() {
        assert_eq!(family_name(0), None);
        assert_eq!(type_name(0), None);
        assert_eq!(family_name(AF_INET6), Some("AF_INET6"));
        assert_eq!(type_name(SOCK_DGRAM), Some("SOCK_DGRAM"));
        assert_eq!(family_name(200), Some("AF_OTHER"));
    }
}
