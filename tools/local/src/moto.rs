//! moto in server mode, started on 127.0.0.1 on a free port and stopped on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub struct MotoServer {
    pub endpoint: String,
    pub port: u16,
    child: Child,
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl MotoServer {
    /// Starts moto's server from `.venv` (installed by `scripts/bootstrap.sh`) through
    /// `scripts/moto_server.py`, which corrects moto's DynamoDB transactions (see there).
    pub async fn start(root: &Path) -> anyhow::Result<Self> {
        let bin = root.join(".venv/bin/python");
        let launcher = root.join("scripts/moto_server.py");
        if !root.join(".venv/bin/moto_server").exists() {
            bail!("{} not found: run `scripts/bootstrap.sh` (or `make bootstrap`) first", root.join(".venv/bin/moto_server").display());
        }
        let logs = root.join(".local");
        std::fs::create_dir_all(&logs)?;
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let log = std::fs::File::create(logs.join(format!("moto-{port}.log")))?;
            let child = Command::new(&bin)
                .arg(&launcher)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_ALLOW_NONEXISTENT_REGION", "true")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            let mut server = MotoServer { endpoint: format!("http://127.0.0.1:{port}"), port, child };
            match server.wait_ready(Duration::from_secs(60)).await {
                Ok(()) => return Ok(server),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("moto did not start")))
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let start = Instant::now();
        let url = format!("{}/moto-api/data.json", self.endpoint);
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto_server exited early ({status}); see .local/moto-{}.log", self.port);
            }
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("moto_server did not answer on {} within {timeout:?}", self.endpoint)
    }

    /// Clears all of moto's state (`POST /moto-api/reset`).
    pub async fn reset(&self) -> anyhow::Result<()> {
        reqwest::Client::new().post(format!("{}/moto-api/reset", self.endpoint)).send().await?.error_for_status()?;
        Ok(())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
