//! A host at a public address, for tests of the controller's refusal of private ones:
//! a network namespace of the test's own, joined to this one by a veth pair carrying a
//! /30 of public address space. Traffic to it goes to the namespace and nowhere else
//! (the /30 is a connected route on the veth), and what listens there listens only
//! inside the namespace.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};

pub struct PublicHost {
    name: String,
    link: String,
    /// The namespace's address.
    pub addr: Ipv4Addr,
    servers: Vec<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small HTTP server: answers every POST 200 and appends `path id body` lines to a file.
const RECEIVER: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
out = sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(out, "a") as f:
            f.write("%s %s %s\n" % (self.path, self.headers.get("X-Fleetgate-Delivery", "-"), body.decode(errors="replace").replace("\n", " ")))
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
HTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"#;

impl PublicHost {
    /// A namespace at a public address of its own (unique per test process and call).
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU8, Ordering};
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("fgpub{}-{n}", pid % 100_000);
        let link = format!("fgp{}{n}", pid % 100_000);
        let peer = format!("{link}n");
        // 44.x.y.0/30, from the test's pid: public space, used on this veth only.
        let (x, y) = ((pid % 250) as u8 + 1, (n % 60) * 4);
        let host = Ipv4Addr::new(44, x, y, 1);
        let addr = Ipv4Addr::new(44, x, y, 2);
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &link]);
        ip(&["link", "set", &link, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{addr}/30"), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        Self {
            name,
            link,
            addr,
            servers: Vec::new(),
        }
    }

    /// Starts an HTTP receiver on `port` inside the namespace; each request it accepts
    /// is a line of `log`: path, delivery id and body.
    pub fn receiver(&mut self, port: u16, log: &std::path::Path) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-c", RECEIVER])
            .arg(port.to_string())
            .arg(log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the receiver starts");
        self.servers.push(child);
        // Up when it answers.
        for _ in 0..100 {
            let up = std::net::TcpStream::connect_timeout(
                &(self.addr, port).into(),
                std::time::Duration::from_millis(200),
            )
            .is_ok();
            if up {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the receiver in {} did not come up", self.name);
    }
}

impl Drop for PublicHost {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
