//! Platforms and containerd's matching rules, so a board picks the same
//! manifest from an index that k3s would.

use std::fmt;

use super::ImageError;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    /// Normalised: `v7` for arm, empty for arm64 (`v8` is its only variant) and amd64.
    pub variant: String,
}

impl Platform {
    /// Builds a normalised platform (containerd's `platforms.Normalize`).
    pub fn new(os: &str, architecture: &str, variant: &str) -> Platform {
        let os = os.to_ascii_lowercase();
        let (architecture, variant) = match (architecture.to_ascii_lowercase().as_str(), variant) {
            ("x86_64" | "x86-64" | "amd64", "" | "v1") => ("amd64", String::new()),
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v.to_string()),
            ("i386" | "386", _) => ("386", String::new()),
            ("aarch64" | "arm64", "" | "8" | "v8" | "v8.0") => ("arm64", String::new()),
            ("aarch64" | "arm64", v) => ("arm64", v.to_string()),
            ("armhf", _) => ("arm", "v7".to_string()),
            ("armel", _) => ("arm", "v6".to_string()),
            ("arm", "" | "7") => ("arm", "v7".to_string()),
            ("arm", v @ ("5" | "6" | "8")) => ("arm", format!("v{v}")),
            (a, v) => {
                return Platform {
                    os,
                    architecture: a.to_string(),
                    variant: v.to_string(),
                };
            }
        };
        Platform {
            os,
            architecture: architecture.to_string(),
            variant,
        }
    }

    /// `os/arch[/variant]`, as given to `--platform`.
    pub fn parse(input: &str) -> Result<Platform, ImageError> {
        let parts: Vec<&str> = input.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform::new(os, arch, "")),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform::new(os, arch, variant))
            }
            _ => Err(ImageError::BadPlatform {
                input: input.to_string(),
            }),
        }
    }

    /// The platform of this board. On 32-bit arm the variant comes from
    /// /proc/cpuinfo, as containerd does, since the compile target cannot tell
    /// a Pi Zero (v6) from a Pi 2 (v7).
    pub fn host() -> Platform {
        let arch = std::env::consts::ARCH;
        let variant = if arch == "arm" {
            std::fs::read_to_string("/proc/cpuinfo")
                .map(|c| arm_variant(&c))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Platform::new(std::env::consts::OS, arch, &variant)
    }

    /// Platforms this one can run, best first (containerd's `platformVector`):
    /// arm64 also runs 32-bit arm, arm/v7 runs v6 and v5, amd64 runs 386.
    pub fn compatible(&self) -> Vec<Platform> {
        let mut out = vec![self.clone()];
        let with = |arch: &str, variant: &str| Platform::new(&self.os, arch, variant);
        match self.architecture.as_str() {
            "amd64" => out.push(with("386", "")),
            "arm64" => out.extend(with("arm", "v8").compatible()),
            "arm" => {
                let v: u32 = self.variant.trim_start_matches('v').parse().unwrap_or(0);
                out.extend((5..v).rev().map(|older| with("arm", &format!("v{older}"))));
            }
            _ => {}
        }
        out
    }

    /// Picks, from the platforms an index offers, the index of the best one
    /// this platform runs; `None` when it runs none of them.
    pub fn best_match(&self, offered: &[Platform]) -> Option<usize> {
        let ranks = self.compatible();
        offered
            .iter()
            .enumerate()
            .filter_map(|(i, p)| ranks.iter().position(|r| r == p).map(|rank| (rank, i)))
            .min()
            .map(|(_, i)| i)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// "CPU architecture: 7" -> "v7"; "AArch64" or 8 -> "v8".
fn arm_variant(cpuinfo: &str) -> String {
    let value = cpuinfo
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case("CPU architecture"))
        })
        .map(|(_, v)| v.trim())
        .unwrap_or("");
    match value {
        "AArch64" | "8" => "v8".to_string(),
        v if v.chars().next().is_some_and(|c| c.is_ascii_digit()) => format!("v{}", &v[..1]),
        _ => String::new(),
    }
}

/// "offers linux/amd64 only; this board is linux/arm64": the message a pod
/// shows instead of an exec format error.
pub fn describe_offer(offered: &[Platform]) -> String {
    let names: Vec<String> = offered.iter().map(Platform::to_string).collect();
    match names.as_slice() {
        [] => "offers no platform at all".to_string(),
        [one] => format!("offers {one} only"),
        many => format!("offers {}", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn normalises_aliases_and_default_variants() {
        assert_eq!(p("linux/aarch64"), p("linux/arm64/v8"));
        assert_eq!(p("linux/arm64").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm/6").to_string(), "linux/arm/v6");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
    }

    #[test]
    fn board_picks_its_own_platform_first() {
        let offered = [
            p("linux/amd64"),
            p("linux/arm/v6"),
            p("linux/arm/v7"),
            p("linux/arm64"),
        ];
        assert_eq!(p("linux/arm64").best_match(&offered), Some(3));
        assert_eq!(p("linux/arm/v7").best_match(&offered), Some(2));
        assert_eq!(p("linux/arm/v6").best_match(&offered), Some(1));
        assert_eq!(p("linux/amd64").best_match(&offered), Some(0));
    }

    #[test]
    fn falls_back_like_containerd() {
        // arm/v7 runs v6 and v5, but a v6 board cannot run v7.
        assert_eq!(
            p("linux/arm/v7").best_match(&[p("linux/arm/v5"), p("linux/arm/v6")]),
            Some(1)
        );
        assert_eq!(p("linux/arm/v6").best_match(&[p("linux/arm/v7")]), None);
        // A 64-bit Pi runs 32-bit arm images when nothing better is offered.
        assert_eq!(
            p("linux/arm64").best_match(&[p("linux/amd64"), p("linux/arm/v7")]),
            Some(1)
        );
        assert_eq!(p("linux/arm64").best_match(&[p("linux/amd64")]), None);
        assert_eq!(
            p("linux/amd64").best_match(&[p("linux/arm64"), p("linux/386")]),
            Some(1)
        );
        // Another OS never matches.
        assert_eq!(p("linux/amd64").best_match(&[p("windows/amd64")]), None);
    }

    #[test]
    fn reads_the_arm_variant_from_cpuinfo() {
        assert_eq!(arm_variant("processor\t: 0\nCPU architecture: 7\n"), "v7");
        assert_eq!(arm_variant("CPU architecture: AArch64\n"), "v8");
        assert_eq!(
            arm_variant("model name: ARMv6-compatible\nCPU architecture: 6TEJ\n"),
            "v6"
        );
        assert_eq!(arm_variant(""), "");
    }

    #[test]
    fn describes_what_an_image_offers() {
        assert_eq!(
            describe_offer(&[p("linux/amd64")]),
            "offers linux/amd64 only"
        );
        assert_eq!(
            describe_offer(&[p("linux/amd64"), p("linux/arm/v7")]),
            "offers linux/amd64, linux/arm/v7"
        );
    }
}
