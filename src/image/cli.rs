//! `bramble image ...`: the operator's commands. They open the store directly,
//! so they work whether the daemon runs or not (SQLite WAL and file locks
//! keep the two apart).

use std::collections::HashMap;
use std::error::Error;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Credentials, Digest, ImageStore, Platform, Progress, Registries};

const USAGE: &str = "usage: bramble image COMMAND [--data-dir DIR]
  import FILE...     import oci-archive, docker-archive or OCI layout dirs (pinned)
  pull REF [--platform os/arch[/variant]] [--registries FILE]
  ls                 list images
  rm REF...          remove image names (space is freed by image GC)
  export REF FILE    write an oci-archive
";

const DEFAULT_REGISTRIES: &str = "/etc/bramble/registries.yaml";

pub fn main(mut args: lexopt::Parser, data_dir_default: &Path) -> Result<(), Box<dyn Error>> {
    use lexopt::prelude::*;
    let mut command: Option<String> = None;
    let mut operands: Vec<String> = Vec::new();
    let mut data_dir = data_dir_default.to_path_buf();
    let mut platform = Platform::host();
    let mut registries_file: Option<PathBuf> = None;
    while let Some(arg) = args.next()? {
        match arg {
            Long("data-dir") => data_dir = args.value()?.into(),
            Long("platform") => platform = Platform::parse(&args.value()?.string()?)?,
            Long("registries") => registries_file = Some(args.value()?.into()),
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(());
            }
            Value(v) if command.is_none() => command = Some(v.string()?),
            Value(v) => operands.push(v.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let store = ImageStore::open(&data_dir)?.with_platform(platform.clone());
    match (command.as_deref(), operands.as_slice()) {
        (Some("import"), files) if !files.is_empty() => {
            for file in files {
                for img in store.import(Path::new(file))? {
                    println!("imported {} ({})", img.reference, img.platform);
                }
            }
        }
        (Some("pull"), [reference]) => {
            let registries = match registries_file {
                Some(path) => Registries::load(&path)?,
                None if Path::new(DEFAULT_REGISTRIES).exists() => {
                    Registries::load(Path::new(DEFAULT_REGISTRIES))?
                }
                None => Registries::default(),
            };
            let creds = Credentials::from_registries(&registries)?;
            let store = store.with_registries(registries);
            let mut bar = Bar::new(std::io::stderr().is_terminal());
            let img = store.pull(reference, &platform, &creds, &mut |p| bar.update(p))?;
            bar.finish();
            println!("{} {} {}", img.reference, img.digest, img.platform);
        }
        (Some("ls"), []) => print!("{}", table(&store.list()?)),
        (Some("rm"), refs) if !refs.is_empty() => {
            for r in refs {
                store.remove(r)?;
                println!("removed {r}");
            }
        }
        (Some("export"), [reference, file]) => store.export(reference, Path::new(file))?,
        _ => return Err(USAGE.into()),
    }
    Ok(())
}

fn table(images: &[super::ImageRecord]) -> String {
    let mut rows = vec![[
        "REFERENCE".to_string(),
        "PLATFORM".into(),
        "DIGEST".into(),
        "SIZE".into(),
        "PINNED".into(),
    ]];
    for i in images {
        let short: String = i.digest.hex().chars().take(12).collect();
        rows.push([
            i.reference.clone(),
            i.platform.to_string(),
            short,
            human_size(i.size),
            (if i.pinned { "yes" } else { "no" }).into(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            format!("{}\n", cells.join("   ").trim_end())
        })
        .collect()
}

/// Decimal units, as registries and `docker images` show sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// Bytes of an image's layers on disk so far, from a pull's [`Progress`]:
/// what the CLI's bar and the kubelet's pod events show.
#[derive(Debug, Default)]
pub struct Tally {
    total: u64,
    present: u64,
    blobs: HashMap<Digest, u64>,
}

impl Tally {
    pub fn update(&mut self, p: &Progress) {
        match p {
            Progress::Resolved { total, present, .. } => {
                self.total = *total;
                self.present = *present;
            }
            // A blob fetched again after corruption starts from 0: the map
            // keeps the latest count per blob, never a sum of attempts.
            Progress::Download { digest, done, .. } => {
                self.blobs.insert(digest.clone(), *done);
            }
            Progress::Unpacked { .. } => {}
        }
    }

    /// Bytes on disk, never more than [`Tally::total`].
    pub fn done(&self) -> u64 {
        (self.present + self.blobs.values().sum::<u64>()).min(self.total)
    }

    /// Bytes of layers the image needs, once the manifest is resolved.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// One line on stderr, redrawn at most ten times a second; silent when
/// stderr is not a terminal (logs and CI).
struct Bar {
    tty: bool,
    tally: Tally,
    drawn: Option<Instant>,
}

impl Bar {
    fn new(tty: bool) -> Bar {
        Bar {
            tty,
            tally: Tally::default(),
            drawn: None,
        }
    }

    fn update(&mut self, p: Progress) {
        self.tally.update(&p);
        if self.tty
            && self
                .drawn
                .is_none_or(|t| t.elapsed() > Duration::from_millis(100))
        {
            self.draw();
        }
    }

    fn draw(&mut self) {
        let line = progress_line(self.tally.done(), self.tally.total(), 30);
        let _ = write!(std::io::stderr(), "\r{line}");
        self.drawn = Some(Instant::now());
    }

    fn finish(&mut self) {
        if self.tty {
            self.draw();
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// `[#########.....]  4.2 MB / 9.0 MB`
pub fn progress_line(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        width
    } else {
        (done as u128 * width as u128 / total as u128) as usize
    };
    format!(
        "[{}{}] {} / {}",
        "#".repeat(filled),
        ".".repeat(width - filled.min(width)),
        human_size(done),
        human_size(total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(4_200_000), "4.2 MB");
        assert_eq!(human_size(1_500_000_000), "1.5 GB");
    }

    #[test]
    fn progress_line_fills_in_proportion() {
        assert_eq!(progress_line(5, 10, 4), "[##..] 5 B / 10 B");
        assert_eq!(progress_line(0, 0, 2), "[##] 0 B / 0 B");
    }

    #[test]
    fn tally_counts_present_and_latest_bytes_per_blob() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let mut t = Tally::default();
        t.update(&Progress::Resolved {
            reference: "x".into(),
            total: 100,
            present: 20,
        });
        assert_eq!((t.done(), t.total()), (20, 100));
        for (digest, done) in [(&a, 10), (&a, 30), (&b, 5)] {
            t.update(&Progress::Download {
                digest: digest.clone(),
                done,
                total: 40,
            });
        }
        assert_eq!(t.done(), 55, "20 present + 30 of a + 5 of b");
        // a is fetched again from the start after a failed verification.
        t.update(&Progress::Download {
            digest: a.clone(),
            done: 1,
            total: 40,
        });
        assert_eq!(t.done(), 26);
        t.update(&Progress::Download {
            digest: b,
            done: 500,
            total: 40,
        });
        assert_eq!(t.done(), 100, "never more than the total");
    }
}
