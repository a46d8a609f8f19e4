//! The nftables ruleset generation: a counter the kernel bumps on every ruleset commit, by
//! anyone. While it has not moved, a ruleset berth has verified is still the same ruleset, so
//! the verification (an `nft -j list ruleset`, 6 ms or more) need not be repeated.
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;

/// The current ruleset generation, or `None` when the kernel does not say (no nf_tables).
pub fn current() -> Option<u32> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .ok()?;
    let kernel = NetlinkAddr::new(0, 0);
    sendto(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &request(),
        &kernel,
        MsgFlags::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 512];
    let n = recv(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &mut buf,
        MsgFlags::empty(),
    )
    .ok()?;
    parse(&buf[..n])
}

/// `NFT_MSG_GETGEN`: a netlink header and an `nfgenmsg` (family unspecified, version 0).
fn request() -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..4].copy_from_slice(&20u32.to_ne_bytes());
    m[4..6].copy_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN).to_ne_bytes());
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes());
    m
}

/// The `NFTA_GEN_ID` of an `NFT_MSG_NEWGEN` answer.
fn parse(msg: &[u8]) -> Option<u32> {
    let len = u32::from_ne_bytes(msg.get(0..4)?.try_into().ok()?) as usize;
    let kind = u16::from_ne_bytes(msg.get(4..6)?.try_into().ok()?);
    if kind == NLMSG_ERROR || kind != (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN) {
        return None;
    }
    // Attributes follow the 16-byte header and the 4-byte nfgenmsg, each 4-byte aligned.
    let mut at = 20;
    let end = len.min(msg.len());
    while at + 4 <= end {
        let alen = u16::from_ne_bytes(msg[at..at + 2].try_into().ok()?) as usize;
        let atype = u16::from_ne_bytes(msg[at + 2..at + 4].try_into().ok()?) & 0x3fff;
        if alen < 4 || at + alen > end {
            return None;
        }
        if atype == NFTA_GEN_ID && alen == 8 {
            return Some(u32::from_be_bytes(msg[at + 4..at + 8].try_into().ok()?));
        }
        at += (alen + 3) & !3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_generation_from_an_answer() {
        let mut m = vec![0u8; 20];
        m[4..6].copy_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN).to_ne_bytes());
        // NFTA_GEN_PROC_PID first, then NFTA_GEN_ID.
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&77u32.to_be_bytes());
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NFTA_GEN_ID.to_ne_bytes());
        m.extend_from_slice(&4242u32.to_be_bytes());
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse(&m), Some(4242));
        m[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse(&m), None);
        assert_eq!(parse(&m[..10]), None);
    }

    #[test]
    #[allow(clippy::print_stderr)]
    fn the_kernel_answers_with_a_generation_that_moves_on_a_commit() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root for nftables");
            return;
        }
        let Some(before) = current() else {
            eprintln!("skipped: no nf_tables in this kernel");
            return;
        };
        let table = format!("berth_gen_test_{}", std::process::id());
        let nft = |args: &[&str]| {
            std::process::Command::new("nft")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !nft(&["add", "table", "inet", &table]) {
            eprintln!("skipped: nft not usable");
            return;
        }
        let after = current();
        nft(&["delete", "table", "inet", &table]);
        assert!(after.is_some_and(|a| a != before), "{before} -> {after:?}");
    }
}
