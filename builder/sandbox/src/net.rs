//! The loopback interface of a new network namespace starts down; this brings
//! it up with the `SIOCSIFFLAGS` ioctl, so no `ip` binary is needed.

use std::io;

pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: a datagram socket used only for interface ioctls, closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    let result = set_up(sock);
    // SAFETY: closes the socket opened above.
    unsafe { libc::close(sock) };
    result
}

fn set_up(sock: i32) -> io::Result<()> {
    // SAFETY: ifreq is plain data; an all-zero value is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the ioctls read and write the ifreq they are given.
    unsafe {
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
