//! The command line: `bramble <command> [flags]`.

use lexopt::prelude::*;
use std::path::{Path, PathBuf};

use crate::{config, node, pki, server};

const USAGE: &str = "bramble: a Kubernetes-style orchestrator for small boards

usage:
  bramble server [--data-dir DIR] [--listen ADDR:PORT] [--node-name NAME]
                 [--tls-san NAME]... [--service-cidr CIDR] [--registries FILE]
                 [--cluster-cidr CIDR] [--bridge NAME] [--node-ip ADDR]
                 [--board NAME] [--config FILE] [--max-pods N]
                 [--reserved-memory QUANTITY] [--node-label KEY=VALUE]...
                 [--cluster-listen ADDR:PORT] [--control-plane-only]
  bramble agent --server HOST:PORT --token TOKEN [--data-dir DIR]
                [--node-name NAME] [--node-ip ADDR] [--bridge NAME]
                [--registries FILE] [--board NAME]
                [--config FILE] [--max-pods N] [--reserved-memory QUANTITY]
                [--node-label KEY=VALUE]...
  bramble token [--data-dir DIR]
  bramble kubeconfig [--data-dir DIR] [--server URL]
  bramble check [--data-dir DIR] [--board NAME]
  bramble export [--data-dir DIR] [--server URL] > cluster.yaml
  bramble network cleanup [--bridge NAME] [--cluster-cidr CIDR] [--data-dir DIR]
  bramble image import FILE|pull REF|ls|rm REF|export REF FILE [--data-dir DIR]
  bramble version

defaults: --data-dir /var/lib/bramble, --listen 0.0.0.0:6443,
          --cluster-listen 0.0.0.0:6444 (where agents connect),
          --node-name the hostname, --node-ip (where other boards reach
          this one's pods) the server's --cluster-listen address if it
          names one, an agent's address towards its --server, else the
          first non-loopback address, --service-cidr 10.43.0.0/16,
          --cluster-cidr 10.42.0.0/16 (a /24 of it per node), --bridge bramble0
          (the pods' bridge; the nftables table `ip NAME` has the same name;
          servers sharing a machine need their own --bridge and --cluster-cidr),
          --registries /etc/bramble/registries.yaml; with no board,
          --max-pods 110 and no --reserved-memory
board:    --board loads NAME.toml from $BRAMBLE_BOARD_CONFIGS (a directory, or
          several separated by :), then PREFIX/share/bramble/board-configs
          beside the binary, then /usr/local/share/bramble/board-configs;
          --config FILE overrides it key by key, flags override both
agents:   `bramble token` on the server prints the join token; an agent keeps
          its pods in its own data dir and runs them while the server is away;
          --control-plane-only taints the server's node NoSchedule
logging: RUST_LOG=debug|info|warn|error (default info)";

const DEFAULT_DATA_DIR: &str = "/var/lib/bramble";

type Error = Box<dyn std::error::Error>;

/// Runs the command line; the error is printed by `main`.
pub fn main() -> Result<(), Error> {
    let mut p = lexopt::Parser::from_env();
    let cmd = match p.next()? {
        Some(Value(v)) => v.string()?,
        Some(Long("help") | Short('h')) | None => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(Long("version")) => "version".into(),
        Some(other) => return Err(other.unexpected().into()),
    };
    match cmd.as_str() {
        "server" => server_cmd(p),
        "agent" => agent_cmd(p),
        "token" => token_cmd(p),
        "kubeconfig" => kubeconfig_cmd(p),
        "check" => check_cmd(p),
        "export" => export_cmd(p),
        "network" => network_cmd(p),
        "runtime-helper" => runtime_helper_cmd(p),
        "image" => crate::image::cli::main(p, Path::new(DEFAULT_DATA_DIR)),
        "version" => {
            println!(
                "bramble {} (git {}, kubernetes API v1.{})",
                env!("CARGO_PKG_VERSION"),
                env!("BRAMBLE_GIT_REVISION"),
                crate::api::discovery::KUBE_MINOR
            );
            Ok(())
        }
        "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}; see `bramble --help`").into()),
    }
}

/// The board layers (`--board`, `--config`, `--max-pods`,
/// `--reserved-memory`, `--node-label`), applied in this order whatever the
/// order on the command line: the board, then the --config file, then flags.
#[derive(Default)]
struct BoardFlags {
    board: Option<String>,
    file: Option<PathBuf>,
    flags: Vec<serde_json::Value>,
    labels: Vec<(String, String)>,
}

impl BoardFlags {
    const NAMES: [&str; 5] = [
        "board",
        "config",
        "max-pods",
        "reserved-memory",
        "node-label",
    ];

    /// Reads the value of the board flag `--flag`.
    fn take(&mut self, flag: &str, p: &mut lexopt::Parser) -> Result<(), Error> {
        match flag {
            "board" => self.board = Some(p.value()?.string()?),
            "config" => self.file = Some(PathBuf::from(p.value()?)),
            "max-pods" => {
                let v = p.value()?.string()?;
                let n: u32 = v
                    .parse()
                    .map_err(|_| format!("--max-pods {v:?}: want a number of pods"))?;
                self.flags.push(config::flag_layer(
                    "--max-pods",
                    "node",
                    "max_pods",
                    n.into(),
                )?);
            }
            "reserved-memory" => {
                let v = p.value()?.string()?;
                self.flags.push(config::flag_layer(
                    "--reserved-memory",
                    "node",
                    "reserved_memory",
                    v.into(),
                )?);
            }
            _ => {
                let v = p.value()?.string()?;
                self.labels
                    .push(config::parse_label(&v).map_err(|e| format!("--node-label: {e}"))?);
            }
        }
        Ok(())
    }

    fn settings(self) -> Result<config::Settings, Error> {
        let mut layers = Vec::new();
        if let Some(name) = self.board {
            layers.push(config::read_file(&config::find_board(&name)?)?);
        }
        if let Some(path) = self.file {
            layers.push(config::read_file(&path)?);
        }
        layers.extend(self.flags);
        let mut settings = config::load(&layers)?;
        // --node-label adds to the board's labels rather than replacing them.
        settings.labels.extend(self.labels);
        Ok(settings)
    }
}

fn parse_addr(flag: &str, v: &str) -> Result<std::net::SocketAddr, Error> {
    v.parse()
        .map_err(|_| format!("{flag} {v:?}: want ADDR:PORT, e.g. 0.0.0.0:6443").into())
}

fn server_cmd(mut p: lexopt::Parser) -> Result<(), Error> {
    let mut cfg = server::Config {
        data_dir: DEFAULT_DATA_DIR.into(),
        listen: "0.0.0.0:6443".parse()?,
        node_name: node::hostname(),
        tls_sans: Vec::new(),
        service_cidr: "10.43.0.0/16".parse()?,
        network: crate::net::Names {
            bridge: DEFAULT_BRIDGE.into(),
            cluster_cidr: DEFAULT_CLUSTER_CIDR.parse()?,
        },
        board: config::load(&[])?,
        registries: "/etc/bramble/registries.yaml".into(),
        cluster_listen: "0.0.0.0:6444".parse()?,
        control_plane_only: false,
        node_ip: None,
    };
    let mut board = BoardFlags::default();
    while let Some(arg) = p.next()? {
        match arg {
            Long("data-dir") => cfg.data_dir = p.value()?.into(),
            Long("listen") => cfg.listen = parse_addr("--listen", &p.value()?.string()?)?,
            Long("cluster-listen") => {
                cfg.cluster_listen = parse_addr("--cluster-listen", &p.value()?.string()?)?
            }
            Long("control-plane-only") => cfg.control_plane_only = true,
            Long("node-name") => cfg.node_name = p.value()?.string()?.to_lowercase(),
            Long("tls-san") => cfg.tls_sans.push(p.value()?.string()?),
            Long("registries") => cfg.registries = p.value()?.into(),
            Long("service-cidr") => cfg.service_cidr = cidr("--service-cidr", &mut p)?,
            Long("cluster-cidr") => cfg.network.cluster_cidr = cidr("--cluster-cidr", &mut p)?,
            Long("bridge") => cfg.network.bridge = bridge_name(&p.value()?.string()?)?,
            Long("node-ip") => cfg.node_ip = Some(node_ip(&p.value()?.string()?)?),
            Long("help") | Short('h') => {
                println!("{USAGE}");
                return Ok(());
            }
            Long(flag) if BoardFlags::NAMES.contains(&flag) => {
                let flag = flag.to_string();
                board.take(&flag, &mut p)?;
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    cfg.board = board.settings()?;
    server::run(cfg)?;
    Ok(())
}

const DEFAULT_BRIDGE: &str = "bramble0";
const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";

/// The CIDR value of `flag`.
fn cidr(flag: &str, p: &mut lexopt::Parser) -> Result<crate::net::Cidr, Error> {
    p.value()?
        .string()?
        .parse()
        .map_err(|e: String| format!("{flag}: {e}").into())
}

fn node_ip(v: &str) -> Result<std::net::IpAddr, Error> {
    v.parse()
        .map_err(|_| format!("--node-ip {v:?}: want an IP address, e.g. 192.168.1.20").into())
}

/// A Linux interface name that is also a plain nftables table name.
fn bridge_name(name: &str) -> Result<String, Error> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match ok {
        true => Ok(name.into()),
        false => Err(format!(
            "--bridge {name:?}: want up to 15 lowercase letters, digits or _, starting with a letter"
        )
        .into()),
    }
}

/// `bramble network cleanup`: removes what the pod network leaves on the
/// host once no pod runs: the nftables table, the bridge and the routes to
/// other boards' pods.
fn network_cmd(mut p: lexopt::Parser) -> Result<(), Error> {
    let mut bridge = DEFAULT_BRIDGE.to_string();
    let mut cluster: Option<crate::net::Cidr> = None;
    let mut data_dir: PathBuf = DEFAULT_DATA_DIR.into();
    let mut cleanup = false;
    while let Some(arg) = p.next()? {
        match arg {
            Value(v) if v == "cleanup" => cleanup = true,
            Long("bridge") => bridge = bridge_name(&p.value()?.string()?)?,
            Long("data-dir") => data_dir = p.value()?.into(),
            Long("cluster-cidr") => cluster = Some(cidr("--cluster-cidr", &mut p)?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    if !cleanup {
        return Err(
            "usage: bramble network cleanup [--bridge NAME] [--cluster-cidr CIDR] [--data-dir DIR]"
                .into(),
        );
    }
    // An agent keeps the cluster CIDR the server gave it.
    let cluster = match cluster {
        Some(c) => c,
        None => std::fs::read_to_string(crate::cluster::agent::cluster_cidr_file(&data_dir))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(DEFAULT_CLUSTER_CIDR.parse()?),
    };
    // No nodes: no routes to other boards' pods.
    crate::net::routes::sync(&[], "", &cluster)?;
    crate::net::proxy::remove_table(&bridge)?;
    crate::net::cni::remove_bridge(&bridge)?;
    Ok(())
}

fn agent_cmd(mut p: lexopt::Parser) -> Result<(), Error> {
    let (mut server, mut token) = (None, None);
    let mut data_dir: PathBuf = DEFAULT_DATA_DIR.into();
    let mut node_name = node::hostname();
    let mut registries: PathBuf = "/etc/bramble/registries.yaml".into();
    let mut board = BoardFlags::default();
    let (mut bridge, mut node_ip_flag) = (DEFAULT_BRIDGE.to_string(), None);
    while let Some(arg) = p.next()? {
        match arg {
            Long("server") => server = Some(p.value()?.string()?),
            Long("bridge") => bridge = bridge_name(&p.value()?.string()?)?,
            Long("node-ip") => node_ip_flag = Some(node_ip(&p.value()?.string()?)?),
            Long("token") => token = Some(p.value()?.string()?),
            Long("data-dir") => data_dir = p.value()?.into(),
            Long("node-name") => node_name = p.value()?.string()?.to_lowercase(),
            Long("registries") => registries = p.value()?.into(),
            Long("help") | Short('h') => {
                println!("{USAGE}");
                return Ok(());
            }
            Long(flag) if BoardFlags::NAMES.contains(&flag) => {
                let flag = flag.to_string();
                board.take(&flag, &mut p)?;
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let server =
        server.ok_or("bramble agent needs --server HOST:PORT (the server's --cluster-listen)")?;
    let token = token
        .ok_or("bramble agent needs --token TOKEN (run `bramble token` on the server)")?
        .parse()?;
    if !crate::cluster::join::valid_node_name(&node_name) {
        return Err(format!(
            "--node-name {node_name:?}: want lower-case letters, digits, '-' and '.'"
        )
        .into());
    }
    crate::cluster::agent::run(crate::cluster::agent::Config {
        server,
        token,
        data_dir,
        node_name,
        board: board.settings()?,
        registries,
        bridge,
        node_ip: node_ip_flag,
    })?;
    Ok(())
}

/// `bramble token`: the join token of the server whose data dir this is.
fn token_cmd(mut p: lexopt::Parser) -> Result<(), Error> {
    let mut data_dir: PathBuf = DEFAULT_DATA_DIR.into();
    while let Some(arg) = p.next()? {
        match arg {
            Long("data-dir") => data_dir = p.value()?.into(),
            _ => return Err(arg.unexpected().into()),
        }
    }
    if !data_dir.join("tls").join("ca.crt").exists() {
        return Err(format!(
            "{} has no cluster credentials yet; start `bramble server --data-dir {}` once first",
            data_dir.display(),
            data_dir.display()
        )
        .into());
    }
    let creds = pki::ensure(&data_dir)?;
    let registry = crate::cluster::join::Registry::open(&data_dir)?;
    println!("{}", registry.token(&creds.ca_pem)?);
    Ok(())
}

/// `--data-dir DIR --server URL`, for the commands that reach a server.
fn data_dir_and_server(mut p: lexopt::Parser) -> Result<(PathBuf, String), Error> {
    let mut data_dir: PathBuf = DEFAULT_DATA_DIR.into();
    let mut server_url = "https://127.0.0.1:6443".to_string();
    while let Some(arg) = p.next()? {
        match arg {
            Long("data-dir") => data_dir = p.value()?.into(),
            Long("server") => server_url = p.value()?.string()?,
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok((data_dir, server_url))
}

fn kubeconfig_cmd(p: lexopt::Parser) -> Result<(), Error> {
    let (data_dir, server_url) = data_dir_and_server(p)?;
    if !data_dir.join("tls").join("ca.crt").exists() {
        return Err(format!(
            "{} has no cluster credentials yet; start `bramble server --data-dir {}` once first",
            data_dir.display(),
            data_dir.display()
        )
        .into());
    }
    let creds = pki::ensure(&data_dir)?;
    print!("{}", pki::kubeconfig(&creds, &server_url));
    Ok(())
}

/// `bramble check`: one line per finding; fails when something required is missing.
fn check_cmd(mut p: lexopt::Parser) -> Result<(), Error> {
    let mut opts = crate::check::Options {
        data_dir: DEFAULT_DATA_DIR.into(),
        board: None,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Long("data-dir") => opts.data_dir = p.value()?.into(),
            Long("board") => {
                let name = p.value()?.string()?;
                let settings = config::load(&[config::read_file(&config::find_board(&name)?)?])?;
                opts.board = Some((name, settings.platform));
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let findings = crate::check::run(&opts);
    for f in &findings {
        println!("{f}");
    }
    match findings
        .iter()
        .filter(|f| f.level == crate::check::Level::Fail)
        .count()
    {
        0 => Ok(()),
        n => Err(format!("{n} required check(s) failed: see the FAIL lines").into()),
    }
}

/// `bramble export`: the user's objects from a running server, as YAML on stdout.
fn export_cmd(p: lexopt::Parser) -> Result<(), Error> {
    let (data_dir, server_url) = data_dir_and_server(p)?;
    print!("{}", crate::export::export(&data_dir, &server_url)?);
    Ok(())
}

/// The single-threaded process that owns every container (started by the
/// daemon; see runtime::helper_main).
fn runtime_helper_cmd(mut p: lexopt::Parser) -> Result<(), Error> {
    let mut root = None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("root") => root = Some(PathBuf::from(p.value()?)),
            other => return Err(other.unexpected().into()),
        }
    }
    crate::runtime::helper_main(&root.ok_or("runtime-helper needs --root DIR")?)
}
