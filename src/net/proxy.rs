//! The userland proxy for what kernel DNAT cannot do: a published port reached on the host's
//! IPv6 loopback `[::1]` (what `localhost` resolves to first on many systems) is forwarded to
//! the container's IPv4 address, as docker-proxy does.
//!
//! It runs in the container's shim on threads of its own (one to accept, two per connection,
//! plain blocking `std::io::copy`), so the shim's poll loop stays as it is. These threads only
//! move bytes between sockets; they never touch paths, so libcontainer's brief `chdir` of the
//! shim on a restart does not concern them. The client's source address is lost, as with any
//! userland proxy; IPv4 traffic keeps going through DNAT, which keeps it.
use std::io;
use std::net::{Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Listens on `[::1]:port` and forwards every connection to `target`. Returns the listening
/// address; the listener lives as long as the process.
pub fn serve_loopback6(port: u16, target: SocketAddr) -> io::Result<SocketAddr> {
    serve(TcpListener::bind((Ipv6Addr::LOCALHOST, port))?, target)
}

/// Forwards every connection `listener` accepts to `target`, on threads of its own.
pub fn serve(listener: TcpListener, target: SocketAddr) -> io::Result<SocketAddr> {
    let local = listener.local_addr()?;
    let port = local.port();
    // Returns once the thread is up and about to wait in `accept`: the shim clones itself for
    // each container start, and a thread still starting (allocating, registering with libc)
    // at that moment could leave a lock held in the clone.
    let started = std::sync::Arc::new(std::sync::Barrier::new(2));
    let up = started.clone();
    std::thread::Builder::new()
        .name(format!("proxy-{port}"))
        .spawn(move || {
            // `up` is kept: dropped here it could be the last reference, a free racing the
            // same clone.
            up.wait();
            for client in listener.incoming().flatten() {
                let _ = std::thread::Builder::new()
                    .name("proxy-conn".into())
                    .spawn(move || {
                        let _ = pipe(client, target);
                    });
            }
        })?;
    started.wait();
    Ok(local)
}

/// Copies both ways until each side has closed its half.
fn pipe(client: TcpStream, target: SocketAddr) -> io::Result<()> {
    let server = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let _ = io::copy(&mut s_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn forwards_both_ways_until_close() {
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = backend.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = backend.accept().unwrap();
            let mut req = [0u8; 4];
            s.read_exact(&mut req).unwrap();
            s.write_all(&[req.as_slice(), b" back"].concat()).unwrap();
        });
        let Ok(local) = serve_loopback6(0, target) else {
            return; // no IPv6 loopback on this machine
        };
        let mut c = TcpStream::connect(local).unwrap();
        c.write_all(b"ping").unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "ping back");
    }
}
