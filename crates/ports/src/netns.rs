//! Entering a named network namespace (`ip netns add NAME`) from one thread: how tools and
//! tests talk to the peers of a port that lives in another namespace, without shelling out.

use std::io;
use std::os::fd::AsRawFd;

/// Moves the calling thread (only this thread) into the network namespace `name`, as created by
/// `ip netns add` (its handle is `/var/run/netns/NAME`). Sockets created afterwards on this
/// thread live in that namespace.
pub fn enter(name: &str) -> io::Result<()> {
    if name.contains('/') || name.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad netns name",
        ));
    }
    let f = std::fs::File::open(format!("/var/run/netns/{name}"))?;
    // SAFETY: `f` is an open namespace file descriptor for the duration of the call; setns only
    // changes this thread's network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn refuses_paths_and_missing_namespaces() {
        assert!(super::enter("../etc").is_err());
        assert!(super::enter("").is_err());
        assert!(super::enter("fwd-no-such-namespace-xyz").is_err());
    }
}
