//! The mounts bramble makes on the host: overlay root filesystems, the pods' /dev/shm tmpfs and
//! namespace pins. Decisions (which options) are pure functions; the syscalls sit behind the
//! narrow [`Mounter`] trait so that teardown logic can be tested with a recording fake.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// One mount operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRequest {
    Tmpfs { target: PathBuf, options: String },
    Overlay { target: PathBuf, options: String },
    Bind { source: PathBuf, target: PathBuf },
}

pub trait Mounter {
    fn mount(&self, req: &MountRequest) -> io::Result<()>;
    /// Detaches the mount at `target`. `Ok(false)` when nothing was mounted there.
    fn unmount(&self, target: &Path) -> io::Result<bool>;
}

/// The real thing.
pub struct HostMounter;

impl Mounter for HostMounter {
    fn mount(&self, req: &MountRequest) -> io::Result<()> {
        let (source, target, fstype, flags, data) = match req {
            MountRequest::Tmpfs { target, options } => (
                Path::new("tmpfs"),
                target,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(options.as_str()),
            ),
            MountRequest::Overlay { target, options } => (
                Path::new("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(options.as_str()),
            ),
            MountRequest::Bind { source, target } => {
                (source.as_path(), target, None, MsFlags::MS_BIND, None)
            }
        };
        nix::mount::mount(Some(source), target.as_path(), fstype, flags, data)
            .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path) -> io::Result<bool> {
        match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => Ok(true),
            // EINVAL: not a mount point; ENOENT: already gone. Both mean nothing to undo.
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The overlay mount of a container's root filesystem. `layers` come bottom first; overlayfs
/// wants the top-most lower dir first. Paths with ':' or ',' cannot be expressed in the options.
pub fn overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<MountRequest, String> {
    if layers.is_empty() {
        return Err("an image needs at least one layer".into());
    }
    let all = layers.iter().map(PathBuf::as_path).chain([upper, work]);
    for p in all {
        let s = p
            .to_str()
            .ok_or_else(|| format!("layer path {} is not UTF-8", p.display()))?;
        if s.contains([':', ',']) || !p.is_absolute() {
            return Err(format!(
                "layer path {s} must be absolute and contain no ':' or ','"
            ));
        }
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    Ok(MountRequest::Overlay {
        target: target.to_owned(),
        options: format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        ),
    })
}

#[cfg(test)]
pub mod fake {
    use std::cell::RefCell;

    use super::*;

    /// Records calls; `mounted` decides what `unmount` finds.
    #[derive(Default)]
    pub struct RecordingMounter {
        pub calls: RefCell<Vec<String>>,
        pub mounted: RefCell<Vec<PathBuf>>,
    }

    impl Mounter for RecordingMounter {
        fn mount(&self, req: &MountRequest) -> io::Result<()> {
            self.calls.borrow_mut().push(format!("mount {req:?}"));
            Ok(())
        }
        fn unmount(&self, target: &Path) -> io::Result<bool> {
            self.calls
                .borrow_mut()
                .push(format!("unmount {}", target.display()));
            let mut mounted = self.mounted.borrow_mut();
            let before = mounted.len();
            mounted.retain(|m| m != target);
            Ok(mounted.len() != before)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_lists_the_top_layer_first() {
        let req = overlay(
            &["/l/base".into(), "/l/top".into()],
            Path::new("/c/upper"),
            Path::new("/c/work"),
            Path::new("/c/rootfs"),
        )
        .unwrap();
        assert_eq!(
            req,
            MountRequest::Overlay {
                target: "/c/rootfs".into(),
                options: "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work".into()
            }
        );
    }

    #[test]
    fn overlay_rejects_paths_it_cannot_express() {
        let (u, w, t) = (Path::new("/u"), Path::new("/w"), Path::new("/t"));
        assert!(overlay(&[], u, w, t).is_err());
        assert!(overlay(&["/a:b".into()], u, w, t).is_err());
        assert!(overlay(&["rel".into()], u, w, t).is_err());
    }
}
