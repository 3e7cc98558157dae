//! A throwaway PostgreSQL for tests, from Debian's `postgresql` package: one cluster per test
//! process (nextest runs each test in a process of its own), listening only on a unix socket
//! in its temp dir (no port to collide on), with a fresh database per test. `initdb` runs once
//! per machine into a template under cargo's target tmp dir; each cluster is a copy of it.
//! The cluster stops when the last [`TestDatabase`] is dropped, and a watchdog stops it if
//! the test process dies without dropping it. Run as the `postgres` user when we are root
//! (root may not run PostgreSQL).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The port number in the socket's name (`.s.PGSQL.<port>`); nothing listens on TCP.
const SOCKET_PORT: u16 = 5432;

/// A running cluster; stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// The TCP port when it listens on one, else the number in its socket's name.
    port: u16,
    server: std::process::Child,
}

/// A database of its own for one test, on the shared cluster.
pub struct TestDatabase {
    /// A `postgres://` URL naming the socket directory, the `postgres` user and the database.
    pub url: String,
    pub name: String,
    _cluster: Arc<Cluster>,
}

static CLUSTER: tokio::sync::Mutex<Weak<Cluster>> = tokio::sync::Mutex::const_new(Weak::new());

/// A fresh database, or `None` (said loudly) when PostgreSQL is not installed; under
/// `CI=true` its absence fails the test.
pub async fn database() -> Option<TestDatabase> {
    let Some(bin) = binaries() else {
        super::host_can_run(Some(
            "PostgreSQL is not installed (Debian: apt-get install postgresql)",
        ));
        return None;
    };
    let cluster = {
        let mut shared = CLUSTER.lock().await;
        match shared.upgrade() {
            Some(cluster) => cluster,
            None => {
                let cluster = Arc::new(Cluster::start(&bin, None).await);
                *shared = Arc::downgrade(&cluster);
                cluster
            }
        }
    };
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = cluster.connect("postgres").await.expect("connect to the test cluster");
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    Some(TestDatabase { url: cluster.url(&name), name, _cluster: cluster })
}

/// A cluster of its own that also listens on a loopback port with TLS on, its certificate
/// self-signed (so no client that verifies certificates accepts it).
pub struct TlsCluster {
    pub port: u16,
    _cluster: Cluster,
}

/// Starts a [`TlsCluster`], or `None` (said loudly) when PostgreSQL is not installed.
pub async fn tls_cluster() -> Option<TlsCluster> {
    let Some(bin) = binaries() else {
        super::host_can_run(Some(
            "PostgreSQL is not installed (Debian: apt-get install postgresql)",
        ));
        return None;
    };
    // A port the system picked, released for the server to take.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let cluster = Cluster::start(&bin, Some(port)).await;
    Some(TlsCluster { port, _cluster: cluster })
}

impl TestDatabase {
    /// A plain connection to this database (for checks a test makes behind the server).
    pub async fn connect(&self) -> tokio_postgres::Client {
        self._cluster.connect(&self.name).await.expect("connect to the test database")
    }
}

impl Cluster {
    /// Starts a cluster on its unix socket; with `tls_port`, also on that loopback port with
    /// TLS on (a fresh self-signed certificate for `localhost`).
    async fn start(bin: &Path, tls_port: Option<u16>) -> Self {
        let template = template(bin);
        let dir = tempfile::Builder::new().prefix("pg-").tempdir().expect("temp dir");
        let data = dir.path().join("data");
        run(Command::new("cp").arg("-a").arg(&template).arg(&data), "copy the template cluster");
        let mut network = vec!["-c".to_string(), "listen_addresses=".to_string()];
        if tls_port.is_some() {
            run(
                Command::new("openssl")
                    .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
                    .args(["-subj", "/CN=localhost", "-keyout"])
                    .arg(data.join("server.key"))
                    .arg("-out")
                    .arg(data.join("server.crt")),
                "make a self-signed certificate",
            );
            let host = "host all all 127.0.0.1/32 trust\n";
            let hba = data.join("pg_hba.conf");
            let mut rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
            rules.push_str(host);
            std::fs::write(&hba, rules).expect("pg_hba.conf");
            network = ["listen_addresses=127.0.0.1", "ssl=on", "ssl_cert_file=server.crt"]
                .into_iter()
                .chain(["ssl_key_file=server.key"])
                .flat_map(|setting| ["-c".to_string(), setting.to_string()])
                .collect();
        }
        hand_to_postgres(dir.path());
        if tls_port.is_some() {
            use std::os::unix::fs::PermissionsExt;
            let key = data.join("server.key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
        let mut command = as_postgres(&bin.join("postgres"));
        command
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-p", &tls_port.unwrap_or(SOCKET_PORT).to_string()])
            .args(&network)
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "synchronous_commit=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let server = command.spawn().expect("start postgres");
        watch_over(&data);
        let cluster = Self { dir, port: tls_port.unwrap_or(SOCKET_PORT), server };
        super::wait_until(
            "the test PostgreSQL to accept connections",
            Duration::from_secs(30),
            || {
                let cluster = &cluster;
                async move { cluster.try_connect("postgres").await.ok().map(|_| ()) }
            },
        )
        .await;
        cluster
    }

    fn url(&self, database: &str) -> String {
        let socket_dir = self.dir.path().display().to_string().replace('/', "%2F");
        format!("postgres://postgres@{socket_dir}:{}/{database}?sslmode=disable", self.port)
    }

    async fn try_connect(
        &self,
        database: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self
            .url(database)
            .parse::<tokio_postgres::Config>()?
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn connect(&self, database: &str) -> anyhow::Result<tokio_postgres::Client> {
        Ok(self.try_connect(database).await?)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The server runs under runuser: signal the postmaster itself (fast shutdown).
        match postmaster_pid(&self.dir.path().join("data")) {
            Some(pid) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
            None => {
                let _ = self.server.kill();
            }
        }
        let _ = self.server.wait();
    }
}

fn postmaster_pid(data: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// The newest installed PostgreSQL's `bin` directory.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The template cluster (`initdb` once per version, kept under cargo's target tmp dir).
fn template(bin: &Path) -> PathBuf {
    let version = bin.parent().and_then(Path::file_name).and_then(|v| v.to_str()).unwrap_or("x");
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("postgres-template-v2");
    let template = root.join(version);
    if template.join("PG_VERSION").exists() {
        return template;
    }
    std::fs::create_dir_all(&root).expect("template root");
    // One process makes it while the others wait (nextest starts many at once).
    let lock = std::fs::File::create(root.join("initdb.lock")).expect("lock file");
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .expect("lock the template");
    if template.join("PG_VERSION").exists() {
        return template;
    }
    // initdb into a private place, then rename: no process ever sees half a template.
    let scratch = tempfile::Builder::new().prefix("initdb-").tempdir().expect("temp dir");
    hand_to_postgres(scratch.path());
    let data = scratch.path().join("data");
    run(
        as_postgres(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"])
            // 1 MB WAL segments instead of 16: less to copy per cluster.
            .args(["--no-sync", "--wal-segsize=1"])
            .stdout(Stdio::null()),
        "initdb",
    );
    let staged = root.join(format!("{version}.{}", std::process::id()));
    run(Command::new("cp").arg("-a").arg(&data).arg(&staged), "stage the template");
    std::fs::rename(&staged, &template).expect("publish the template");
    template
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `program` run as the `postgres` user when we are root (root may not run PostgreSQL).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Gives `dir` (recursively) to the `postgres` user when we are root.
fn hand_to_postgres(dir: &Path) {
    if is_root() {
        run(Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir), "chown");
    }
}

fn run(command: &mut Command, what: &str) {
    let output = command.stderr(Stdio::piped()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(output.status.success(), "{what} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// Stops the cluster in `data` if this test process ends without dropping it (a panic that
/// aborts, a kill): a detached shell polls for this process once a second.
fn watch_over(data: &Path) {
    let script = "while [ -d /proc/$0 ]; do sleep 1; done; \
                  [ -f \"$1/postmaster.pid\" ] && kill -INT \"$(head -n 1 \"$1/postmaster.pid\")\"";
    let _ = Command::new("sh")
        .args(["-c", script])
        .arg(std::process::id().to_string())
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
