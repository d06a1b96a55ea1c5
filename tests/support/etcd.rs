//! A three-member etcd cluster on loopback ports (Debian: etcd-server), for the HA
//! tests: members can be killed and started again; all killed and their directory
//! removed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub dir: std::path::PathBuf,
    /// Each member's client URL.
    pub urls: Vec<String>,
    members: Vec<Option<Child>>,
    /// Each member's command line, to start it again.
    commands: Vec<Vec<String>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Cluster {
    pub fn start() -> Cluster {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cssc-etcd-{}-{n}", std::process::id()));
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let (mut urls, mut commands) = (Vec::new(), Vec::new());
        for (i, (client, peer)) in ports.iter().enumerate() {
            let url = format!("http://127.0.0.1:{client}");
            let peer = format!("http://127.0.0.1:{peer}");
            commands.push(vec![
                "--name".to_string(),
                format!("m{i}"),
                "--data-dir".into(),
                dir.join(format!("m{i}")).display().to_string(),
                "--listen-client-urls".into(),
                url.clone(),
                "--advertise-client-urls".into(),
                url.clone(),
                "--listen-peer-urls".into(),
                peer.clone(),
                "--initial-advertise-peer-urls".into(),
                peer,
                "--initial-cluster".into(),
                initial.join(","),
                "--initial-cluster-token".into(),
                format!("cssc-{}-{n}", std::process::id()),
                "--heartbeat-interval".into(),
                "100".into(),
                "--election-timeout".into(),
                "1000".into(),
            ]);
            urls.push(url);
        }
        std::fs::create_dir_all(&dir).expect("etcd dir");
        let mut cluster = Cluster {
            dir,
            urls,
            members: vec![None, None, None],
            commands,
        };
        for i in 0..3 {
            cluster.start_member(i);
        }
        cluster.await_healthy();
        cluster
    }

    /// Starts member `i` (again: its data directory is kept).
    pub fn start_member(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("m{i}.log")))
            .expect("log");
        let child = Command::new("etcd")
            .args(&self.commands[i])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian: etcd-server)");
        self.members[i] = Some(child);
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `etcd=URL,URL,URL` for `run --ha`.
    pub fn ha(&self) -> String {
        format!("etcd={}", self.urls.join(","))
    }

    /// Waits until the cluster grants a lease (it has a leader, with quorum).
    pub fn await_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let etcd = csc_runtime::ha::etcd::Etcd::new(self.urls.clone(), Duration::from_millis(500));
        while etcd.grant(5).is_err() {
            assert!(Instant::now() < deadline, "etcd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
