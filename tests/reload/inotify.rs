//! The inotify instance limit spent at startup: polling meanwhile, filesystem events again once it allows.

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::common::*;
use crate::support::writers::mv_over;
use crate::support::*;

/// The users the proxy runs as here, one per run chosen by process id:
/// users no other test (and no other run of this one, on the same machine
/// at the same time) uses, so spending one's inotify instances (a per-user
/// limit, `fs.inotify.max_user_instances`) touches no other process. Below
/// 65,534 (`nobody`), within the uid map of a user namespace of 65,536.
const INSTANCES_USERS: std::ops::Range<u32> = 54_217..64_217;

/// Every inotify instance `uid` may still create, held until dropped.
/// The kernel counts an instance against the effective user of the thread
/// that creates it: a thread of its own switches to `uid` with the raw
/// system call (libc's `setresuid` would switch every thread of the test
/// process) and creates instances until `inotify_init1` fails with EMFILE.
fn spend_inotify_instances(uid: u32) -> Vec<OwnedFd> {
    std::thread::spawn(move || {
        let keep = libc::uid_t::MAX as libc::c_long;
        // SAFETY: changes this thread's effective user id only; no memory involved.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, keep, uid as libc::c_long, keep) };
        assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
        let mut held = Vec::new();
        for _ in 0..100_000 {
            // SAFETY: no arguments but flags; the descriptor is owned at once.
            let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "inotify_init1: {e}");
                return held;
            }
            // SAFETY: `fd` was just returned by inotify_init1 and nothing else owns it.
            held.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        panic!("100,000 inotify instances and no limit reached");
    })
    .join()
    .unwrap()
}

/// inotify's instance limit spent when the proxy starts (`too many open
/// files` from `inotify_init1`): it polls, `hotproxy_watch_degraded` is 1;
/// once instances are given back the proxy gets one of its own with no
/// restart, the gauge goes back to 0, and a rotation is served by
/// filesystem events (the poll here runs once an hour). It used to poll
/// until the next restart: never tried again.
#[tokio::test]
async fn the_inotify_instance_is_tried_again_once_the_limit_allows() {
    // As another user only: spending the instances of the user running
    // the tests would start the other tests of this binary degraded.
    if fs::metadata("/proc/self").unwrap().uid() != 0 {
        // CI runs as root: there, a skipped case would be a test that
        // cannot fail.
        assert!(
            std::env::var_os("CI").is_none(),
            "the inotify instance case needs root (another user) and CI must run it"
        );
        eprintln!("inotify instance case skipped: running as another user needs root");
        return;
    }
    let span = INSTANCES_USERS.end - INSTANCES_USERS.start;
    let uid = INSTANCES_USERS.start + std::process::id() % span;
    let s = Scene::new();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let ca = TestCa::new("ca");
    let old = ca.server_pair(&["localhost"]);
    s.pair("edge", &old);
    let config = s.admin_config(
        "{ debounce: 50ms, poll_interval: 1h, settle_timeout: 2s }",
        "[]",
        "edge",
        "",
    );
    let held = spend_inotify_instances(uid);
    let mut p = Proxy::start_as(&config, s.dir.path(), uid, uid);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    wait_metric(api, "hotproxy_watch_degraded 1", WAIT).await;
    assert_serves(addr, "localhost", &ca.cert_pem, &old.fingerprint).await;

    drop(held);
    wait_metric(api, "hotproxy_watch_degraded 0", WAIT).await;
    let new = ca.server_pair(&["localhost"]);
    mv_over(&s.path("edge.key"), &new.key_pem);
    mv_over(&s.path("edge.crt"), &new.cert_pem);
    until_served(addr, "localhost", &ca.cert_pem, &new.fingerprint).await;
}
