//! imagePullPolicy as the kubelet applies it, and the waiting reasons a pod
//! shows, so the kubelet decides pulls with one call.

use super::ImageError;
use super::reference::Reference;

/// Waiting reasons, spelled as Kubernetes spells them.
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullAction {
    Pull,
    UseLocal,
    /// The pod waits with [`ERR_IMAGE_NEVER_PULL`] and this message.
    NeverPull {
        message: String,
    },
}

impl PullPolicy {
    /// The container's `imagePullPolicy`, or Kubernetes' default when unset:
    /// `Always` for `:latest` (or no tag), else `IfNotPresent`.
    pub fn for_container(policy: Option<&str>, image: &str) -> Result<PullPolicy, ImageError> {
        match policy {
            Some("Always") => Ok(PullPolicy::Always),
            Some("IfNotPresent") => Ok(PullPolicy::IfNotPresent),
            Some("Never") => Ok(PullPolicy::Never),
            Some(other) => Err(ImageError::BadDocument {
                what: "imagePullPolicy".into(),
                reason: format!("{other:?} is not Always, IfNotPresent or Never"),
            }),
            None => {
                let r = Reference::parse(image)?;
                Ok(match r.tag.as_deref() {
                    Some("latest") => PullPolicy::Always,
                    _ => PullPolicy::IfNotPresent,
                })
            }
        }
    }

    pub fn decide(self, image: &str, present: bool) -> PullAction {
        match (self, present) {
            (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, false) => PullAction::Pull,
            (_, true) => PullAction::UseLocal,
            (PullPolicy::Never, false) => PullAction::NeverPull {
                message: format!(
                    "Container image \"{image}\" is not present with pull policy of Never"
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_kubernetes() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let default = |image: &str| PullPolicy::for_container(None, image).unwrap();
        assert_eq!(default("busybox"), PullPolicy::Always);
        assert_eq!(default("busybox:latest"), PullPolicy::Always);
        assert_eq!(default("busybox:1.36"), PullPolicy::IfNotPresent);
        assert_eq!(default(&format!("busybox@{d}")), PullPolicy::IfNotPresent);
        assert_eq!(
            PullPolicy::for_container(Some("Never"), "busybox").unwrap(),
            PullPolicy::Never
        );
        assert!(PullPolicy::for_container(Some("Sometimes"), "busybox").is_err());
        assert!(PullPolicy::for_container(None, "Bad Name").is_err());
    }

    #[test]
    fn decisions() {
        assert_eq!(PullPolicy::Always.decide("x", true), PullAction::Pull);
        assert_eq!(
            PullPolicy::IfNotPresent.decide("x", true),
            PullAction::UseLocal
        );
        assert_eq!(
            PullPolicy::IfNotPresent.decide("x", false),
            PullAction::Pull
        );
        assert_eq!(PullPolicy::Never.decide("x", true), PullAction::UseLocal);
        assert_eq!(
            PullPolicy::Never.decide("app:1", false),
            PullAction::NeverPull {
                message: "Container image \"app:1\" is not present with pull policy of Never"
                    .into()
            }
        );
    }
}
