//! Embedded PostgreSQL: with no `DATABASE_URL`, run a private cluster from
//! the system's PostgreSQL server binaries in `$PACA_DATA_DIR/pg`, reachable
//! only through a Unix socket inside that directory.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const INSTALL_HINT: &str = "no PostgreSQL server binaries (initdb, pg_ctl) were found on PATH or \
under /usr/lib/postgresql/*/bin. Install the server (Debian/Ubuntu: `apt-get install postgresql`; \
Fedora/RHEL: `dnf install postgresql-server`; Arch: `pacman -S postgresql`; macOS: `brew install \
postgresql`), or set DATABASE_URL to an existing PostgreSQL 14+ database.";

pub struct Embedded {
    bin: PathBuf,
    dir: PathBuf,
    /// The OS user to run PostgreSQL as (it refuses to run as root).
    run_as: Option<(u32, u32)>,
    /// True when this process started the cluster and should stop it.
    started_here: bool,
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin)
}

fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// `(uid, gid)` of a system user, from /etc/passwd.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == name)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

impl Embedded {
    pub fn new(data_dir: &Path) -> Result<Self> {
        let bin = find_bin_dir().ok_or_else(|| anyhow::anyhow!(INSTALL_HINT))?;
        let dir = data_dir.join("pg");
        let run_as = if current_uid() == 0 {
            Some(lookup_user("postgres").ok_or_else(|| {
                anyhow::anyhow!(
                    "running as root, and PostgreSQL refuses to run as root; the embedded cluster \
                     runs as the `postgres` system user, which does not exist here. Install the \
                     PostgreSQL server package (it creates that user) or run paca as a normal user."
                )
            })?)
        } else {
            None
        };
        Ok(Self {
            bin,
            dir,
            run_as,
            started_here: false,
        })
    }

    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        // Locale-independent output and no surprises from the caller's env.
        cmd.env("LC_ALL", "C").env_remove("PGDATA");
        cmd
    }

    /// Every parent of the cluster directory must be traversable by the
    /// user PostgreSQL runs as; say which one is not, instead of letting
    /// initdb fail with a bare "permission denied".
    fn check_reachable(&self) -> Result<()> {
        let Some((uid, _)) = self.run_as else {
            return Ok(());
        };
        let mut current = self.dir.parent();
        while let Some(dir) = current {
            if let Ok(meta) = std::fs::metadata(dir) {
                let mode = meta.permissions().mode();
                if meta.uid() != uid && mode & 0o001 == 0 {
                    bail!(
                        "the embedded PostgreSQL runs as the `postgres` user (PostgreSQL refuses to \
                         run as root), and it cannot reach {} because {} has mode {:o}. Set \
                         PACA_DATA_DIR to a directory it can reach (for example /var/lib/paca), \
                         or `chmod o+x {}`, or set DATABASE_URL.",
                        self.dir.display(),
                        dir.display(),
                        mode & 0o777,
                        dir.display()
                    );
                }
            }
            current = dir.parent();
        }
        Ok(())
    }

    fn prepare_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&self.dir, Some(uid), Some(gid))
                .with_context(|| format!("chown {} to postgres", self.dir.display()))?;
        }
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    }

    fn initialized(&self) -> bool {
        self.dir.join("PG_VERSION").is_file()
    }

    pub fn running(&self) -> bool {
        self.command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Initialises the cluster on first use and starts it unless it is
    /// already running (e.g. a server is up while a CLI command runs).
    pub fn start(&mut self) -> Result<()> {
        self.check_reachable()?;
        if !self.initialized() {
            self.prepare_dir()?;
            eprintln!("initialising embedded PostgreSQL in {}", self.dir.display());
            let output = self
                .command("initdb")
                .arg("-D")
                .arg(&self.dir)
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
                .output()
                .context("running initdb")?;
            if !output.status.success() {
                bail!(
                    "initdb failed:\n{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        if self.running() {
            return Ok(());
        }
        // No TCP listener: only processes that can reach the socket in the
        // 0700 data directory can connect, which makes trust auth safe.
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c max_connections=100",
            self.dir.display()
        );
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .context("running pg_ctl start")?;
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            bail!(
                "could not start the embedded PostgreSQL:\n{}{}\nserver.log:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        self.started_here = true;
        Ok(())
    }

    /// Stops the cluster if this process started it.
    pub fn stop(&mut self) {
        if !self.started_here {
            return;
        }
        let result = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w", "stop"])
            .output();
        match result {
            Ok(o) if o.status.success() => self.started_here = false,
            Ok(o) => eprintln!(
                "stopping embedded PostgreSQL failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("stopping embedded PostgreSQL failed: {e}"),
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop();
    }
}
